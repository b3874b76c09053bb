package heads

import (
	"errors"
	"fmt"
	"math"
)

// Defaults of UNITER's word-region alignment (WRA) pre-training.
const (
	DefaultBeta            = 0.5
	DefaultIterations      = 50
	DefaultInnerIterations = 1

	// NormEps is the floor on vector norms in the cosine cost: vectors are
	// normalised as x / max(‖x‖, NormEps), like torch's F.normalize.
	NormEps = 1e-5
)

// Errors returned by [Align]; they are wrapped, test with errors.Is.
var (
	ErrEmptyText    = errors.New("heads: no text vectors")
	ErrEmptyRegions = errors.New("heads: no region vectors")
	ErrShape        = errors.New("heads: inconsistent vector lengths")
	ErrOptions      = errors.New("heads: invalid OT options")
	ErrNonFinite    = errors.New("heads: non-finite value")
)

// OTOptions configures [Align]. A zero field means its default, so
// OTOptions{} behaves like [DefaultOTOptions].
type OTOptions struct {
	// Beta is the proximal step: each outer iteration multiplies the plan by
	// the kernel exp(-C/Beta). Default 0.5. Very small values (below about
	// 0.003) make the kernel underflow and Align fail with ErrNonFinite.
	Beta float64
	// Iterations is the number of outer (proximal point) iterations.
	// Default 50. The work is O(Iterations·InnerIterations·M·N).
	Iterations int
	// InnerIterations is the number of Sinkhorn scaling steps per outer
	// iteration. Default 1, as in UNITER.
	InnerIterations int
}

// DefaultOTOptions returns UNITER's settings: β = 0.5, 50 iterations, one
// inner iteration.
func DefaultOTOptions() OTOptions {
	return OTOptions{Beta: DefaultBeta, Iterations: DefaultIterations, InnerIterations: DefaultInnerIterations}
}

func (o OTOptions) resolve() (OTOptions, error) {
	if o.Beta == 0 {
		o.Beta = DefaultBeta
	}
	if o.Iterations == 0 {
		o.Iterations = DefaultIterations
	}
	if o.InnerIterations == 0 {
		o.InnerIterations = DefaultInnerIterations
	}
	if !(o.Beta > 0) || math.IsInf(o.Beta, 1) {
		return o, fmt.Errorf("%w: Beta = %v, want a finite value > 0", ErrOptions, o.Beta)
	}
	if o.Iterations < 0 || o.InnerIterations < 0 {
		return o, fmt.Errorf("%w: Iterations = %d, InnerIterations = %d, want >= 1",
			ErrOptions, o.Iterations, o.InnerIterations)
	}
	return o, nil
}

// Plan is the optimal-transport alignment of one text-image pair, with M text
// tokens and N regions.
type Plan struct {
	// Weights is the transport plan, M rows (tokens) × N columns (regions):
	// a joint distribution over (token, region) pairs. All entries are ≥ 0
	// and they sum to 1. Every row sums to 1/M to rounding error (the last
	// scaling step of each iteration is on the token side). Columns sum to
	// 1/N only approximately: after UNITER's 50 iterations the relative error
	// of a column sum is typically 1e-4..1e-2 and can reach a few percent; it
	// vanishes as Iterations grows. This is a property of IPOT with one
	// inner iteration, not of this implementation.
	Weights [][]float64
	// Cost is the cosine distance 1 - cos(t_i, r_j), M × N, in [0, 2] up to
	// rounding.
	Cost [][]float64
	// Distance is the OT distance Σ_ij Cost[i][j]·Weights[i][j]: lower means
	// better aligned.
	Distance float64
}

