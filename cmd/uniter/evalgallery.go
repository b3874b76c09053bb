package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/retrieval"
	"github.com/uniter-serve/uniter/models/shapes"
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
	Fallbacks        int     `json:"fallbacks,omitempty"` // two-stage queries that scored everything
}

// ModeComparison compares two-stage with exact on the same queries in the same run.
type ModeComparison struct {
	Speedup     float64 `json:"speedup"`      // exact mean latency / two-stage mean latency
	R10Retained float64 `json:"r10_retained"` // two-stage R@10 / exact R@10
	Top10Kept   float64 `json:"top10_kept"`   // mean share of exact's top 10 that two-stage returns
	PassesSaved float64 `json:"passes_saved"` // exact cross-encoder passes / two-stage passes
}

func evalGalleryCmd(load loader) *cobra.Command {
	var splitDir, mode, direction, out string
	var candidates, queries int
	var asJSON, quiet bool
	cmd := &cobra.Command{
		Use:   "eval-gallery --split-dir DIR [--mode exact|two_stage|both] [--candidates K] [--queries N]",
		Short: "retrieval R@1/5/10, latency and throughput of gallery search, exact and two-stage",
		Long: "Searches the gallery of data_dir with the captions of a Shapes World split (text → image,\n" +
			"the default) or with its images (image → text, --direction tr; the gallery's texts must be\n" +
			"the split's captions, `uniter index-texts`). The split's images must be in the gallery\n" +
			"(`uniter index DIR/images`); they are found by the SHA-256 of their files. A hit is any\n" +
			"image (text) the caption is true of by its logical form, as in `uniter eval`; gallery items\n" +
			"that are not in the split count as false.\n\n" +
			"--mode both runs exact and two-stage search on every query, one after the other, and\n" +
			"compares them: latency, R@10 retained, the share of exact's top 10 that two-stage keeps,\n" +
			"and the cross-encoder passes it saves. --queries runs an evenly spaced subset.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			modes := map[string][]retrieval.Mode{"exact": {retrieval.Exact}, "two_stage": {retrieval.TwoStage},
				"both": {retrieval.Exact, retrieval.TwoStage}}[mode]
			if modes == nil {
				return fmt.Errorf("--mode %q: want exact, two_stage or both", mode)
			}
			if direction != "ir" && direction != "tr" {
				return fmt.Errorf("--direction %q: want ir (text → image) or tr (image → text)", direction)
			}
			recs, err := readSplitRecords(filepath.Join(splitDir, "annotations.jsonl"))
			if err != nil {
				return err
			}
			return withGallery(cmd, load, func(_ *Config, s *service, g *galleryService) error {
				rep, err := evalGallery(cmd, g, recs, modes, direction, candidates, queries, quiet)
				if err != nil {
					return err
				}
				rep.Model, rep.SplitDir = s.info.Name, splitDir
				if out != "" {
					if err := writeReport(out, rep); err != nil {
						return err
					}
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), rep)
				}
				printGalleryEval(cmd.OutOrStdout(), rep)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&splitDir, "split-dir", "", "a Shapes World split folder (annotations.jsonl, images/)")
	f.StringVar(&mode, "mode", "both", "exact, two_stage or both (compared)")
	f.StringVar(&direction, "direction", "ir", "ir: captions search images; tr: images search texts")
	f.IntVar(&candidates, "candidates", 0, "first-stage candidates of two-stage search (default: search.candidates)")
	f.IntVar(&queries, "queries", 0, "run this many queries, evenly spaced (0: all)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.StringVar(&out, "out", "", "also write the JSON report to this file")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	_ = cmd.MarkFlagRequired("split-dir")
	return cmd
}

func readSplitRecords(path string) ([]shapes.Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []shapes.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4<<20), 4<<20)
	for sc.Scan() {
		var r shapes.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, len(recs)+1, err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s: no records", path)
	}
	return recs, nil
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

func evalGallery(cmd *cobra.Command, g *galleryService, recs []shapes.Record, modes []retrieval.Mode, direction string, candidates, nq int, quiet bool) (*GalleryEvalReport, error) {
	ctx := cmd.Context()
	splitDir := filepath.Dir(filepath.Join(cmd.Flag("split-dir").Value.String(), "annotations.jsonl"))
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
		id, err := g.store.ImageBySHA256(ctx, hex.EncodeToString(sum[:]))
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
	st, err := g.store.Stats(ctx)
	if err != nil {
		return nil, err
	}
	rep := &GalleryEvalReport{Direction: map[string]string{"ir": "text_to_image", "tr": "image_to_text"}[direction],
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
		texts, err := g.store.AllTexts(ctx)
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
	pick := evenly(len(pool), nq)
	rep.QueryPool, rep.Queries = len(pool), len(pick)

	type acc struct {
		lat             []float64
		r1, r5, r10     int
		pairs           int64
		scoring         time.Duration
		fallbacks       int
		top10           [][]string
		wall            time.Duration
		candidatesAsked int
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
			res, err = g.service.SearchImages(ctx, rq)
		} else {
			res, err = g.service.SearchTexts(ctx, rq)
		}
		return res, time.Since(start), err
	}
	// Warm-up (index caches, first encoder runs) outside the timings.
	for _, m := range modes {
		if _, _, err := search(pool[pick[0]], m); err != nil {
			return nil, err
		}
	}
	bar := newProgressBar(cmd.ErrOrStderr(), "queries", len(pick), quiet)
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
				a.r1 += oneIf(first < 1)
				a.r5 += oneIf(first < 5)
				a.r10 += oneIf(first < 10)
			}
		}
		bar.update(n+1, "")
	}
	bar.finish()
	k := candidates
	if k == 0 {
		k = g.service.Config().Candidates
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
				hit += oneIf(slices.Contains(two, id))
			}
			kept += float64(hit) / float64(max(len(ex), 1))
		}
		rep.Comparison = &ModeComparison{Speedup: e.MeanMS / max(t.MeanMS, 1e-9), R10Retained: t.R10 / max(e.R10, 1e-9),
			Top10Kept: kept / float64(len(accs[0].top10)), PassesSaved: e.PairsPerQuery / max(t.PairsPerQuery, 1e-9)}
	}
	return rep, nil
}

func oneIf(b bool) int {
	if b {
		return 1
	}
	return 0
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

func writeReport(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
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

func printGalleryEval(w io.Writer, r *GalleryEvalReport) {
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
