package pipeline

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"
)

// resultCache is a byte-bounded LRU of detector results keyed by the SHA-256 of the image
// bytes. Concurrent misses on the same key share one computation (the detector never runs
// twice for an image it is already working on). Values are immutable once stored.
type resultCache[V any] struct {
	maxBytes int64
	sizeOf   func(V) int64

	mu       sync.Mutex
	bytes    int64
	order    *list.List // front = most recently used; elements hold *cacheEntry[V]
	entries  map[[32]byte]*list.Element
	inflight map[[32]byte]*call[V]

	hits, misses atomic.Int64
}

type cacheEntry[V any] struct {
	key  [32]byte
	val  V
	size int64
}

// call is one computation in flight. Its context is cancelled when the last caller waiting
// for it leaves: a shared detection runs only while somebody wants its result.
type call[V any] struct {
	done    chan struct{}
	val     V
	err     error
	waiters int // guarded by resultCache.mu
	cancel  context.CancelFunc
}

func newResultCache[V any](maxBytes int64, sizeOf func(V) int64) *resultCache[V] {
	return &resultCache[V]{maxBytes: maxBytes, sizeOf: sizeOf, order: list.New(),
		entries: map[[32]byte]*list.Element{}, inflight: map[[32]byte]*call[V]{}}
}

// get returns the cached value for key or computes it with fn. hit reports whether fn was
// avoided. Errors are not cached. Concurrent callers for one key share one computation, which
// runs in its own goroutine with a context of its own (ctx's values, not its deadline); a
// caller whose ctx ends stops waiting, and when no caller is left the computation is
// cancelled and forgotten, so that a later caller starts afresh.
func (c *resultCache[V]) get(ctx context.Context, key [32]byte, fn func(context.Context) (V, error)) (v V, hit bool, err error) {
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		c.order.MoveToFront(el)
		c.mu.Unlock()
		c.hits.Add(1)
		return el.Value.(*cacheEntry[V]).val, true, nil
	}
	cl, shared := c.inflight[key]
	if !shared {
		callCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cl = &call[V]{done: make(chan struct{}), cancel: cancel}
		c.inflight[key] = cl
		c.misses.Add(1)
		go c.compute(callCtx, key, cl, fn)
	}
	cl.waiters++
	c.mu.Unlock()

	select {
	case <-cl.done:
		if shared && cl.err == nil {
			c.hits.Add(1)
		}
		return cl.val, shared && cl.err == nil, cl.err
	case <-ctx.Done():
		c.mu.Lock()
		if cl.waiters--; cl.waiters == 0 {
			cl.cancel()
			if c.inflight[key] == cl {
				delete(c.inflight, key)
			}
		}
		c.mu.Unlock()
		return v, false, ctx.Err()
	}
}

func (c *resultCache[V]) compute(ctx context.Context, key [32]byte, cl *call[V], fn func(context.Context) (V, error)) {
	defer cl.cancel()
	cl.val, cl.err = fn(ctx)
	c.mu.Lock()
	if c.inflight[key] == cl {
		delete(c.inflight, key)
		if cl.err == nil {
			c.add(key, cl.val)
		}
	}
	c.mu.Unlock()
	close(cl.done)
}

// waitersOf is the number of callers waiting for key's computation (for tests).
func (c *resultCache[V]) waitersOf(key [32]byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.inflight[key]; ok {
		return cl.waiters
	}
	return 0
}

// inflightCount is the number of computations running for a waiter (for tests).
func (c *resultCache[V]) inflightCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.inflight)
}

// add stores a value and evicts least recently used ones past the bound; c.mu is held.
// A value larger than the whole bound is not stored.
func (c *resultCache[V]) add(key [32]byte, v V) {
	size := c.sizeOf(v)
	if c.maxBytes <= 0 || size > c.maxBytes {
		return
	}
	c.entries[key] = c.order.PushFront(&cacheEntry[V]{key: key, val: v, size: size})
	c.bytes += size
	for c.bytes > c.maxBytes {
		el := c.order.Back()
		e := el.Value.(*cacheEntry[V])
		c.order.Remove(el)
		delete(c.entries, e.key)
		c.bytes -= e.size
	}
}

// CacheStats are the detector cache's counters.
type CacheStats struct {
	Hits, Misses int64
	Entries      int
	Bytes        int64
	MaxBytes     int64
}

func (c *resultCache[V]) stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Entries: len(c.entries), Bytes: c.bytes, MaxBytes: c.maxBytes}
}
