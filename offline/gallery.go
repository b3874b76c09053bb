package offline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/retrieval"
	"github.com/uniter-serve/uniter/shapes"
)

// GalleryEvalReport is what `uniter eval-gallery` measures.
type GalleryEvalReport struct {
	Model       string          `json:"model"`
	SplitDir    string          `json:"split_dir"`
	Direction   string          `json:"direction"` // "text_to_image" or "image_to_text"
	GallerySize int             `json:"gallery_size"`
	Queries     int             `json:"queries"`
	QueryPool   int             `json:"query_pool"` // queries available; Queries of them were run (evenly spaced)
	Modes       []ModeReport    `json:"modes"`
	Comparison  *ModeComparison `json:"comparison,omitempty"`
	Machine     string          `json:"machine"`
}

// ModeReport is one search mode's results.
type ModeReport struct {
	Mode             string  `json:"mode"`
	Candidates       int     `json:"candidates,omitempty"`
	R1               float64 `json:"r1"`
	R5               float64 `json:"r5"`
	R10              float64 `json:"r10"`
	MeanMS           float64 `json:"mean_ms"`
	MedianMS         float64 `json:"median_ms"`
	P90MS            float64 `json:"p90_ms"`
	QueriesPerSecond float64 `json:"queries_per_second"`
	PairsPerQuery    float64 `json:"pairs_per_query"` // cross-encoder passes
	PairsPerSecond   float64 `json:"pairs_per_second"`
	// The first stage alone (two-stage only): the lexical ranking, in memory or in the database.
	FirstStageMedianMS float64 `json:"first_stage_median_ms,omitempty"`
	FirstStageP90MS    float64 `json:"first_stage_p90_ms,omitempty"`
	Fallbacks          int     `json:"fallbacks,omitempty"` // two-stage queries that scored everything
}

// ModeComparison compares two-stage with exact on the same queries in the same run.
type ModeComparison struct {
	Speedup     float64 `json:"speedup"`      // exact mean latency / two-stage mean latency
	R10Retained float64 `json:"r10_retained"` // two-stage R@10 / exact R@10
	Top10Kept   float64 `json:"top10_kept"`   // mean share of exact's top 10 that two-stage returns
	PassesSaved float64 `json:"passes_saved"` // exact cross-encoder passes / two-stage passes
}

// evenly picks n of total indices, evenly spaced (all when n is 0 or ≥ total).
func evenly(total, n int) []int {
	if n <= 0 || n > total {
		n = total
	}
	out := make([]int, n)
	for i := range out {
		out[i] = i * total / n
	}
	return out
}

type galleryQuery struct {
	text    string
	imageID string
	truth   func(id string) bool // is gallery item id a hit
}

// GalleryEvalOptions tune EvalGallery.
type GalleryEvalOptions struct {
	Modes      []retrieval.Mode // run each query in each mode, in this order
	Direction  string           // "ir": captions search images; "tr": images search texts
	Candidates int              // first-stage candidates of two-stage search; 0: the service's default
	Queries    int              // run this many queries, evenly spaced; 0: all
	Progress   func(done, total int)
}

