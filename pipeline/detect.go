package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/uniter-serve/uniter/detector"
	ort "github.com/uniter-serve/uniter/runtime"
)

// DetectedImage is an image's regions as the bundle's detector selected them. It is cached and
// shared between requests: never modify one.
type DetectedImage struct {
	SHA256        string
	Format        string
	Width, Height int     // original (EXIF-oriented) size
	Scale         float64 // detector input = original · Scale
	Proposals     int     // RPN proposals the detector scored
	Regions       []detector.Region
	Prepared      *detector.Prepared // the encoder's input: features and 7-d locations
	ClassProbs    []float32          // len(Regions) × ClassDim: each region's soft label
	ClassDim      int
	AttrProbs     []float32 // len(Regions) × AttrDim; nil without an attribute head
	AttrDim       int
	Timing        Timing // of the detection that produced this result (not of a cache hit)
}

// Timing splits a request's model work.
type Timing struct {
	Decode, Preprocess, Detector, Selection, Encoder, OT time.Duration
	CacheHit                                             bool // the image's regions came from the cache
}

// size approximates the memory a cached DetectedImage holds.
func (d *DetectedImage) size() int64 {
	n := len(d.Prepared.Features) + len(d.ClassProbs) + len(d.AttrProbs) + len(d.Regions)*(4+1+7+4)
	return int64(4*n + 256)
}

// HasDetector reports whether the bundle can take images.
func (b *Bundle) HasDetector() bool { return b.detector != nil }

// AttributeLabels are the detector's attribute names; nil without an attribute head.
func (b *Bundle) AttributeLabels() []string { return b.attrs }

// CacheStats reports the detector cache's counters.
func (b *Bundle) CacheStats() CacheStats { return b.cache.stats() }

// SelectionSpec is the region selection in force: the manifest's, with the configured overrides.
func (b *Bundle) SelectionSpec() detector.SelectionSpec {
	d := b.Manifest.Detector
	s := detector.SelectionSpec{NMSIoU: d.Selection.NMSIoU, MinConfidence: d.Selection.MinConfidence,
		MinBoxes: d.Selection.MinBoxes, MaxBoxes: d.Selection.MaxBoxes, Background: d.BackgroundIndex}
	o := b.opts.Selection
	if o.NMSIoU != nil {
		s.NMSIoU = *o.NMSIoU
	}
	if o.MinConfidence != nil {
		s.MinConfidence = *o.MinConfidence
	}
	if o.MinBoxes != nil {
		s.MinBoxes = *o.MinBoxes
	}
	if o.MaxBoxes != nil {
		s.MaxBoxes = *o.MaxBoxes
	}
	return s
}

// MinBoxSize is the smallest proposal side kept, in pixels of the original image: the
// manifest's selection.min_box_size or the configured override; 0 keeps every proposal.
// Detect applies it in the resized image's pixels (× its scale), where the boxes are.
func (b *Bundle) MinBoxSize() float32 {
	if o := b.opts.Selection.MinBoxSize; o != nil {
		return *o
	}
	return b.Manifest.Detector.Selection.MinBoxSize
}

func (b *Bundle) preprocessSpec() detector.PreprocessSpec {
	p := b.Manifest.Detector.Preprocess
	return detector.PreprocessSpec{ChannelOrder: p.ChannelOrder, PixelMeans: [3]float32(p.PixelMeans),
		PixelStd: [3]float32(p.PixelStd), ShorterSide: p.ShorterSide, LongerSideMax: p.LongerSideMax}
}

// Detect runs the detector on encoded image bytes (JPEG, PNG, GIF, WebP, BMP) and selects regions
// as bottom-up-attention does. Results are cached by the SHA-256 of the bytes; concurrent
// requests for the same image share one detection, which runs to completion even if the
// request that started it goes away (its result serves the others and later retries).
func (b *Bundle) Detect(ctx context.Context, data []byte) (*DetectedImage, bool, error) {
	if b.detector == nil {
		return nil, false, inputErr(CodeUnsupported, "model %s has no detector: send regions with features instead of an image", b.Manifest.Name)
	}
	key := sha256.Sum256(data)
	det, hit, err := b.cache.get(ctx, key, func() (*DetectedImage, error) {
		return b.detect(context.WithoutCancel(ctx), data, hex.EncodeToString(key[:]))
	})
	if err != nil {
		return nil, false, classify("image", err)
	}
	return det, hit, nil
}

