package pipeline

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
	if err := b.needMatchHead(); err != nil {
		return nil, err
	}
	if len(images) == 0 || len(texts) == 0 {
		return nil, nil
	}
	batch := opts.batch()
	order := make([]int, len(texts)) // texts by token count, for low padding
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(texts[a].Tokens) - len(texts[b].Tokens) })
	jobs := func(yield func(scoreJob) bool) {
		for i, img := range images {
			for lo := 0; lo < len(order); lo += batch {
				j := scoreJob{}
				for _, t := range order[lo:min(lo+batch, len(order))] {
					j.pairs = append(j.pairs, Pair{Text: texts[t], Regions: img})
					j.out = append(j.out, t*len(images)+i)
				}
				if !yield(j) {
					return
				}
			}
		}
	}
	return b.scoreJobs(ctx, jobs, len(texts)*len(images), opts)
}

// ScorePair is one (image, text) pair of ScorePairs, as indices into its slices.
type ScorePair struct{ Image, Text int }

// ScorePairs scores the listed pairs with the ITM head; out[k] is pairs[k]'s match. Batches
// group pairs of similar region and token counts.
func (b *Bundle) ScorePairs(ctx context.Context, images []*detector.Prepared, texts []*textproc.Encoding, pairs []ScorePair, opts ScoreOptions) ([]heads.Match, error) {
	if err := b.needMatchHead(); err != nil {
		return nil, err
	}
	for _, p := range pairs {
		if p.Image < 0 || p.Image >= len(images) || p.Text < 0 || p.Text >= len(texts) {
			return nil, fmt.Errorf("models: pair %+v out of range (%d images, %d texts)", p, len(images), len(texts))
		}
	}
	order := make([]int, len(pairs))
	for i := range order {
		order[i] = i
	}
	size := func(k int) (int, int) { return images[pairs[k].Image].Len(), len(texts[pairs[k].Text].Tokens) }
	slices.SortStableFunc(order, func(a, b int) int {
		ra, ta := size(a)
		rb, tb := size(b)
		if ra != rb {
			return ra - rb
		}
		return ta - tb
	})
	batch := opts.batch()
	jobs := func(yield func(scoreJob) bool) {
		for lo := 0; lo < len(order); lo += batch {
			j := scoreJob{}
			for _, k := range order[lo:min(lo+batch, len(order))] {
				j.pairs = append(j.pairs, Pair{Text: texts[pairs[k].Text], Regions: images[pairs[k].Image]})
				j.out = append(j.out, k)
			}
			if !yield(j) {
				return
			}
		}
	}
	return b.scoreJobs(ctx, jobs, len(pairs), opts)
}

func (o ScoreOptions) batch() int {
	if o.BatchPairs <= 0 {
		return DefaultScoreBatch
	}
	return o.BatchPairs
}

// scoreJob is one encoder batch: pair k's match goes to out[k] of the result.
type scoreJob struct {
	pairs []Pair
	out   []int
}

// scoreJobs runs the jobs on opts.Workers goroutines and gathers a result of total matches.
func (b *Bundle) scoreJobs(ctx context.Context, jobs func(yield func(scoreJob) bool), total int, opts ScoreOptions) ([]heads.Match, error) {
	if total == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan scoreJob)
	go func() {
		defer close(ch)
		for j := range jobs {
			select {
			case ch <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	out := make([]heads.Match, total)
	var done atomic.Int64
	var progress sync.Mutex
	var errOnce sync.Once
	var firstErr error
	var wg sync.WaitGroup
	for range max(opts.Workers, 1) {
		wg.Go(func() {
			for j := range ch {
				e, err := b.Encode(ctx, j.pairs, false)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				for k, o := range j.out {
					out[o] = e.Match(k)
				}
				n := done.Add(int64(len(j.pairs)))
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