// Align computes UNITER's word-region alignment of one pair by IPOT.
//
// text holds the final-layer hidden states of the M text tokens (including
// [CLS] and [SEP]) and regions those of the N image regions, all of the same
// hidden size H; padding must already be removed. Computation is in float64.
//
// With K = exp(-C/β) and T = 1, σ = 1/M, each of the Iterations outer steps
// sets Q = K ⊙ T, then InnerIterations times δ = 1/(N·Qᵀσ) (per region) and
// σ = 1/(M·Qδ) (per token), then T = diag(σ) Q diag(δ). This is the plan of
// models/uniter/ot.py, transposed to tokens × regions.
//
// Errors: ErrEmptyText, ErrEmptyRegions, ErrShape (zero hidden size, ragged
// rows or text/region size mismatch), ErrOptions, ErrNonFinite (NaN or Inf in
// the inputs, or a kernel that underflowed).
func Align(text, regions [][]float32, opts OTOptions) (Plan, error) {
	opts, err := opts.resolve()
	if err != nil {
		return Plan{}, err
	}
	M, N := len(text), len(regions)
	if M == 0 {
		return Plan{}, ErrEmptyText
	}
	if N == 0 {
		return Plan{}, ErrEmptyRegions
	}
	H := len(text[0])
	if H == 0 {
		return Plan{}, fmt.Errorf("%w: hidden size is 0", ErrShape)
	}
	for i, t := range text {
		if len(t) != H {
			return Plan{}, fmt.Errorf("%w: text[%d] has %d values, text[0] has %d", ErrShape, i, len(t), H)
		}
	}
	for j, r := range regions {
		if len(r) != H {
			return Plan{}, fmt.Errorf("%w: regions[%d] has %d values, text vectors have %d", ErrShape, j, len(r), H)
		}
	}

	// Three allocations in all: the returned matrices, their row headers,
	// and one scratch slice for everything else.
	mn := M * N
	out := make([]float64, 2*mn)
	weights, cost := out[:mn:mn], out[mn:]
	scratch := make([]float64, mn+2*M+3*N)
	kernel := scratch[:mn:mn]
	sigma := scratch[mn : mn+M : mn+M]       // per token
	delta := scratch[mn+M : mn+M+N : mn+M+N] // per region
	textNorm := scratch[mn+M+N : mn+2*M+N : mn+2*M+N]
	regionNorm := scratch[mn+2*M+N : mn+2*M+2*N : mn+2*M+2*N]
	acc := scratch[mn+2*M+2*N:]

	for i, t := range text {
		textNorm[i] = math.Max(math.Sqrt(dot32(t, t)), NormEps)
	}
	for j, r := range regions {
		regionNorm[j] = math.Max(math.Sqrt(dot32(r, r)), NormEps)
	}
	negInvBeta := -1 / opts.Beta
	for i, t := range text {
		row := cost[i*N : (i+1)*N]
		krow := kernel[i*N : (i+1)*N]
		for j, r := range regions {
			c := 1 - dot32(t, r)/(textNorm[i]*regionNorm[j])
			if math.IsNaN(c) || math.IsInf(c, 0) {
				return Plan{}, fmt.Errorf("%w: cost[%d][%d] is %v (NaN or Inf in text[%d] or regions[%d])",
					ErrNonFinite, i, j, c, i, j)
			}
			row[j] = c
			krow[j] = math.Exp(c * negInvBeta)
		}
	}

	ipot(weights, kernel, sigma, delta, acc, M, N, opts.Iterations, opts.InnerIterations)

	var dist float64
	for x, w := range weights {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return Plan{}, fmt.Errorf("%w: transport plan (kernel underflow; Beta = %v too small?)", ErrNonFinite, opts.Beta)
		}
		dist += cost[x] * w
	}

	rows := make([][]float64, 2*M)
	for i := range M {
		rows[i] = weights[i*N : (i+1)*N : (i+1)*N]
		rows[M+i] = cost[i*N : (i+1)*N : (i+1)*N]
	}
	return Plan{Weights: rows[:M:M], Cost: rows[M:], Distance: dist}, nil
}

// ipot overwrites plan (M×N, row-major, tokens × regions) with the IPOT
// plan for kernel (same layout). sigma (M), delta (N) and acc (N) are
// scratch. It does not allocate.
//
// Textbook order per outer iteration: Q = K ⊙ T; δ_j = 1/(N Σ_i Q_ij σ_i);
// σ_i = 1/(M Σ_j Q_ij δ_j); T = diag(σ) Q diag(δ). Here the last step, the
// next iteration's Q = K ⊙ T and the sums Σ_i Q_ij σ_i of its first δ update
// are fused into one pass over the matrix, so an iteration (with one inner
// step) reads the matrix twice instead of four times. plan holds Q between
// passes.
func ipot(plan, kernel, sigma, delta, acc []float64, M, N, iterations, inner int) {
	fm, fn := float64(M), float64(N)
	copy(plan, kernel) // T = 1, so the first Q is K
	for i := range sigma {
		sigma[i] = 1 / fm
	}
	accumulate := func() { // acc_j = Σ_i Q_ij σ_i
		clear(acc)
		for i := range M {
			s := sigma[i]
			row := plan[i*N : (i+1)*N]
			a := acc[:len(row)]
			for j, q := range row {
				a[j] += q * s
			}
		}
	}
	accumulate()
	for it := range iterations {
		for in := range inner {
			if in > 0 {
				accumulate()
			}
			for j, a := range acc {
				delta[j] = 1 / (fn * a)
			}
			for i := range M {
				row := plan[i*N : (i+1)*N]
				d := delta[:len(row)]
				var s float64
				for j, q := range row {
					s += q * d[j]
				}
				sigma[i] = 1 / (fm * s)
			}
		}
		if it == iterations-1 {
			// T = diag(σ) Q diag(δ)
			for i := range M {
				s := sigma[i]
				row := plan[i*N : (i+1)*N]
				d := delta[:len(row)]
				for j := range row {
					row[j] *= d[j] * s
				}
			}
			return
		}
		// Q' = K ⊙ diag(σ) Q diag(δ), and acc_j = Σ_i Q'_ij σ_i for the
		// next δ update (σ is the one that update uses).
		clear(acc)
		for i := range M {
			s := sigma[i]
			row := plan[i*N : (i+1)*N]
			k := kernel[i*N : (i+1)*N]
			k = k[:len(row)]
			d := delta[:len(row)]
			a := acc[:len(row)]
			for j, q := range row {
				q *= d[j] * s * k[j]
				row[j] = q
				a[j] += q * s
			}
		}
	}
}

// dot32 is the float64 dot product of two float32 vectors of equal length.
// Products of float32 values are exact in float64.
func dot32(a, b []float32) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	n := len(a) &^ 3
	for k := 0; k < n; k += 4 {
		s0 += float64(a[k]) * float64(b[k])
		s1 += float64(a[k+1]) * float64(b[k+1])
		s2 += float64(a[k+2]) * float64(b[k+2])
		s3 += float64(a[k+3]) * float64(b[k+3])
	}
	for k := n; k < len(a); k++ {
		s0 += float64(a[k]) * float64(b[k])
	}
	return (s0 + s1) + (s2 + s3)
}
