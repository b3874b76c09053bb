package pipeline

import (
	"context"
	"sync/atomic"
	"time"

	ort "github.com/uniter-serve/uniter/runtime"
)

// Scheduler bounds graph executions: at most `running` at once. It refuses nobody: how many
// callers may wait is decided once per request, at admission (the api package), before any
// work was done for it.
type Scheduler struct {
	slots   chan struct{}
	waiting atomic.Int64
}

// NewScheduler makes a scheduler; running must be positive.
func NewScheduler(running int) *Scheduler {
	return &Scheduler{slots: make(chan struct{}, running)}
}

// Acquire waits for a slot; it fails with ctx's error when the caller goes away. Each
// successful Acquire is paired with one Release.
func (s *Scheduler) Acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Waiting is the number of callers waiting for a slot now.
func (s *Scheduler) Waiting() int { return int(s.waiting.Load()) }

// Release frees a slot taken by Acquire.
func (s *Scheduler) Release() { <-s.slots }

// Running is the most graph runs at once.
func (s *Scheduler) Running() int { return cap(s.slots) }

// Observer receives every graph run of a bundle (for metrics): the graph's role, the batch
// size, the time waited for a slot and the run's own time. It must be cheap and safe for
// concurrent use.
type Observer interface {
	GraphRun(role string, batch int, wait, run time.Duration)
}

// runGraph runs one of the bundle's sessions under the scheduler and reports it to the
// observer; every graph run of the pipeline goes through it.
func (b *Bundle) runGraph(ctx context.Context, role string, sess *ort.Session, in []ort.Tensor, batch int) ([]ort.Tensor, error) {
	start := time.Now()
	if err := b.sched.Acquire(ctx); err != nil {
		return nil, err
	}
	defer b.sched.Release()
	return b.runHeld(ctx, role, sess, in, batch, time.Since(start))
}

// runHeld is runGraph for a caller that holds a scheduler slot, after waiting waited for it.
func (b *Bundle) runHeld(ctx context.Context, role string, sess *ort.Session, in []ort.Tensor, batch int, waited time.Duration) ([]ort.Tensor, error) {
	start := time.Now()
	out, err := sess.Run(ctx, in)
	if o := b.observer; o != nil && err == nil {
		o.GraphRun(role, batch, waited, time.Since(start))
	}
	return out, err
}
