package pipeline

import (
	"context"
	"sync/atomic"
)

// Scheduler bounds graph executions: at most `running` at once and `queued` waiting; beyond
// that callers get ErrBusy at once rather than piling up memory and latency.
type Scheduler struct {
	slots   chan struct{}
	waiting atomic.Int64
	queued  int64
}

// NewScheduler makes a scheduler; running and queued must be positive.
func NewScheduler(running, queued int) *Scheduler {
	return &Scheduler{slots: make(chan struct{}, running), queued: int64(queued)}
}

// Acquire waits for a slot; it fails with ErrBusy when the queue is full and with ctx's error
// when the caller goes away. Each successful Acquire is paired with one Release.
func (s *Scheduler) Acquire(ctx context.Context) error {
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
	}
	if s.waiting.Add(1) > s.queued {
		s.waiting.Add(-1)
		return ErrBusy
	}
	defer s.waiting.Add(-1)
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release frees a slot taken by Acquire.
func (s *Scheduler) Release() { <-s.slots }

// Capacity is the most callers the scheduler admits at once, running and waiting; one more
// gets ErrBusy.
func (s *Scheduler) Capacity() int { return cap(s.slots) + int(s.queued) }
