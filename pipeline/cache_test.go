package pipeline

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/uniter-serve/uniter/internal/testenv"
)

func key(b byte) [32]byte { return [32]byte{b} }

func TestCacheHitsAndEviction(t *testing.T) {
	c := newResultCache[string](10, func(s string) int64 { return int64(len(s)) })
	ctx := context.Background()
	compute := func(v string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { return v, nil }
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
	if _, _, err := c.get(context.Background(), key(1), func(context.Context) (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if v, hit, err := c.get(context.Background(), key(1), func(context.Context) (int, error) { return 7, nil }); v != 7 || hit || err != nil {
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
			v, _, err := c.get(context.Background(), key(5), func(context.Context) (int, error) {
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

// TestCacheCancelsWhenNobodyWaits: a shared computation goes on while one caller waits, is
// cancelled when the last one leaves, and a later caller starts afresh.
func TestCacheCancelsWhenNobodyWaits(t *testing.T) {
	c := newResultCache[int](100, func(int) int64 { return 1 })
	started := make(chan struct{})
	stopped := make(chan error, 1)
	slow := func(ctx context.Context) (int, error) {
		close(started)
		<-ctx.Done()
		stopped <- ctx.Err()
		return 0, ctx.Err()
	}
	ctx1, leave1 := context.WithCancel(context.Background())
	ctx2, leave2 := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { _, _, err := c.get(ctx1, key(3), slow); errs <- err }()
	<-started
	go func() {
		_, _, err := c.get(ctx2, key(3), func(context.Context) (int, error) { t.Error("second caller computed"); return 0, nil })
		errs <- err
	}()
	for c.waitersOf(key(3)) != 2 {
		runtime.Gosched()
	}
	leave1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v, want context.Canceled", err)
	}
	select {
	case err := <-stopped:
		t.Fatalf("computation stopped (%v) while a caller still waited", err)
	default:
	}
	leave2()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("second caller: %v, want context.Canceled", err)
	}
	if err := <-stopped; !errors.Is(err, context.Canceled) {
		t.Fatalf("computation ended with %v, want its context cancelled", err)
	}
	if n := c.inflightCount(); n != 0 {
		t.Fatalf("%d computations still in flight", n)
	}
	v, hit, err := c.get(context.Background(), key(3), func(context.Context) (int, error) { return 9, nil })
	if v != 9 || hit || err != nil {
		t.Fatalf("after cancellation: %v %v %v, want a fresh computation of 9", v, hit, err)
	}
}

// TestDetectCancelled: a detection whose only caller has gone runs no further and is not
// cached; the next request for the image detects it afresh.
func TestDetectCancelled(t *testing.T) {
	b, err := Load(testenv.Env(t), testenv.FixtureBundle(t), Options{MaxRegions: 100, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	img, err := os.ReadFile(testenv.Path(t, "testdata", "images", "shapes-160x128.png"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := b.Detect(ctx, img); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled detection: %v, want context.Canceled", err)
	}
	det, hit, err := b.Detect(context.Background(), img)
	if err != nil || det == nil {
		t.Fatal(err)
	}
	if hit {
		t.Fatal("the cancelled detection ran on and was cached")
	}
}
