package detector

import (
	"context"
	"runtime"

	"golang.org/x/sync/semaphore"
)

// Gate bounds the image work done at once across requests: at most one decode or preprocess
// per CPU, and at most a budget of bytes held by decoded pixels and preprocessed tensors. A
// detection reserves what its image will cost (known from the header) before decoding, and
// gives the pixels' share back after preprocessing and the tensor's after the graph ran, with
// what the graph run holds beyond its input (Detector.GraphBytes). An image that alone exceeds
// the budget takes the whole budget, so it runs alone.
type Gate struct {
	cpu    chan struct{}
	memory *semaphore.Weighted
	budget int64
}

// NewGate makes a gate with a budget in bytes; budget must be positive.
func NewGate(budget int64) *Gate {
	return &Gate{cpu: make(chan struct{}, runtime.GOMAXPROCS(0)), memory: semaphore.NewWeighted(budget), budget: budget}
}

// decodeBytesPerPixel bounds what decoding costs per pixel: the decoder's own picture (up to
// 8 bytes for 16-bit PNGs, 4 for most) plus the packed RGB copy and its EXIF-rotated copy.
const decodeBytesPerPixel = 8 + 3 + 3

// reservation is one detection's share of a Gate's budget.
type reservation struct {
	g             *Gate
	pixels, input int64
}

// reserve waits until the image's pixels and the graph input, with graphBytes more held while
// the graph runs, fit in the budget.
func (g *Gate) reserve(ctx context.Context, width, height int, spec PreprocessSpec, graphBytes int64) (*reservation, error) {
	_, wr, hr := ResizeScale(width, height, spec)
	r := &reservation{g: g, pixels: int64(width) * int64(height) * decodeBytesPerPixel, input: 3*4*int64(wr)*int64(hr) + graphBytes}
	if over := r.pixels + r.input - g.budget; over > 0 {
		r.pixels = max(r.pixels-over, 0)
		r.input = g.budget - r.pixels
	}
	if err := g.memory.Acquire(ctx, r.pixels+r.input); err != nil {
		return nil, err
	}
	return r, nil
}

// cpuSlot waits for a CPU slot; release it with freeCPU.
func (g *Gate) cpuSlot(ctx context.Context) error {
	select {
	case g.cpu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *Gate) freeCPU() { <-g.cpu }

// pixelsDone gives back the decoded pixels' share; done gives back the rest.
func (r *reservation) pixelsDone() {
	r.g.memory.Release(r.pixels)
	r.pixels = 0
}

func (r *reservation) done() { r.g.memory.Release(r.pixels + r.input) }
