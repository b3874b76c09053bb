package pipeline

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkDynamicBatching times Bundle.Match from concurrent callers that each send one text
// (the common case, and every search query), with batching across callers off and on, in one
// run; and, as the ceiling, one caller sending 16 texts per request. The metric is pairs/s over
// the timed loop. UNITER_BENCH_BUNDLE picks the bundle (scripts/bench.sh: UNITER-base-sized).
func BenchmarkDynamicBatching(b *testing.B) {
	bundle := benchBundle(b) // without batching; the batcher is switched on below
	regions := benchRegionsFor(bundle.Manifest.Model.FeatureDim)
	texts := benchTextsFor(b, bundle, 16)
	for _, mode := range []struct {
		name  string
		pairs int
	}{{"off", 0}, {"on", 32}} {
		if mode.pairs > 1 {
			bundle.batcher = newBatcher(bundle, mode.pairs, 0)
			defer func() { bundle.batcher.close(); bundle.batcher = nil }()
		}
		for _, callers := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("batching=%s/callers=%d", mode.name, callers), func(b *testing.B) {
				ctx := context.Background()
				var next atomic.Int64
				b.ResetTimer()
				var wg sync.WaitGroup
				for range callers {
					wg.Go(func() {
						for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
							if _, err := bundle.Match(ctx, Input{Regions: &regions}, texts[i%16:i%16+1]); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				reportPairs(b, b.N, 1)
			})
		}
		if mode.pairs == 0 {
			b.Run("one request of 16 texts", func(b *testing.B) {
				ctx := context.Background()
				for b.Loop() {
					if _, err := bundle.Match(ctx, Input{Regions: &regions}, texts); err != nil {
						b.Fatal(err)
					}
				}
				reportPairs(b, b.N, 16)
			})
		}
	}
}