func (b *Bundle) detect(ctx context.Context, data []byte, sum string) (*DetectedImage, error) {
	var t Timing
	start := time.Now()
	img, err := detector.Decode(data, b.opts.Decode)
	if err != nil {
		return nil, err
	}
	t.Decode = time.Since(start)

	start = time.Now()
	pixels, info, err := detector.Preprocess(img, b.preprocessSpec())
	if err != nil {
		return nil, err
	}
	t.Preprocess = time.Since(start)

	start = time.Now()
	d := b.Manifest.Detector
	in := ort.Tensor{Shape: []int64{1, 3, int64(info.ResizedHeight), int64(info.ResizedWidth)}, F32: pixels}
	if err := b.sched.Acquire(ctx); err != nil {
		return nil, err
	}
	out, err := b.detector.Run(ctx, []ort.Tensor{in})
	b.sched.Release()
	if err != nil {
		return nil, err
	}
	t.Detector = time.Since(start)

	start = time.Now()
	byName := map[string]ort.Tensor{}
	for i, spec := range b.detector.Outputs() {
		byName[spec.Name] = out[i]
	}
	C, D, A := b.Manifest.Model.LabelDim, b.Manifest.Model.FeatureDim, len(b.attrs)
	boxesT, probsT, featT := byName[d.Outputs.Boxes], byName[d.Outputs.ClassProbs], byName[d.Outputs.Features]
	P := 0
	if len(boxesT.Shape) == 2 {
		P = int(boxesT.Shape[0])
	}
	if len(boxesT.F32) != 4*P || len(probsT.F32) != C*P || len(featT.F32) != D*P {
		return nil, fmt.Errorf("detector returned shapes %v %v %v, want [P,4] [P,%d] [P,%d]", boxesT.Shape, probsT.Shape, featT.Shape, C, D)
	}
	if P == 0 {
		return nil, &InputError{Code: "no_regions", Message: "image: the detector found no region proposals (image too small?)"}
	}
	boxes := make([]detector.Box, P)
	for i := range boxes {
		boxes[i] = detector.Box(boxesT.F32[4*i : 4*i+4])
	}
	spec := b.SelectionSpec()
	spec.MinSide = b.MinBoxSize() * float32(info.Scale)
	idx, conf, err := detector.Select(boxes, probsT.F32, C, spec)
	if err != nil {
		return nil, err
	}
	regions := detector.MapRegions(boxes, idx, conf, info)
	if len(regions) > b.opts.MaxRegions {
		regions, idx = regions[:b.opts.MaxRegions], idx[:b.opts.MaxRegions]
	}
	det := &DetectedImage{SHA256: sum, Format: img.Format, Width: info.Width, Height: info.Height, Scale: info.Scale,
		Proposals: P, Regions: regions, ClassProbs: detector.GatherRows(probsT.F32, C, idx), ClassDim: C}
	if A > 0 {
		attrT := byName[d.Outputs.AttributeProbs]
		if len(attrT.F32) != A*P {
			return nil, fmt.Errorf("detector returned attribute shape %v, want [P,%d]", attrT.Shape, A)
		}
		det.AttrProbs, det.AttrDim = detector.GatherRows(attrT.F32, A, idx), A
	}
	prep := &detector.Prepared{Width: info.Width, Height: info.Height, Dim: D,
		Features: detector.GatherRows(featT.F32, D, idx), Boxes: make([]detector.Box, len(regions)),
		Locations: make([][detector.LocationDim]float32, len(regions))}
	for i, r := range regions {
		prep.Boxes[i], prep.Locations[i] = r.Box, r.Location
	}
	det.Prepared = prep
	t.Selection = time.Since(start)
	det.Timing = t
	return det, nil
}