// EvalGallery searches the gallery behind svc with the captions (or, direction "tr", the
// images) of the Shapes World split in splitDir and measures R@1/5/10, latency and throughput
// per mode. The split's images must be in the gallery (found by the SHA-256 of their files); a
// hit is any item the caption is true of by its logical form, as in Evaluate.
func EvalGallery(ctx context.Context, svc *retrieval.Service, splitDir string, opts GalleryEvalOptions) (*GalleryEvalReport, error) {
	modes, direction, candidates := opts.Modes, opts.Direction, opts.Candidates
	if len(modes) == 0 {
		return nil, errors.New("eval-gallery: no search mode")
	}
	if direction != "ir" && direction != "tr" {
		return nil, fmt.Errorf("eval-gallery: direction %q: want ir (text → image) or tr (image → text)", direction)
	}
	recs, err := shapes.ReadRecords(splitDir)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s: no records", splitDir)
	}
	store := svc.Store()
	// Find each split image in the gallery by the hash of its file.
	idOf := make([]string, len(recs))
	recOf := map[string]int{}
	missing := 0
	for i, r := range recs {
		raw, err := os.ReadFile(filepath.Join(splitDir, r.File))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(raw)
		id, err := store.ImageBySHA256(ctx, hex.EncodeToString(sum[:]))
		if errors.Is(err, gallery.ErrNotFound) {
			missing++
			continue
		} else if err != nil {
			return nil, err
		}
		idOf[i], recOf[id] = id, i
	}
	if missing > 0 {
		return nil, fmt.Errorf("%d of the split's %d images are not in the gallery (run `uniter index %s`)", missing, len(recs), filepath.Join(splitDir, "images"))
	}
	st, err := store.Stats(ctx)
	if err != nil {
		return nil, err
	}
	rep := &GalleryEvalReport{SplitDir: splitDir, Direction: map[string]string{"ir": "text_to_image", "tr": "image_to_text"}[direction],
		Machine: machineDescription()}
	var pool []galleryQuery
	if direction == "ir" {
		rep.GallerySize = st.Images
		for _, r := range recs {
			for _, c := range r.Captions {
				lf := c.LF
				pool = append(pool, galleryQuery{text: c.Text, truth: func(id string) bool {
					i, ok := recOf[id]
					return ok && shapes.Eval(lf, recs[i].Scene())
				}})
			}
		}
	} else {
		rep.GallerySize = st.Texts
		lfOf := map[string]shapes.LF{}
		for _, r := range recs {
			for _, c := range r.Captions {
				lfOf[c.Text] = c.LF
			}
		}
		texts, err := store.AllTexts(ctx)
		if err != nil {
			return nil, err
		}
		textOf := map[string]string{}
		for _, t := range texts {
			textOf[t.ID] = t.Text
		}
		if len(texts) == 0 {
			return nil, errors.New("the gallery has no texts: add the split's captions with `uniter index-texts`")
		}
		for i, r := range recs {
			scene := r.Scene()
			pool = append(pool, galleryQuery{imageID: idOf[i], truth: func(id string) bool {
				lf, ok := lfOf[textOf[id]]
				return ok && shapes.Eval(lf, scene)
			}})
		}
	}
	pick := evenly(len(pool), opts.Queries)
	rep.QueryPool, rep.Queries = len(pool), len(pick)

	type acc struct {
		lat         []float64
		first       []float64 // first-stage ms
		r1, r5, r10 int
		pairs       int64
		scoring     time.Duration
		fallbacks   int
		top10       [][]string
		wall        time.Duration
	}
	accs := make([]*acc, len(modes))
	for i := range accs {
		accs[i] = &acc{}
	}
	search := func(q galleryQuery, m retrieval.Mode) (*retrieval.Results, time.Duration, error) {
		rq := retrieval.Query{Text: q.text, ImageID: q.imageID, Limit: 10, Mode: m}
		if m == retrieval.TwoStage {
			rq.Candidates = candidates
		}
		start := time.Now()
		var res *retrieval.Results
		var err error
		if direction == "ir" {
			res, err = svc.SearchImages(ctx, rq)
		} else {
			res, err = svc.SearchTexts(ctx, rq)
		}
		return res, time.Since(start), err
	}
	// Warm-up (index caches, first encoder runs) outside the timings.
	for _, m := range modes {
		if _, _, err := search(pool[pick[0]], m); err != nil {
			return nil, err
		}
	}
	for n, qi := range pick {
		q := pool[qi]
		for mi, m := range modes {
			res, d, err := search(q, m)
			if err != nil {
				return nil, err
			}
			a := accs[mi]
			a.lat = append(a.lat, float64(d.Microseconds())/1000)
			a.wall += d
			a.pairs += int64(res.Candidates)
			a.scoring += res.Timing.Scoring
			a.first = append(a.first, float64(res.Timing.FirstStage.Microseconds())/1000)
			if m == retrieval.TwoStage && res.Candidates == res.Gallery && res.FirstStage != "" {
				a.fallbacks++
			}
			var ids []string
			first := -1
			for rank, h := range res.Hits {
				ids = append(ids, h.ID)
				if first < 0 && q.truth(h.ID) {
					first = rank
				}
			}
			a.top10 = append(a.top10, ids)
			if first >= 0 {
				a.r1 += boolInt(first < 1)
				a.r5 += boolInt(first < 5)
				a.r10 += boolInt(first < 10)
			}
		}
		if opts.Progress != nil {
			opts.Progress(n+1, len(pick))
		}
	}
	k := candidates
	if k == 0 {
		k = svc.Config().Candidates
	}
	for mi, m := range modes {
		a := accs[mi]
		nq := float64(len(pick))
		mr := ModeReport{Mode: string(m), R1: float64(a.r1) / nq, R5: float64(a.r5) / nq, R10: float64(a.r10) / nq,
			MeanMS: meanOf(a.lat), MedianMS: quantileOf(a.lat, 0.5), P90MS: quantileOf(a.lat, 0.9),
			QueriesPerSecond: nq / max(a.wall.Seconds(), 1e-9), PairsPerQuery: float64(a.pairs) / nq,
			PairsPerSecond: float64(a.pairs) / max(a.scoring.Seconds(), 1e-9), Fallbacks: a.fallbacks}
		if m == retrieval.TwoStage {
			mr.Candidates = k
			mr.FirstStageMedianMS, mr.FirstStageP90MS = quantileOf(a.first, 0.5), quantileOf(a.first, 0.9)
		}
		rep.Modes = append(rep.Modes, mr)
	}
	if len(modes) == 2 {
		e, t := rep.Modes[0], rep.Modes[1]
		kept := 0.0
		for i := range accs[0].top10 {
			ex, two := accs[0].top10[i], accs[1].top10[i]
			hit := 0
			for _, id := range ex {
				hit += boolInt(slices.Contains(two, id))
			}
			kept += float64(hit) / float64(max(len(ex), 1))
		}
		rep.Comparison = &ModeComparison{Speedup: e.MeanMS / max(t.MeanMS, 1e-9), R10Retained: t.R10 / max(e.R10, 1e-9),
			Top10Kept: kept / float64(len(accs[0].top10)), PassesSaved: e.PairsPerQuery / max(t.PairsPerQuery, 1e-9)}
	}
	return rep, nil
}

