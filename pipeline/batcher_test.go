package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/internal/testenv"
	ort "github.com/uniter-serve/uniter/runtime"
)

// batchSizes records the batch size of every encoder run.
type batchSizes struct {
	mu    sync.Mutex
	sizes []int
}

func (o *batchSizes) GraphRun(role string, batch int, _, _ time.Duration) {
	if role == GraphEncoder {
		o.mu.Lock()
		o.sizes = append(o.sizes, batch)
		o.mu.Unlock()
	}
}

func batchRegions(n, dim int, seed int) *detector.Regions {
	r := &detector.Regions{Width: 200, Height: 120}
	for i := range n {
		r.Boxes = append(r.Boxes, detector.Box{float32(5 * i), float32(3 * i), float32(5*i + 40), float32(3*i + 30)})
		f := make([]float32, dim)
		for j := range f {
			f[j] = float32((i*31+j*7+seed*13)%11) / 10
		}
		r.Features = append(r.Features, f)
	}
	return r
}

// TestBatcherMatchesUnbatched: 48 concurrent callers, one text each, of different lengths
// and region counts, on a bundle that batches; each gets the score, logit and OT distance the
// same request gets from a bundle that does not batch (within the padded-batch tolerance),
// and the runs did coalesce.
func TestBatcherMatchesUnbatched(t *testing.T) {
	env := testenv.Env(t)
	dir := testenv.FixtureBundle(t)
	plain, err := Load(env, dir, Options{MaxRegions: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	batched, err := Load(env, dir, Options{MaxRegions: 100, BatchPairs: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer batched.Close()
	obs := &batchSizes{}
	batched.Observe(obs)
	ctx := context.Background()
	texts := []string{"a red square", "two green triangles left of a blue circle", "something orange above a star",
		"a circle", "three small yellow hearts and a black cross below a large white diamond"}
	const callers = 48
	var wg sync.WaitGroup
	got := make([]*MatchOutput, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			in := Input{Regions: batchRegions(1+i%7, 64, i)}
			got[i], errs[i] = batched.Match(ctx, in, []string{texts[i%len(texts)]})
		})
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		want, err := plain.Match(ctx, Input{Regions: batchRegions(1+i%7, 64, i)}, []string{texts[i%len(texts)]})
		if err != nil {
			t.Fatal(err)
		}
		g, w := got[i].Results[0], want.Results[0]
		if math.Abs(float64(g.Logit-w.Logit)) > 1e-5 || math.Abs(float64(g.Score-w.Score)) > 1e-5 || math.Abs(g.OTDistance-w.OTDistance) > 1e-5 {
			t.Errorf("caller %d: batched %+v, alone %+v", i, g, w)
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	coalesced, total := 0, 0
	for _, n := range obs.sizes {
		total += n
		if n > 1 {
			coalesced++
		}
		if n > 8 {
			t.Errorf("a run of %d pairs, more than BatchPairs 8", n)
		}
	}
	if total != callers || coalesced == 0 {
		t.Errorf("%d runs for %d pairs (sizes %v): want every pair once and some runs coalesced", len(obs.sizes), total, obs.sizes)
	}
}

// TestBatcherCancel: a caller that leaves while queued is dropped and the others are
// answered; a batch's context ends only when its last caller has left.
func TestBatcherCancel(t *testing.T) {
	env := testenv.Env(t)
	b, err := Load(env, testenv.FixtureBundle(t), Options{MaxRegions: 100, BatchPairs: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Hold the only slot, so that both callers queue.
	if err := b.sched.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	leaving, leave := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var errA, errB error
	var outB *MatchOutput
	wg.Go(func() { _, errA = b.Match(leaving, Input{Regions: batchRegions(3, 64, 1)}, []string{"a red square"}) })
	wg.Go(func() {
		outB, errB = b.Match(context.Background(), Input{Regions: batchRegions(4, 64, 2)}, []string{"a blue star"})
	})
	deadline := time.Now().Add(10 * time.Second)
	for b.batcher.pending() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	leave()
	for b.batcher.pending() > 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := b.batcher.pending(); n != 1 {
		t.Fatalf("%d pairs queued after one caller left, want 1", n)
	}
	b.sched.Release()
	wg.Wait()
	if !errors.Is(errA, context.Canceled) {
		t.Errorf("the caller that left: %v", errA)
	}
	if errB != nil || len(outB.Results) != 1 {
		t.Errorf("the caller that stayed: %v", errB)
	}

	// A running batch: its context survives one caller leaving, not both.
	q := &batcher{b: b, maxPairs: 8}
	a, c := &batchItem{pairs: make([]Pair, 1)}, &batchItem{pairs: make([]Pair, 2)}
	q.queue = []*batchItem{a, c}
	items, run, ctx := q.take()
	if len(items) != 2 || run.live != 2 || len(q.queue) != 0 {
		t.Fatalf("took %d items, %d live, %d left queued", len(items), run.live, len(q.queue))
	}
	q.leave(a)
	if ctx.Err() != nil {
		t.Errorf("the batch was cancelled when one of its two callers left")
	}
	q.leave(c)
	if ctx.Err() == nil {
		t.Errorf("the batch still runs after all its callers left")
	}
}

// TestBatcherGroupsByLength: the oldest caller goes first, with the queued callers closest to
// it in length, up to the batch's pair bound; a caller larger than the bound runs alone.
func TestBatcherGroupsByLength(t *testing.T) {
	q := &batcher{maxPairs: 3}
	item := func(length, pairs int) *batchItem { return &batchItem{length: length, pairs: make([]Pair, pairs)} }
	oldest, far, near, mid, big := item(10, 1), item(60, 1), item(11, 1), item(20, 1), item(12, 5)
	q.queue = []*batchItem{oldest, far, near, big, mid}
	items, _, _ := q.take()
	if fmt.Sprint(lengths(items)) != "[10 11 20]" {
		t.Errorf("first batch: lengths %v, want [10 11 20]", lengths(items))
	}
	items, _, _ = q.take()
	if fmt.Sprint(lengths(items)) != "[60]" {
		t.Errorf("second batch: %v, want [60] (the 5-pair caller does not fit with it)", lengths(items))
	}
	items, _, _ = q.take()
	if len(items) != 1 || items[0] != big {
		t.Errorf("third batch: %v, want the 5-pair caller alone", lengths(items))
	}
}

func lengths(items []*batchItem) []int {
	var out []int
	for _, it := range items {
		out = append(out, it.length)
	}
	return out
}

// TestBatcherClose: callers still queued when the bundle closes get ErrClosed.
func TestBatcherClose(t *testing.T) {
	env := testenv.Env(t)
	b, err := Load(env, testenv.FixtureBundle(t), Options{MaxRegions: 100, BatchPairs: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.sched.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.Match(context.Background(), Input{Regions: batchRegions(2, 64, 0)}, []string{"a star"})
		done <- err
	}()
	for b.batcher.pending() == 0 {
		time.Sleep(time.Millisecond)
	}
	b.sched.Release() // the worker may take it now, or Close may drop it: either answers
	closed := make(chan struct{})
	go func() {
		b.Close()
		close(closed)
	}()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, ort.ErrClosed) {
			t.Errorf("queued at close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a caller queued at close never returned")
	}
	<-closed
}
