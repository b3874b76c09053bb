package offline

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/x448/float16"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/pipeline"
	"github.com/uniter-serve/uniter/shapes"
)

// DefaultTruthMax is the largest truth matrix (captions × images, two bytes each: truth and
// near miss) ExtractSplit writes by default: 200 M cells, 400 MB. test-1k (5,000 × 1,000) is far
// below it; the full train split (150,000 × 30,000) is far above it.
const DefaultTruthMax = 200_000_000

// ExtractOptions tune ExtractSplit.
type ExtractOptions struct {
	// Workers read and detect images at once; 0 means runtime.NumCPU(). Graph runs are bounded
	// by the bundle's scheduler anyway; Workers is capped at what its queue admits.
	Workers int
	// TruthMax bounds N_captions × N_images for truth.npz: above it no truth is written (and a
	// stale one is removed). 0 means DefaultTruthMax; negative means never write truth.
	TruthMax int64
	// Progress is called after each image is written, in order, from one goroutine.
	Progress func(done, total int)
}

// ExtractStats describe one ExtractSplit run.
type ExtractStats struct {
	Images            int     `json:"images"`
	Regions           int     `json:"regions"`
	RegionsMin        int     `json:"regions_min"`
	RegionsMax        int     `json:"regions_max"`
	Captions          int     `json:"captions"`
	FalseCaptions     int     `json:"false_captions"`     // minimal-edit false captions (false_captions.jsonl)
	TruncatedCaptions int     `json:"truncated_captions"` // longer than the tokenizer's max length
	FeatureDim        int     `json:"feature_dim"`
	LabelDim          int     `json:"label_dim"`
	Workers           int     `json:"workers"`
	TruthWritten      bool    `json:"truth_written"`
	TruthSkipped      string  `json:"truth_skipped,omitempty"` // why truth.npz was not written
	TruthTrue         int64   `json:"truth_true,omitempty"`    // true cells of truth.npz's truth
	NearTrue          int64   `json:"near_true,omitempty"`     // true cells of truth.npz's near (near misses)
	Seconds           float64 `json:"seconds"`                 // the whole run
	DetectSeconds     float64 `json:"detect_seconds"`          // reading, decoding and detecting images (wall)
	TruthSeconds      float64 `json:"truth_seconds"`
	WriteSeconds      float64 `json:"write_seconds"` // assembling the output files
	ImagesPerSecond   float64 `json:"images_per_second"`
	// Sums over images of the pipeline stages (per-image, not wall time; cache hits count the
	// detection that produced the cached result).
	DecodeSeconds, PreprocessSeconds, DetectorSeconds, SelectionSeconds float64 `json:"-"`
}

// Output file names of ExtractSplit (models/uniter/data.py reads the first four).
const (
	ExtractRegionsFile  = "regions.npz"
	ExtractCaptionsFile = "captions.jsonl"
	ExtractFalseFile    = "false_captions.jsonl"
	ExtractTruthFile    = "truth.npz"
	ExtractVocabFile    = "vocab.txt"
	ExtractInfoFile     = "extract.json"
)

// captionLine is one line of captions.jsonl (field order = key order on disk).
type captionLine struct {
	Image     int       `json:"image"`
	Text      string    `json:"text"`
	InputIDs  []int64   `json:"input_ids"`
	CaptionID string    `json:"caption_id"`
	LF        shapes.LF `json:"lf"`
}

// falseCaptionLine is one line of false_captions.jsonl: a caption false on its image, made by a
// minimal edit of one of the image's true captions (Source: that caption's line in
// captions.jsonl, −1 when no edit was false and a random false caption stands in).
type falseCaptionLine struct {
	Image     int       `json:"image"`
	Text      string    `json:"text"`
	InputIDs  []int64   `json:"input_ids"`
	CaptionID string    `json:"caption_id"`
	Edit      string    `json:"edit"`
	Source    int       `json:"source"`
	LF        shapes.LF `json:"lf"`
}

