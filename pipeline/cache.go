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

type call[V any] struct {
	done chan struct{}
	val  V
	err  error
}

func newResultCache[V any](maxBytes int64, sizeOf func(V) int64) *resultCache[V] {
	return &resultCache[V]{maxBytes: maxBytes, sizeOf: sizeOf, order: list.New(),
		entries: map[[32]byte]*list.Element{}, inflight: map[[32]byte]*call[V]{}}
}

// get returns the cached value for key or computes it with fn. hit reports whether fn was
// avoided. Errors are not cached. A waiter whose ctx ends stops waiting; the computation goes on
// for the others.
func (c *resultCache[V]) get(ctx context.Context, key [32]byte, fn func() (V, error)) (v V, hit bool, err error) {
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		c.order.MoveToFront(el)
		c.mu.Unlock()
		c.hits.Add(1)
		return el.Value.(*cacheEntry[V]).val, true, nil
	}
	if cl, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		select {
		case <-cl.done:
			if cl.err == nil {
				c.hits.Add(1)
			}
			return cl.val, cl.err == nil, cl.err
		case <-ctx.Done():
			return v, false, ctx.Err()
		}
	}
	cl := &call[V]{done: make(chan struct{})}
	c.inflight[key] = cl
	c.mu.Unlock()
	c.misses.Add(1)

	cl.val, cl.err = fn()
	c.mu.Lock()
	delete(c.inflight, key)
	if cl.err == nil {
		c.add(key, cl.val)
	}
	c.mu.Unlock()
	close(cl.done)
	return cl.val, false, cl.err
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
