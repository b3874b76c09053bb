package pipeline

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func key(b byte) [32]byte { return [32]byte{b} }

func TestCacheHitsAndEviction(t *testing.T) {
	c := newResultCache[string](10, func(s string) int64 { return int64(len(s)) })
	ctx := context.Background()
	compute := func(v string) func() (string, error) {
		return func() (string, error) { return v, nil }
	}
	if v, hit, _ := c.get(ctx, key(1), compute("aaaa")); v != "aaaa" || hit {
		t.Fatalf("first get: got %q hit=%v", v, hit)
	}
	if v, hit, _ := c.get(ctx, key(1), compute("xxxx")); v != "aaaa" || !hit {
		t.Fatalf("second get: got %q hit=%v, want cached aaaa", v, hit)
	}
	c.get(ctx, key(2), compute("bbbb"))
	c.get(ctx, key(1), compute("")) // touch 1: 2 is now least recently used
	c.get(ctx, key(3), compute("cccc"))
	st := c.stats()
	if st.Entries != 2 || st.Bytes != 8 {
		t.Fatalf("after eviction: %+v, want 2 entries, 8 bytes", st)
	}
	if _, hit, _ := c.get(ctx, key(1), compute("")); !hit {
		t.Fatal("key 1 was used recently and should have stayed")
	}
	if _, hit, _ := c.get(ctx, key(2), compute("bbbb")); hit {
		t.Fatal("key 2 was least recently used and should have been evicted")
	}
	// Too large for the whole cache: returned, not stored.
	if v, _, _ := c.get(ctx, key(9), compute("0123456789ab")); v != "0123456789ab" {
		t.Fatal("large value not returned")
	}
	if _, hit, _ := c.get(ctx, key(9), compute("z")); hit {
		t.Fatal("value larger than the cache was stored")
	}
	if st := c.stats(); st.Hits+st.Misses != int64(9) || st.Bytes > 10 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCacheErrorsNotCached(t *testing.T) {
	c := newResultCache[int](100, func(int) int64 { return 1 })
	boom := errors.New("boom")
	if _, _, err := c.get(context.Background(), key(1), func() (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if v, hit, err := c.get(context.Background(), key(1), func() (int, error) { return 7, nil }); v != 7 || hit || err != nil {
		t.Fatalf("after error: got %v %v %v, want a fresh computation", v, hit, err)
	}
}

// TestCacheSharesInflight: concurrent misses on one key compute once.
func TestCacheSharesInflight(t *testing.T) {
	c := newResultCache[int](100, func(int) int64 { return 1 })
	var runs atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, _, err := c.get(context.Background(), key(5), func() (int, error) {
				runs.Add(1)
				<-release
				return 42, nil
			})
			if v != 42 || err != nil {
				t.Errorf("got %v %v", v, err)
			}
		}()
	}
	for c.stats().Misses == 0 { // wait until one goroutine computes; the rest must share it
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if runs.Load() != 1 {
		t.Fatalf("computed %d times, want 1", runs.Load())
	}
}
