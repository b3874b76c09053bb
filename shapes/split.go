package shapes

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
)

// Split is a named, seeded set of images.
type Split struct {
	Name  string `json:"split"`
	Seed  uint64 `json:"seed"`
	Count int    `json:"count"`
}

// knownSplits have fixed seeds and default sizes; the test splits mirror the Flickr30K test
// protocol (1,000 images × 5 captions) and a quick 100-image version of it.
var knownSplits = []Split{
	{Name: "train", Seed: 1, Count: 30000},
	{Name: "val", Seed: 2, Count: 1000},
	{Name: "test-1k", Seed: 3, Count: 1000},
	{Name: "test-100", Seed: 4, Count: 100},
}

// KnownSplit is the seed and default count of a named split.
func KnownSplit(name string) (Split, bool) {
	i := slices.IndexFunc(knownSplits, func(s Split) bool { return s.Name == name })
	if i < 0 {
		return Split{}, false
	}
	return knownSplits[i], true
}

// KnownSplits lists the named splits.
func KnownSplits() []Split { return slices.Clone(knownSplits) }

// AnnotationsFile is the split folder's list of Records, one JSON object per line.
const AnnotationsFile = "annotations.jsonl"

// ReadRecords reads a split folder's annotations (as WriteSplit writes them), in order.
func ReadRecords(dir string) ([]Record, error) {
	path := filepath.Join(dir, AnnotationsFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []Record
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	for {
		var r Record
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			return recs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s record %d: %w", path, len(recs)+1, err)
		}
		recs = append(recs, r)
	}
}

// Record is one line of annotations.jsonl: an image, its scene, its true captions and one false
// caption per true caption.
type Record struct {
	ID            int        `json:"id"`
	File          string     `json:"file"` // relative to the split folder: images/00042.png
	Width         int        `json:"width"`
	Height        int        `json:"height"`
	Background    Background `json:"background"`
	Objects       []Object   `json:"objects"`
	Captions      []Caption  `json:"captions"`
	FalseCaptions []Negative `json:"false_captions"`
}

// Scene is the record's scene, for Eval and Referents.
func (r Record) Scene() Scene {
	return Scene{Width: r.Width, Height: r.Height, Background: r.Background, Objects: r.Objects}
}

// ImageFile is the path of image id inside a split folder.
func ImageFile(id int) string { return fmt.Sprintf("images/%05d.png", id) }

// Streams of the per-image generators: the scene (and so the pixels) and the captions draw from
// separate streams, so the grammar can change without changing the images.
const (
	streamScene   = 1
	streamCaption = 2
)

func imageRNG(seed uint64, index int, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(index)<<8|stream))
}

// GenerateScene is scene index of the split with the given seed; it depends on nothing else.
func GenerateScene(seed uint64, index int) Scene {
	return newScene(imageRNG(seed, index, streamScene))
}

// Generate makes image index of the split with the given seed: its record and its pixels.
func Generate(seed uint64, index int) (Record, *image.RGBA, error) {
	s := GenerateScene(seed, index)
	rng := imageRNG(seed, index, streamCaption)
	caps := TrueCaptions(s, CaptionsPerImage, rng)
	if len(caps) < CaptionsPerImage {
		return Record{}, nil, fmt.Errorf("shapes: image %d: only %d captions", index, len(caps))
	}
	negs, err := FalseCaptions(s, caps, rng)
	if err != nil {
		return Record{}, nil, fmt.Errorf("shapes: image %d: %w", index, err)
	}
	r := Record{ID: index, File: ImageFile(index), Width: s.Width, Height: s.Height, Background: s.Background,
		Objects: s.Objects, Captions: caps, FalseCaptions: negs}
	return r, Render(s), nil
}

// EncodePNG encodes an image as PNG, favouring speed (deterministic: same pixels, same bytes).
func EncodePNG(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Options tune WriteSplit.
type Options struct {
	Workers  int                   // images made in parallel; 0 means runtime.NumCPU()
	Progress func(done, total int) // called after each image, in order, from one goroutine
}

// Summary counts what WriteSplit wrote.
type Summary struct {
	Images, Objects, Captions, FalseCaptions int
}

// SplitInfo is the content of split.json.
type SplitInfo struct {
	Split
	Version          string `json:"version"`
	CaptionsPerImage int    `json:"captions_per_image"`
	Annotations      string `json:"annotations"`
	Images           string `json:"images"`
}

// WriteSplit writes a split into dir: dir/images/NNNNN.png, dir/annotations.jsonl (one Record
// per line, in id order) and dir/split.json. The output depends only on the split's seed and
// count, not on the number of workers.
func WriteSplit(ctx context.Context, dir string, sp Split, opt Options) (Summary, error) {
	var sum Summary
	if sp.Count < 0 {
		return sum, fmt.Errorf("shapes: negative count %d", sp.Count)
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		return sum, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type result struct {
		index int
		line  []byte
		rec   Record
		err   error
	}
	jobs := make(chan int)
	results := make(chan result, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				rec, img, err := Generate(sp.Seed, i)
				var line []byte
				if err == nil {
					err = writePNG(filepath.Join(dir, rec.File), img)
				}
				if err == nil {
					line, err = json.Marshal(rec)
				}
				select {
				case results <- result{index: i, line: line, rec: rec, err: err}:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	go func() {
		defer close(jobs)
		for i := range sp.Count {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	annPath := filepath.Join(dir, AnnotationsFile)
	tmp := annPath + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		cancel()
		return sum, err
	}
	defer os.Remove(tmp) // a no-op once renamed
	w := bufio.NewWriterSize(f, 1<<20)
	pending := map[int]result{}
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
		pending[r.index] = r
		for {
			p, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			w.Write(p.line)
			w.WriteByte('\n')
			sum.Images++
			sum.Objects += len(p.rec.Objects)
			sum.Captions += len(p.rec.Captions)
			sum.FalseCaptions += len(p.rec.FalseCaptions)
			next++
			if opt.Progress != nil {
				opt.Progress(next, sp.Count)
			}
		}
	}
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if err := w.Flush(); firstErr == nil {
		firstErr = err
	}
	if err := f.Close(); firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		return sum, firstErr
	}
	if err := os.Rename(tmp, annPath); err != nil {
		return sum, err
	}
	info, err := json.MarshalIndent(SplitInfo{Split: sp, Version: Version, CaptionsPerImage: CaptionsPerImage,
		Annotations: AnnotationsFile, Images: "images/"}, "", "  ")
	if err != nil {
		return sum, err
	}
	return sum, os.WriteFile(filepath.Join(dir, "split.json"), append(info, '\n'), 0o644)
}

func writePNG(path string, img image.Image) error {
	raw, err := EncodePNG(img)
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o644)
}
