package detector

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNoProposals reports an image on which the detector graph proposed no region at all (it
// is usually too small).
var ErrNoProposals = errors.New("the detector found no region proposals (image too small?)")

// Graph runs the detector network on one preprocessed image: pixels are [1, 3, height, width]
// as Preprocess makes them. The serving pipeline implements it with an ONNX Runtime session
// (scheduling included); this package only knows the contract of its outputs.
type Graph interface {
	Run(ctx context.Context, pixels []float32, height, width int) (Outputs, error)
}

// Outputs are the graph's answer for its P proposals, row-major (docs/detector-contract.md).
type Outputs struct {
	Boxes      []float32 // P × 4, [x1, y1, x2, y2] in the graph's input pixels
	ClassProbs []float32 // P × classes, background first
	Features   []float32 // P × feature dimension
	AttrProbs  []float32 // P × attributes; nil without an attribute head
}

// Detector turns encoded image bytes into UNITER's region input the way bottom-up-attention
// does: decode (with limits and EXIF orientation), resize and normalise, run the graph, drop
// proposals smaller than MinBoxSize, select by per-class NMS and confidence, map the boxes
// back to the original image and compute their 7-d locations.
type Detector struct {
	Graph      Graph
	Limits     DecodeLimits
	Preprocess PreprocessSpec
	Selection  SelectionSpec // MinSide is ignored: MinBoxSize sets it per image
	MinBoxSize float32       // smallest proposal side kept, in original-image pixels; 0 keeps all
	MaxRegions int           // at most this many regions (the encoder's limit), after selection
	ClassDim   int           // classes of ClassProbs, background included
	FeatureDim int
	AttrDim    int // attributes of AttrProbs; 0 without an attribute head
	// Gate, when set, bounds decoding and preprocessing across detections (CPU and memory).
	Gate *Gate
	// GraphBytes is memory a graph run holds beyond its input, whatever the image (a split
	// detector's pooled proposals), reserved at Gate with the input.
	GraphBytes int64
}

// Timing splits one detection.
type Timing struct {
	Decode, Preprocess, Detector, Selection time.Duration
}

// Detection is an image's selected regions. It is shared between requests (the pipeline
// caches it): never modify one.
type Detection struct {
	SHA256        string  // of the encoded bytes; set by whoever keys detections by it
	Format        string  // the decoded format (SupportedFormats)
	Width, Height int     // original (EXIF-oriented) size
	Scale         float64 // the graph's input ≈ original · Scale (ScaleInfo.Scale)
	Proposals     int     // proposals the graph scored
	Regions       []Region
	Prepared      *Prepared // the encoder's input: features and 7-d locations
	ClassProbs    []float32 // len(Regions) × ClassDim: each region's soft label
	ClassDim      int
	AttrProbs     []float32 // len(Regions) × AttrDim; nil without an attribute head
	AttrDim       int
	Timing        Timing // of the detection that produced it
}

// Detect runs the whole path on one encoded image. It stops with ctx's error when ctx ends
// (while waiting at the gate, in the graph's queue or during its run).
func (d *Detector) Detect(ctx context.Context, data []byte) (*Detection, error) {
	var t Timing
	if d.Gate != nil {
		w, h, err := DecodeConfig(data, d.Limits)
		if err != nil {
			return nil, err
		}
		r, err := d.Gate.reserve(ctx, w, h, d.Preprocess, d.GraphBytes)
		if err != nil {
			return nil, err
		}
		defer r.done()
		if err := d.Gate.cpuSlot(ctx); err != nil {
			return nil, err
		}
		in, err := d.decode(data, &t)
		d.Gate.freeCPU()
		r.pixelsDone()
		if err != nil {
			return nil, err
		}
		return d.detect(ctx, in, &t)
	}
	in, err := d.decode(data, &t)
	if err != nil {
		return nil, err
	}
	return d.detect(ctx, in, &t)
}

// graphInput is a decoded, preprocessed image.
type graphInput struct {
	pixels []float32
	info   ScaleInfo
	format string
}

// decode decodes and preprocesses the image into the graph's input.
func (d *Detector) decode(data []byte, t *Timing) (graphInput, error) {
	start := time.Now()
	img, err := Decode(data, d.Limits)
	if err != nil {
		return graphInput{}, err
	}
	t.Decode = time.Since(start)
	start = time.Now()
	pixels, info, err := Preprocess(img, d.Preprocess)
	if err != nil {
		return graphInput{}, err
	}
	t.Preprocess = time.Since(start)
	return graphInput{pixels: pixels, info: info, format: img.Format}, nil
}

// detect runs the graph on the preprocessed image and selects its regions.
func (d *Detector) detect(ctx context.Context, in graphInput, t *Timing) (*Detection, error) {
	info := in.info
	start := time.Now()
	out, err := d.Graph.Run(ctx, in.pixels, info.ResizedHeight, info.ResizedWidth)
	if err != nil {
		return nil, err
	}
	t.Detector = time.Since(start)

	start = time.Now()
	C, D, A := d.ClassDim, d.FeatureDim, d.AttrDim
	P := len(out.Boxes) / 4
	if len(out.Boxes) != 4*P || len(out.ClassProbs) != C*P || len(out.Features) != D*P || len(out.AttrProbs) != A*P {
		return nil, fmt.Errorf("%w: %d box values, %d class probabilities, %d feature values, %d attribute probabilities; want P×4, P×%d, P×%d, P×%d",
			ErrInvalidOutputs, len(out.Boxes), len(out.ClassProbs), len(out.Features), len(out.AttrProbs), C, D, A)
	}
	if P == 0 {
		return nil, ErrNoProposals
	}
	boxes := make([]Box, P)
	for i := range boxes {
		boxes[i] = Box(out.Boxes[4*i : 4*i+4])
	}
	spec := d.Selection
	spec.MinSide = d.MinBoxSize * float32(info.Scale) // the boxes are in the resized image's pixels
	idx, conf, err := Select(boxes, out.ClassProbs, C, spec)
	if err != nil {
		return nil, err
	}
	regions := MapRegions(boxes, idx, conf, info)
	if len(regions) > d.MaxRegions {
		regions, idx = regions[:d.MaxRegions], idx[:d.MaxRegions]
	}
	det := &Detection{Format: in.format, Width: info.Width, Height: info.Height, Scale: info.Scale,
		Proposals: P, Regions: regions, ClassProbs: GatherRows(out.ClassProbs, C, idx), ClassDim: C}
	if A > 0 {
		det.AttrProbs, det.AttrDim = GatherRows(out.AttrProbs, A, idx), A
	}
	prep := &Prepared{Width: info.Width, Height: info.Height, Dim: D,
		Features: GatherRows(out.Features, D, idx), Boxes: make([]Box, len(regions)),
		Locations: make([][LocationDim]float32, len(regions))}
	for i, r := range regions {
		prep.Boxes[i], prep.Locations[i] = r.Box, r.Location
	}
	det.Prepared = prep
	t.Selection = time.Since(start)
	det.Timing = *t
	return det, nil
}
