package detector

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blockingGraph holds every run until released and records how many ran at once.
type blockingGraph struct {
	running, peak atomic.Int32
	entered       chan struct{}
	release       chan struct{}
}

func (g *blockingGraph) Run(ctx context.Context, pixels []float32, height, width int) (Outputs, error) {
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return Outputs{}, ctx.Err()
	}
	return Outputs{}, ErrNoProposals
}

// gatedDetector is a detector on a blockingGraph behind a gate with room for two and a half
// 100×50 images (their pixels and inputs), whose graph runs hold graphImages such images more.
func gatedDetector(t *testing.T, graphImages int64) (*Detector, *blockingGraph, []byte) {
	spec := PreprocessSpec{ChannelOrder: "RGB", PixelStd: [3]float32{1, 1, 1}, ShorterSide: 100}
	_, wr, hr := ResizeScale(100, 50, spec)
	perImage := int64(100*50*decodeBytesPerPixel + 12*wr*hr)
	g := &blockingGraph{entered: make(chan struct{}, 8), release: make(chan struct{})}
	d := &Detector{Graph: g, Preprocess: spec, Selection: SelectionSpec{NMSIoU: 0.3, MinBoxes: 1, MaxBoxes: 10},
		MaxRegions: 10, ClassDim: 3, FeatureDim: 2, Gate: NewGate(2*perImage + perImage/2), GraphBytes: graphImages * perImage}
	return d, g, pngBytes(t, 100, 50)
}

// TestGateBoundsMemory: with a budget for two images' pixels and inputs, a third detection
// waits at the gate (before decoding) until one of the first two has finished its graph run,
// and a detection whose caller leaves while it waits stops with the caller's error.
func TestGateBoundsMemory(t *testing.T) {
	d, g, img := gatedDetector(t, 0)

	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := d.Detect(context.Background(), img); !errors.Is(err, ErrNoProposals) {
				t.Errorf("detection: %v, want the graph's answer", err)
			}
		}()
	}
	<-g.entered
	<-g.entered
	select {
	case <-g.entered:
		t.Fatal("a third image was decoded and run beyond the memory budget")
	case <-time.After(200 * time.Millisecond):
	}

	// A caller that gives up while waiting at the gate gets its own error.
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() { _, err := d.Detect(ctx, img); waited <- err }()
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled detection: %v, want context.Canceled", err)
	}

	g.release <- struct{}{} // one run ends: the third may go
	<-g.entered
	close(g.release)
	wg.Wait()
	if p := g.peak.Load(); p != 2 {
		t.Fatalf("%d graph runs at once, want 2", p)
	}
}

// What a graph run holds beyond its input (Detector.GraphBytes) counts too: with it, the
// budget that let two detections run at once lets one.
func TestGateCountsGraphBytes(t *testing.T) {
	d, g, img := gatedDetector(t, 1)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := d.Detect(context.Background(), img); !errors.Is(err, ErrNoProposals) {
				t.Errorf("detection: %v, want the graph's answer", err)
			}
		})
	}
	<-g.entered
	select {
	case <-g.entered:
		t.Fatal("a second detection ran beside the first beyond the budget its graph bytes leave")
	case <-time.After(200 * time.Millisecond):
	}
	g.release <- struct{}{}
	<-g.entered
	close(g.release)
	wg.Wait()
	if p := g.peak.Load(); p != 1 {
		t.Fatalf("%d graph runs at once, want 1", p)
	}
}

// An image larger than the whole budget still runs, alone.
func TestGateImageOverBudget(t *testing.T) {
	g := &fakeGraph{out: Outputs{}}
	d := &Detector{Graph: g, Preprocess: PreprocessSpec{ChannelOrder: "RGB", PixelStd: [3]float32{1, 1, 1}, ShorterSide: 100},
		MaxRegions: 10, ClassDim: 3, FeatureDim: 2, Gate: NewGate(1000)}
	if _, err := d.Detect(context.Background(), pngBytes(t, 100, 50)); !errors.Is(err, ErrNoProposals) {
		t.Fatalf("got %v, want the graph's answer (no proposals)", err)
	}
}
