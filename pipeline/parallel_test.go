package pipeline

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

func TestForEachParallel(t *testing.T) {
	for _, n := range []int{0, 1, 7, 1000} {
		calls := make([]atomic.Int32, n)
		if err := forEachParallel(n, func(i int) error { calls[i].Add(1); return nil }); err != nil {
			t.Fatal(err)
		}
		for i := range calls {
			if c := calls[i].Load(); c != 1 {
				t.Fatalf("n=%d: index %d called %d times", n, i, c)
			}
		}
	}
	// Several indices fail: the lowest one's error comes back, as from a serial loop.
	err := forEachParallel(100, func(i int) error {
		if i%10 == 3 {
			return fmt.Errorf("index %d", i)
		}
		return nil
	})
	if err == nil || err.Error() != "index 3" {
		t.Fatalf("got %v, want index 3's error", err)
	}
	sentinel := errors.New("last")
	if err := forEachParallel(5, func(i int) error {
		if i == 4 {
			return sentinel
		}
		return nil
	}); !errors.Is(err, sentinel) {
		t.Fatalf("got %v", err)
	}
}