func meanOf(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(max(len(v), 1))
}

func quantileOf(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// machineDescription names the CPU and core count, for reports.
func machineDescription() string {
	model := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(raw)) {
			if strings.HasPrefix(line, "model name") {
				if _, v, ok := strings.Cut(line, ":"); ok {
					model = strings.TrimSpace(v)
				}
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores visible", model, runtime.NumCPU())
}

// WriteTable writes the report as a table, with the comparison when both modes ran.
func (r *GalleryEvalReport) WriteTable(w io.Writer) {
	what := map[string]string{"text_to_image": "captions → images", "image_to_text": "images → texts"}[r.Direction]
	fmt.Fprintf(w, "model %s, %s, gallery of %d, %d queries (of %d)\n", r.Model, what, r.GallerySize, r.Queries, r.QueryPool)
	fmt.Fprintf(w, "%-10s %5s %7s %7s %7s %10s %10s %9s %11s %9s\n", "mode", "k", "R@1", "R@5", "R@10", "ms/query", "p90 ms", "queries/s", "pairs/query", "pairs/s")
	for _, m := range r.Modes {
		k := "-"
		if m.Candidates > 0 {
			k = fmt.Sprint(m.Candidates)
		}
		fmt.Fprintf(w, "%-10s %5s %6.2f%% %6.2f%% %6.2f%% %10.1f %10.1f %9.2f %11.1f %9.0f\n", m.Mode, k, 100*m.R1, 100*m.R5, 100*m.R10,
			m.MeanMS, m.P90MS, m.QueriesPerSecond, m.PairsPerQuery, m.PairsPerSecond)
		if m.Mode == string(retrieval.TwoStage) {
			fmt.Fprintf(w, "  first stage alone: median %.2f ms, p90 %.2f ms\n", m.FirstStageMedianMS, m.FirstStageP90MS)
		}
		if m.Fallbacks > 0 {
			fmt.Fprintf(w, "  (%d two-stage queries named no label and scored everything)\n", m.Fallbacks)
		}
	}
	if c := r.Comparison; c != nil {
		fmt.Fprintf(w, "two-stage vs exact, same run: %.1f× faster per query, R@10 retained %.1f%%, exact top-10 kept %.1f%%, cross-encoder passes saved %.1f×\n",
			c.Speedup, 100*c.R10Retained, 100*c.Top10Kept, c.PassesSaved)
	}
	fmt.Fprintf(w, "machine: %s\n", r.Machine)
}
