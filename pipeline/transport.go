package pipeline

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/uniter-serve/uniter/heads"
	ort "github.com/uniter-serve/uniter/runtime"
)

// The word-region optimal transport computed inside the encoder graphs (python3 -m
// uniter.ot_graph, or uniter.export --ot-in-graph): UNITER's IPOT as heads.Align computes it,
// batched over the pairs, in float32. A bundle whose encoder declares these outputs gets its
// transport from the graph; any other bundle gets it from heads.Align in Go, pair by pair.
const (
	outOTDistance = "ot_distance" // [batch]: Σ cost·plan per pair
	outOTPlan     = "ot_plan"     // [batch, text, regions]: the plan, tokens × regions, 0 on padding
	// provenanceOT is the manifest's provenance key recording the graph's IPOT settings.
	provenanceOT = "ot_in_graph"
)

// otSettings are the IPOT settings a graph's transport must have been exported with: those of
// heads.DefaultOTOptions and heads.NormEps, so that the graph computes what heads.Align does.
type otSettings struct {
	Beta            float64 `json:"beta"`
	Iterations      int     `json:"iterations"`
	InnerIterations int     `json:"inner_iterations"`
	NormEps         float64 `json:"norm_eps"`
}

// otFromGraph decides, once per bundle at load, where the word-region transport comes from:
// true when the encoder graph declares ot_distance and ot_plan, provenance.ot_in_graph records
// UNITER's settings, and its matrix products are plain fp32 (not CUDA's TF32, which would
// round the cosine matrix the plan is very sensitive to); false for every other bundle, whose
// transport heads.Align computes. A bundle that declares the outputs inconsistently is refused.
func otFromGraph(m *Manifest, env *ort.Environment, encoder *ort.Session) (bool, error) {
	declared := false
	for _, role := range []string{GraphEncoder, GraphEncoderAttention} {
		g, ok := m.Graphs[role]
		if !ok {
			continue
		}
		var dist, plan bool
		for _, o := range g.Outputs {
			dist = dist || o.Name == outOTDistance
			plan = plan || o.Name == outOTPlan
		}
		if dist != plan {
			return false, fmt.Errorf("graph %s declares only one of %s and %s", role, outOTDistance, outOTPlan)
		}
		if role == GraphEncoder {
			declared = dist
		} else if dist && !declared {
			return false, fmt.Errorf("graph %s declares %s and %s, graph %s does not", role, outOTDistance, outOTPlan, GraphEncoder)
		}
	}
	if !declared {
		return false, nil
	}
	raw, ok := m.Provenance[provenanceOT]
	if !ok {
		return false, fmt.Errorf("the encoder declares %s and %s but provenance.%s does not say how they are computed", outOTDistance, outOTPlan, provenanceOT)
	}
	buf, err := json.Marshal(raw)
	if err != nil {
		return false, fmt.Errorf("provenance.%s: %w", provenanceOT, err)
	}
	var got otSettings
	if err := json.Unmarshal(buf, &got); err != nil {
		return false, fmt.Errorf("provenance.%s: %w", provenanceOT, err)
	}
	d := heads.DefaultOTOptions()
	want := otSettings{Beta: d.Beta, Iterations: d.Iterations, InnerIterations: d.InnerIterations, NormEps: heads.NormEps}
	if got != want {
		return false, fmt.Errorf("provenance.%s: the graph's transport has %+v, this build computes %+v", provenanceOT, got, want)
	}
	if encoder.Provider() == ort.ProviderCUDA && env.CUDAUseTF32() {
		return false, nil
	}
	return true, nil
}

// OTInGraph reports whether the bundle's word-region transport comes from its encoder graph
// (ot_distance, ot_plan) rather than from heads.Align in Go.
func (b *Bundle) OTInGraph() bool { return b.otInGraph }

// OT is one pair's word-region optimal transport.
type OT struct {
	// Plan is the transport plan, tokens × regions, summing to 1; nil when Transport was asked
	// for the distance only and the graph gave it.
	Plan     [][]float64
	Distance float64 // Σ cost·plan: lower is better aligned
}

// Transport is pair i's word-region optimal transport (UNITER's IPOT: β 0.5, 50 iterations):
// the encoder graph's ot_distance and ot_plan when the bundle's graph computes them (decided at
// load: Bundle.OTInGraph), else heads.Align on the pair's final hidden states. Every caller
// (Match, Align, search evidence, the offline evaluation) goes through here. withPlan false
// leaves Plan nil when the graph gave the distance alone. The errors are heads.Align's: empty
// text or regions, or a non-finite value.
func (e *Encoded) Transport(i int, withPlan bool) (OT, error) {
	if e.otPlan == nil {
		plan, err := heads.Align(e.TextHidden(i), e.RegionHidden(i), heads.DefaultOTOptions())
		if err != nil {
			return OT{}, err
		}
		return OT{Plan: plan.Weights, Distance: plan.Distance}, nil
	}
	M, N := len(e.Pairs[i].Text.Tokens), e.Pairs[i].Regions.Len()
	switch {
	case M == 0:
		return OT{}, heads.ErrEmptyText
	case N == 0:
		return OT{}, heads.ErrEmptyRegions
	}
	out := OT{Distance: float64(e.otDistance[i])}
	if math.IsNaN(out.Distance) || math.IsInf(out.Distance, 0) {
		return OT{}, fmt.Errorf("%w: the encoder graph's %s of pair %d is %v", heads.ErrNonFinite, outOTDistance, i, out.Distance)
	}
	if !withPlan {
		return out, nil
	}
	flat := make([]float64, M*N)
	out.Plan = make([][]float64, M)
	for r := range M {
		row := e.otPlan[(i*e.T+r)*e.N : (i*e.T+r)*e.N+N]
		out.Plan[r] = flat[r*N : (r+1)*N : (r+1)*N]
		for c, w := range row {
			if math.IsNaN(float64(w)) || math.IsInf(float64(w), 0) {
				return OT{}, fmt.Errorf("%w: the encoder graph's %s of pair %d", heads.ErrNonFinite, outOTPlan, i)
			}
			out.Plan[r][c] = float64(w)
		}
	}
	return out, nil
}
