package models

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/textproc"
)

// Prepare checks regions against the bundle (feature dimension, region limit) and builds the
// encoder's region input. Exported for callers that keep regions themselves (a gallery, an
// evaluation) and score them many times.
func (b *Bundle) Prepare(r detector.Regions) (*detector.Prepared, error) { return b.prepare(r) }

// Tokenize encodes a text with the bundle's tokenizer ([CLS] and [SEP] included, truncated to
// the maximum length).
func (b *Bundle) Tokenize(text string) (*textproc.Encoding, error) { return b.tokenize("text", text) }

// ScoreOptions tune ScoreMatrix.
type ScoreOptions struct {
	// BatchPairs bounds the pairs of one encoder run; 0 means DefaultScoreBatch.
	BatchPairs int
	// Workers is the number of encoder runs kept in flight (they still wait for the bundle's
	// scheduler, limits.max_concurrent); 0 means 1.
	Workers int
	// Progress, when set, is called after each batch with the pairs scored so far (from
	// several goroutines when Workers > 1; calls never overlap).
	Progress func(done, total int)
}

// DefaultScoreBatch is the default pairs per encoder run of ScoreMatrix.
const DefaultScoreBatch = 256

// ScoreMatrix scores every text against every image with the cross-encoder's ITM head (no
// optimal transport) and returns the matches texts-major: out[t*len(images)+i] is text t on
// image i. Batches hold one image and texts sorted by token count, so that padding stays
// small; the result does not depend on the batching (each pair is scored independently).
func (b *Bundle) ScoreMatrix(ctx context.Context, images []*detector.Prepared, texts []*textproc.Encoding, opts ScoreOptions) ([]heads.Match, error) {
	if len(images) == 0 || len(texts) == 0 {
		return nil, nil
	}
	batch := opts.BatchPairs
	if batch <= 0 {
		batch = DefaultScoreBatch
	}
	workers := max(opts.Workers, 1)
	order := make([]int, len(texts)) // texts by token count, for low padding
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(texts[a].Tokens) - len(texts[b].Tokens) })

	type job struct{ image, lo, hi int }
	jobs := make(chan job)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(jobs)
		for i := range images {
			for lo := 0; lo < len(order); lo += batch {
				select {
				case jobs <- job{i, lo, min(lo+batch, len(order))}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	out := make([]heads.Match, len(texts)*len(images))
	total := len(out)
	var done atomic.Int64
	var progress sync.Mutex
	var errOnce sync.Once
	var firstErr error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			pairs := make([]pair, 0, batch)
			for j := range jobs {
				pairs = pairs[:0]
				for _, t := range order[j.lo:j.hi] {
					pairs = append(pairs, pair{text: texts[t], regions: images[j.image]})
				}
				e, err := b.encode(ctx, pairs, false)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				for k, t := range order[j.lo:j.hi] {
					out[t*len(images)+j.image] = e.match(k)
				}
				n := done.Add(int64(len(pairs)))
				if opts.Progress != nil {
					progress.Lock()
					opts.Progress(int(n), total)
					progress.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if n := done.Load(); n != int64(total) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("models: scored %d of %d pairs", n, total)
	}
	return out, nil
}