// ExtractSplit runs the serving pipeline (Detect: decode → preprocess → detector graph → region
// selection) over every image of a Shapes World split in splitDir (annotations.jsonl, images/,
// split.json) and writes outDir in the pre-training format of models/uniter/data.py:
// regions.npz (fp16 features and soft labels, fp32 locations and boxes, int64 offsets over the
// images in annotation order), captions.jsonl (every true caption, tokenised by the bundle's
// tokenizer, [CLS] and [SEP] included), false_captions.jsonl (each image's minimal-edit false
// captions, tokenised the same way, for text-side ITM negatives), truth.npz (truth[c, i] = shapes.Eval(lf of c, scene of
// i) and near[c, i] = shapes.NearMiss(lf of c, scene of i), the hard ITM negatives, for all pairs,
// when small enough: see ExtractOptions.TruthMax), a copy of the bundle's
// vocabulary and extract.json (provenance, settings, counts, timings). Every file but
// extract.json depends only on the split and the bundle (and its selection settings), not on
// Workers or timing. Files are written under temporary names and renamed when complete.
func ExtractSplit(ctx context.Context, b *pipeline.Bundle, splitDir, outDir string, opts ExtractOptions) (ExtractStats, error) {
	start := time.Now()
	var st ExtractStats
	if !b.HasDetector() {
		return st, fmt.Errorf("extract: model %s has no detector", b.Manifest.Name)
	}
	D, C := b.Manifest.Model.FeatureDim, b.Manifest.Model.LabelDim
	st.FeatureDim, st.LabelDim = D, C

	splitInfo, err := readSplitInfo(splitDir)
	if err != nil {
		return st, err
	}
	recs, err := shapes.ReadRecords(splitDir)
	if err != nil {
		return st, err
	}
	if len(recs) == 0 {
		return st, fmt.Errorf("extract: %s has no images", splitDir)
	}
	for i, r := range recs {
		if !filepath.IsLocal(r.File) {
			return st, fmt.Errorf("extract: annotations.jsonl line %d: image file %q is not inside the split folder", i+1, r.File)
		}
	}

	// Captions: every true caption and every false one, tokenised as the service tokenises.
	tok := b.Tokenizer()
	encode := func(r shapes.Record, what string, k int, text string) ([]int64, error) {
		enc, err := tok.Encode(text)
		if err != nil {
			return nil, fmt.Errorf("extract: image %d %s %d %q: %w", r.ID, what, k, text, err)
		}
		if enc.Truncated {
			st.TruncatedCaptions++
		}
		return enc.IDs(), nil
	}
	var lines []captionLine
	var falseLines []falseCaptionLine
	for i, r := range recs {
		if len(r.Captions) == 0 {
			return st, fmt.Errorf("extract: image %d (%s) has no captions", r.ID, r.File)
		}
		first := len(lines)
		for k, c := range r.Captions {
			ids, err := encode(r, "caption", k, c.Text)
			if err != nil {
				return st, err
			}
			lines = append(lines, captionLine{Image: i, Text: c.Text, InputIDs: ids,
				CaptionID: fmt.Sprintf("%d-%d", r.ID, k), LF: c.LF})
		}
		for k, c := range r.FalseCaptions {
			ids, err := encode(r, "false caption", k, c.Text)
			if err != nil {
				return st, err
			}
			source := -1
			if c.Source >= 0 {
				if c.Source >= len(r.Captions) {
					return st, fmt.Errorf("extract: image %d false caption %d: source %d outside its %d captions", r.ID, k, c.Source, len(r.Captions))
				}
				source = first + c.Source
			}
			falseLines = append(falseLines, falseCaptionLine{Image: i, Text: c.Text, InputIDs: ids,
				CaptionID: fmt.Sprintf("%d-f%d", r.ID, k), Edit: c.Edit, Source: source, LF: c.LF})
		}
	}
	st.Images, st.Captions, st.FalseCaptions = len(recs), len(lines), len(falseLines)

	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return st, err
	}

	// Regions: detect in parallel, write in annotation order.
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	st.Workers = workers
	detStart := time.Now()
	spools, err := newSpools(outDir, "features", "locations", "soft_labels", "boxes")
	if err != nil {
		return st, err
	}
	defer spools.remove()
	offsets := make([]int64, 1, len(recs)+1)
	var rowBuf []byte
	err = detectAll(ctx, b, splitDir, recs, workers, func(i int, det *detector.Detection) error {
		r := recs[i]
		p := det.Prepared
		n := p.Len()
		switch {
		case n == 0:
			return fmt.Errorf("extract: image %d (%s): no regions selected", r.ID, r.File)
		case p.Dim != D || len(p.Features) != n*D:
			return fmt.Errorf("extract: image %d: features %d×%d, want %d×%d", r.ID, len(p.Features)/max(p.Dim, 1), p.Dim, n, D)
		case det.ClassDim != C || len(det.ClassProbs) != n*C:
			return fmt.Errorf("extract: image %d: class probabilities of %d values, want %d×%d", r.ID, len(det.ClassProbs), n, C)
		}
		var bad error
		rowBuf = appendF16(rowBuf[:0], p.Features, &bad)
		if bad != nil {
			return fmt.Errorf("extract: image %d (%s) features: %w", r.ID, r.File, bad)
		}
		spools[0].Write(rowBuf)
		rowBuf = rowBuf[:0]
		for _, l := range p.Locations {
			rowBuf = appendF32(rowBuf, l[:])
		}
		spools[1].Write(rowBuf)
		rowBuf = appendF16(rowBuf[:0], det.ClassProbs, &bad)
		if bad != nil {
			return fmt.Errorf("extract: image %d (%s) class probabilities: %w", r.ID, r.File, bad)
		}
		spools[2].Write(rowBuf)
		rowBuf = rowBuf[:0]
		for _, bx := range p.Boxes {
			rowBuf = appendF32(rowBuf, bx[:])
		}
		spools[3].Write(rowBuf)

		offsets = append(offsets, offsets[len(offsets)-1]+int64(n))
		if st.RegionsMin == 0 || n < st.RegionsMin {
			st.RegionsMin = n
		}
		st.RegionsMax = max(st.RegionsMax, n)
		t := det.Timing
		st.DecodeSeconds += t.Decode.Seconds()
		st.PreprocessSeconds += t.Preprocess.Seconds()
		st.DetectorSeconds += t.Detector.Seconds()
		st.SelectionSeconds += t.Selection.Seconds()
		if opts.Progress != nil {
			opts.Progress(i+1, len(recs))
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	st.DetectSeconds = time.Since(detStart).Seconds()
	R := int(offsets[len(offsets)-1])
	st.Regions = R

	// Truth: every caption on every image, when it fits.
	truthStart := time.Now()
	var truth, near []byte
	truthMax := opts.TruthMax
	if truthMax == 0 {
		truthMax = DefaultTruthMax
	}
	cells := int64(len(lines)) * int64(len(recs))
	switch {
	case truthMax < 0:
		st.TruthSkipped = "truth disabled"
	case cells > truthMax:
		st.TruthSkipped = fmt.Sprintf("%d captions × %d images = %d cells is above the limit of %d: ITM negatives will be any other image",
			len(lines), len(recs), cells, truthMax)
	default:
		truth, near, st.TruthTrue, st.NearTrue, err = truthMatrix(ctx, recs, lines, workers, true)
		if err != nil {
			return st, err
		}
		st.TruthWritten = true
	}
	st.TruthSeconds = time.Since(truthStart).Seconds()

	// Output files.
	writeStart := time.Now()
	entries := []npyEntry{
		{name: "features", descr: "<f2", shape: []int{R, D}, src: spools[0]},
		{name: "locations", descr: "<f4", shape: []int{R, detector.LocationDim}, src: spools[1]},
		{name: "soft_labels", descr: "<f2", shape: []int{R, C}, src: spools[2]},
		{name: "boxes", descr: "<f4", shape: []int{R, 4}, src: spools[3]},
		{name: "offsets", descr: "<i8", shape: []int{len(offsets)}, data: appendI64(nil, offsets)},
	}
	for i, sp := range spools {
		if err := sp.rewind(); err != nil {
			return st, err
		}
		if want := int64(entries[i].elems()) * entries[i].itemSize(); sp.size != want {
			return st, fmt.Errorf("extract: %s spool holds %d bytes, want %d", entries[i].name, sp.size, want)
		}
	}
	if err := writeNPZ(filepath.Join(outDir, ExtractRegionsFile), entries); err != nil {
		return st, err
	}
	spools.remove()
	if err := writeJSONLines(filepath.Join(outDir, ExtractCaptionsFile), lines); err != nil {
		return st, err
	}
	if err := writeJSONLines(filepath.Join(outDir, ExtractFalseFile), falseLines); err != nil {
		return st, err
	}
	truthPath := filepath.Join(outDir, ExtractTruthFile)
	if truth != nil {
		shape := []int{len(lines), len(recs)}
		err = writeNPZ(truthPath, []npyEntry{{name: "truth", descr: "|b1", shape: shape, data: truth},
			{name: "near", descr: "|b1", shape: shape, data: near}})
	} else if err = os.Remove(truthPath); errors.Is(err, os.ErrNotExist) {
		err = nil // a stale truth.npz of an earlier run would describe other captions
	}
	if err != nil {
		return st, err
	}
	vocab, err := os.ReadFile(filepath.Join(b.Dir, b.Manifest.Text.Vocab))
	if err != nil {
		return st, err
	}
	if err := writeFileAtomic(filepath.Join(outDir, ExtractVocabFile), vocab); err != nil {
		return st, err
	}
	st.WriteSeconds = time.Since(writeStart).Seconds()
	st.Seconds = time.Since(start).Seconds()
	st.ImagesPerSecond = float64(st.Images) / max(st.DetectSeconds, 1e-9)

	info, err := json.MarshalIndent(extractInfo(b, splitDir, splitInfo, st), "", "  ")
	if err != nil {
		return st, err
	}
	return st, writeFileAtomic(filepath.Join(outDir, ExtractInfoFile), append(info, '\n'))
}

// extractInfo is extract.json: where the data came from and how it was made.
func extractInfo(b *pipeline.Bundle, splitDir string, split json.RawMessage, st ExtractStats) map[string]any {
	m := b.Manifest
	sel := b.SelectionSpec()
	abs, err := filepath.Abs(splitDir)
	if err != nil {
		abs = splitDir
	}
	bundleDir, err := filepath.Abs(b.Dir)
	if err != nil {
		bundleDir = b.Dir
	}
	var pre any
	if m.Detector != nil {
		pre = m.Detector.Preprocess
	}
	return map[string]any{
		"format": "pre-training split of models/uniter/data.py, extracted by the serving pipeline (uniter extract)",
		"bundle": map[string]any{
			"name": m.Name, "dir": bundleDir, "random_weights": m.RandomWeights, "provenance": m.Provenance,
			"feature_dim": m.Model.FeatureDim, "label_dim": m.Model.LabelDim, "vocab_size": m.Model.VocabSize,
			"max_text_length": b.Tokenizer().MaxLength(), "lowercase": b.Tokenizer().Lowercase(),
		},
		"source": map[string]any{"split_dir": abs, "split": split, "annotations": "annotations.jsonl"},
		"selection": map[string]any{
			"nms_iou": sel.NMSIoU, "min_confidence": sel.MinConfidence, "min_boxes": sel.MinBoxes,
			"max_boxes": sel.MaxBoxes, "background": sel.Background, "max_regions": b.MaxRegions(),
			"min_box_size": b.MinBoxSize(),
		},
		"preprocess": pre,
		"counts": map[string]any{
			"images": st.Images, "regions": st.Regions, "regions_min": st.RegionsMin, "regions_max": st.RegionsMax,
			"captions": st.Captions, "false_captions": st.FalseCaptions, "truncated_captions": st.TruncatedCaptions,
		},
		"truth": map[string]any{"written": st.TruthWritten, "skipped": st.TruthSkipped, "true_cells": st.TruthTrue,
			"near_cells": st.NearTrue},
		"seconds": map[string]any{
			"total": st.Seconds, "detect_wall": st.DetectSeconds, "truth": st.TruthSeconds, "write": st.WriteSeconds,
			"images_per_second": st.ImagesPerSecond, "workers": st.Workers,
			"sum_decode": st.DecodeSeconds, "sum_preprocess": st.PreprocessSeconds,
			"sum_detector": st.DetectorSeconds, "sum_selection": st.SelectionSeconds,
		},
		"files": []string{ExtractRegionsFile, ExtractCaptionsFile, ExtractTruthFile, ExtractVocabFile},
	}
}

// detectAll detects recs' images with workers goroutines and calls emit for each, in order,
// from the calling goroutine. At most 4·workers results wait to be emitted.
func detectAll(ctx context.Context, b *pipeline.Bundle, splitDir string, recs []shapes.Record, workers int,
	emit func(i int, det *detector.Detection) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i   int
		det *detector.Detection
		err error
	}
	window := make(chan struct{}, 4*workers) // bounds results waiting for an earlier image
	jobs := make(chan int)
	results := make(chan result, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				r := recs[i]
				raw, err := os.ReadFile(filepath.Join(splitDir, r.File))
				var det *detector.Detection
				if err == nil {
					det, _, err = b.Detect(ctx, raw)
				}
				if err != nil {
					err = fmt.Errorf("extract: image %d (%s): %w", r.ID, r.File, err)
				}
				select {
				case results <- result{i, det, err}:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	go func() {
		defer close(jobs)
		for i := range recs {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	pending := map[int]*detector.Detection{}
	next := 0
	var firstErr error
	for r := range results {
		if firstErr != nil {
			continue // drain
		}
		if r.err != nil {
			firstErr = r.err
			cancel()
			continue
		}
		pending[r.i] = r.det
		for {
			det, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			if err := emit(next, det); err != nil {
				firstErr = err
				cancel()
				break
			}
			next++
			<-window
		}
	}
	if firstErr == nil && next < len(recs) {
		firstErr = ctx.Err()
		if firstErr == nil {
			firstErr = fmt.Errorf("extract: only %d of %d images detected", next, len(recs))
		}
	}
	return firstErr
}

// truthMatrix is truth[c·N + i] = Eval(lf of caption c, scene of image i) and, with withNear,
// near[c·N + i] = NearMiss(lf of c, scene of i), as bytes 0/1, with the numbers of true cells.
// Every caption must be true of its own image.
func truthMatrix(ctx context.Context, recs []shapes.Record, lines []captionLine, workers int,
	withNear bool) (truth, near []byte, trueCells, nearCells int64, err error) {
	N := len(recs)
	scenes := make([]shapes.Scene, N)
	for i, r := range recs {
		scenes[i] = r.Scene()
	}
	truth = make([]byte, len(lines)*N)
	if withNear {
		near = make([]byte, len(lines)*N)
	}
	var next, trues sync.Mutex
	var nextC int
	var firstErr error
	var wg sync.WaitGroup
	const chunk = 64
	for range workers {
		wg.Go(func() {
			var count, nears int64
			defer func() { trues.Lock(); trueCells += count; nearCells += nears; trues.Unlock() }()
			for {
				if ctx.Err() != nil {
					return
				}
				next.Lock()
				lo := nextC
				nextC += chunk
				next.Unlock()
				if lo >= len(lines) {
					return
				}
				for c := lo; c < min(lo+chunk, len(lines)); c++ {
					row := truth[c*N : (c+1)*N]
					lf := lines[c].LF
					for i := range scenes {
						if shapes.Eval(lf, scenes[i]) {
							row[i] = 1
							count++
						} else if withNear && shapes.NearMiss(lf, scenes[i]) {
							near[c*N+i] = 1
							nears++
						}
					}
					if row[lines[c].Image] == 0 {
						trues.Lock()
						if firstErr == nil {
							firstErr = fmt.Errorf("extract: caption %s %q is false on its own image by shapes.Eval", lines[c].CaptionID, lines[c].Text)
						}
						trues.Unlock()
					}
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return truth, near, trueCells, nearCells, firstErr
}

func readSplitInfo(dir string) (json.RawMessage, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "split.json"))
	if errors.Is(err, os.ErrNotExist) {
		return json.RawMessage("null"), nil
	}
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("extract: %s: %w", filepath.Join(dir, "split.json"), err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// appendF16 appends vs as little-endian IEEE half floats (round to nearest even, as numpy's
// astype(float16)); *bad is set when a value is not finite in half precision.
func appendF16(dst []byte, vs []float32, bad *error) []byte {
	for j, v := range vs {
		h := float16.Fromfloat32(v)
		if !h.IsFinite() && *bad == nil {
			*bad = fmt.Errorf("value %d = %g is not finite in float16 (|v| > 65504, NaN or Inf)", j, v)
		}
		dst = binary.LittleEndian.AppendUint16(dst, h.Bits())
	}
	return dst
}

func appendF32(dst []byte, vs []float32) []byte {
	for _, v := range vs {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
	}
	return dst
}

func appendI64(dst []byte, vs []int64) []byte {
	for _, v := range vs {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(v))
	}
	return dst
}

// spool is an array's data on its way into regions.npz: the rows are appended to a temporary
// file in the output folder while images are detected, because the npy header needs the total
// row count first.
type spool struct {
	f    *os.File
	w    *bufio.Writer
	size int64
	err  error
}

func (s *spool) Write(p []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(p)
		s.size += int64(len(p))
	}
}

func (s *spool) rewind() error {
	if s.err != nil {
		return s.err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	_, err := s.f.Seek(0, io.SeekStart)
	return err
}

func (s *spool) Read(p []byte) (int, error) { return s.f.Read(p) }

type spools []*spool

func newSpools(dir string, names ...string) (spools, error) {
	var ss spools
	for _, n := range names {
		f, err := os.CreateTemp(dir, "."+n+"-*.tmp")
		if err != nil {
			ss.remove()
			return nil, err
		}
		ss = append(ss, &spool{f: f, w: bufio.NewWriterSize(f, 1<<20)})
	}
	return ss, nil
}

// remove closes and deletes the temporary files; it may be called more than once.
func (ss spools) remove() {
	for _, s := range ss {
		if s.f != nil {
			s.f.Close()
			os.Remove(s.f.Name())
			s.f = nil
		}
	}
}

// npyEntry is one array of an .npz archive: raw little-endian data from data or src.
type npyEntry struct {
	name  string // without .npy
	descr string // numpy dtype string: <f2 <f4 <i8 |b1
	shape []int
	data  []byte
	src   io.Reader
}

func (e npyEntry) elems() int {
	n := 1
	for _, d := range e.shape {
		n *= d
	}
	return n
}

func (e npyEntry) itemSize() int64 {
	n, _ := strconv.Atoi(e.descr[2:])
	return int64(n)
}

// npyHeader is the .npy format 1.0 header of an array (C order), padded with spaces so that the
// data starts at a multiple of 64 bytes, as numpy writes it.
func npyHeader(descr string, shape []int) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	s := strings.Join(dims, ", ")
	if len(shape) == 1 {
		s += ","
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, s)
	const prefix = 10 // magic (6), version (2), header length (2)
	total := prefix + len(dict) + 1
	total += (64 - total%64) % 64
	h := make([]byte, 0, total)
	h = append(h, "\x93NUMPY\x01\x00"...)
	h = binary.LittleEndian.AppendUint16(h, uint16(total-prefix))
	h = append(h, dict...)
	for len(h) < total-1 {
		h = append(h, ' ')
	}
	return append(h, '\n')
}

// writeNPZ writes an uncompressed .npz (numpy.savez's layout: one NAME.npy per array, stored)
// under a temporary name and renames it into place. No timestamps: same arrays, same bytes.
func writeNPZ(path string, entries []npyEntry) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // a no-op once renamed
	bw := bufio.NewWriterSize(f, 1<<20)
	zw := zip.NewWriter(bw)
	write := func(e npyEntry) error {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name + ".npy", Method: zip.Store})
		if err != nil {
			return err
		}
		if _, err := w.Write(npyHeader(e.descr, e.shape)); err != nil {
			return err
		}
		want := int64(e.elems()) * e.itemSize()
		var n int64
		if e.src != nil {
			n, err = io.Copy(w, e.src)
		} else {
			var k int
			k, err = w.Write(e.data)
			n = int64(k)
		}
		if err == nil && n != want {
			err = fmt.Errorf("%s: %d bytes of data, shape %v of %s needs %d", e.name, n, e.shape, e.descr, want)
		}
		return err
	}
	for _, e := range entries {
		if err := write(e); err != nil {
			f.Close()
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	err = zw.Close()
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// writeJSONLines writes one JSON object per line, atomically.
func writeJSONLines[T any](path string, lines []T) error {
	var buf bytes.Buffer
	for _, l := range lines {
		raw, err := json.Marshal(l)
		if err != nil {
			return err
		}
		buf.Write(raw)
		buf.WriteByte('\n')
	}
	return writeFileAtomic(path, buf.Bytes())
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
