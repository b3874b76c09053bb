package pipeline

import (
	"context"
	"slices"
	"sync"
	"time"

	ort "github.com/uniter-serve/uniter/runtime"
)

// batcher coalesces the encoder runs of concurrent callers (match, align, probes, tasks) into
// one padded batch per run: while the encoder is busy, callers queue; when a run slot frees,
// one worker takes the oldest caller and, up to maxPairs pairs, the queued callers whose
// sequences are closest in length to it, so that the batch pads little. Each caller gets back a
// view of its own rows. A caller that leaves is dropped from the queue, or, once its batch
// runs, no longer waited for: the batch is cancelled only when every caller in it has left.
//
// There is one worker per scheduler slot. A worker holds its slot from the moment it takes
// callers until the run returns, so callers that arrive meanwhile form the next batch
// ("natural" batching: no caller waits for a batch to fill unless wait > 0).
type batcher struct {
	b        *Bundle
	maxPairs int
	wait     time.Duration // how long a batch that is not full waits for more callers

	mu     sync.Mutex
	queue  []*batchItem
	notify chan struct{} // a caller was queued (buffered 1)
	quit   chan struct{}
	done   sync.WaitGroup
}

type batchItem struct {
	pairs  []Pair
	length int       // the longest sequence (tokens + regions) of its pairs
	queued time.Time // when it was queued
	result chan batchResult
	// set under batcher.mu
	state int // itemQueued, itemRunning, itemGone
	run   *batchRun
}

const (
	itemQueued = iota
	itemRunning
	itemGone
)

type batchResult struct {
	e   *Encoded
	err error
}

// batchRun is one coalesced run: its context ends when the last caller in it has left.
type batchRun struct {
	live   int
	cancel context.CancelFunc
}

func newBatcher(b *Bundle, maxPairs int, wait time.Duration) *batcher {
	q := &batcher{b: b, maxPairs: maxPairs, wait: wait, notify: make(chan struct{}, 1), quit: make(chan struct{})}
	for range b.sched.Running() {
		q.done.Add(1)
		go q.work()
	}
	return q
}

// close stops the workers once their runs have returned; callers still queued get an error.
func (q *batcher) close() {
	close(q.quit)
	q.done.Wait()
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range q.queue {
		it.result <- batchResult{err: ort.ErrClosed}
	}
	q.queue = nil
}

// encode runs pairs in a coalesced batch and returns the view of their rows.
func (q *batcher) encode(ctx context.Context, pairs []Pair) (*Encoded, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	it := &batchItem{pairs: pairs, result: make(chan batchResult, 1), queued: time.Now()}
	for _, p := range pairs {
		it.length = max(it.length, len(p.Text.Tokens)+p.Regions.Len())
	}
	q.mu.Lock()
	select {
	case <-q.quit:
		q.mu.Unlock()
		return nil, ort.ErrClosed
	default:
	}
	q.queue = append(q.queue, it)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	select {
	case r := <-it.result:
		return r.e, r.err
	case <-ctx.Done():
		q.leave(it)
		return nil, ctx.Err()
	}
}

// leave drops a caller that went away: from the queue, or from its running batch.
func (q *batcher) leave(it *batchItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch it.state {
	case itemQueued:
		q.queue = slices.DeleteFunc(q.queue, func(x *batchItem) bool { return x == it })
	case itemRunning:
		if it.run.live--; it.run.live == 0 {
			it.run.cancel()
		}
	}
	it.state = itemGone
}

func (q *batcher) work() {
	defer q.done.Done()
	for {
		select {
		case <-q.quit:
			return
		case <-q.notify:
		}
		for q.pending() > 0 {
			if q.wait > 0 && q.pending() < q.maxPairs {
				q.sleep()
			}
			// The slot first: whoever queues while it is awaited joins this batch.
			if err := q.b.sched.Acquire(context.Background()); err != nil {
				return
			}
			items, run, ctx := q.take()
			if len(items) > 0 {
				q.run(ctx, items)
			}
			q.b.sched.Release()
			if run != nil {
				run.cancel()
			}
			select {
			case <-q.quit:
				return
			default:
			}
		}
	}
}

// pending is the number of queued pairs.
func (q *batcher) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, it := range q.queue {
		n += len(it.pairs)
	}
	return n
}

// sleep waits up to q.wait for the queue to fill, or until quit.
func (q *batcher) sleep() {
	t := time.NewTimer(q.wait)
	defer t.Stop()
	for q.pending() < q.maxPairs {
		select {
		case <-t.C:
			return
		case <-q.quit:
			return
		case <-q.notify:
		}
	}
}

// take removes the next batch from the queue: the oldest caller, then those closest to it in
// length while the batch holds at most maxPairs pairs (a caller with more runs alone).
func (q *batcher) take() ([]*batchItem, *batchRun, context.Context) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.queue) == 0 {
		return nil, nil, nil
	}
	head := q.queue[0]
	rest := slices.Clone(q.queue[1:])
	slices.SortStableFunc(rest, func(a, b *batchItem) int { return abs(a.length-head.length) - abs(b.length-head.length) })
	items, total := []*batchItem{head}, len(head.pairs)
	for _, it := range rest {
		if total+len(it.pairs) <= q.maxPairs {
			items, total = append(items, it), total+len(it.pairs)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &batchRun{live: len(items), cancel: cancel}
	for _, it := range items {
		it.state, it.run = itemRunning, run
	}
	q.queue = slices.DeleteFunc(q.queue, func(x *batchItem) bool { return x.state == itemRunning })
	return items, run, ctx
}

// run encodes the items' pairs in one batch, in order, and hands each item its rows.
func (q *batcher) run(ctx context.Context, items []*batchItem) {
	var pairs []Pair
	for _, it := range items {
		pairs = append(pairs, it.pairs...)
	}
	e, err := q.b.encodeHeld(ctx, pairs, false, time.Since(items[0].queued))
	off := 0
	for _, it := range items {
		r := batchResult{err: err}
		if err == nil {
			r.e = e.rows(off, it.pairs)
		}
		off += len(it.pairs)
		it.result <- r // buffered: never blocks, whether or not the caller still waits
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// rows is a view of pairs' rows, starting at row off, of a batch's outputs (same padding).
func (e *Encoded) rows(off int, pairs []Pair) *Encoded {
	n, S := len(pairs), e.T+e.N
	v := &Encoded{Pairs: pairs, T: e.T, N: e.N, H: e.H, heads: map[string][]float32{},
		hidden: e.hidden[off*S*e.H : (off+n)*S*e.H], pooled: e.pooled[off*e.H : (off+n)*e.H]}
	for name, val := range e.heads {
		w := len(val) / len(e.Pairs)
		v.heads[name] = val[off*w : (off+n)*w]
	}
	if e.otPlan != nil {
		TN := e.T * e.N
		v.otDistance, v.otPlan = e.otDistance[off:off+n], e.otPlan[off*TN:(off+n)*TN]
	}
	return v
}
