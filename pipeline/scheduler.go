package pipeline

import "context"

// Scheduler bounds graph executions: at most `running` at once. It refuses nobody: how many
// callers may wait is decided once per request, at admission (the api package), before any
// work was done for it.
type Scheduler struct {
	slots chan struct{}
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
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release frees a slot taken by Acquire.
func (s *Scheduler) Release() { <-s.slots }

// Running is the most graph runs at once.
func (s *Scheduler) Running() int { return cap(s.slots) }
