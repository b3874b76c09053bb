package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/uniter-serve/uniter/detector"
	ort "github.com/uniter-serve/uniter/runtime"
)

// detectionSize approximates the memory a cached detection holds.
func detectionSize(d *detector.Detection) int64 {
	n := len(d.Prepared.Features) + len(d.ClassProbs) + len(d.AttrProbs) + len(d.Regions)*(4+1+7+4)
	return int64(4*n + 256)
}

// HasDetector reports whether the bundle can take images (with its own detector or a
// borrowed one).
func (b *Bundle) HasDetector() bool { return b.DetectorBundle() != nil }

// DetectorBundle is the bundle whose detector reads this bundle's images: itself, the bundle
// it borrows from (BorrowDetector), or nil.
func (b *Bundle) DetectorBundle() *Bundle {
	switch {
	case b.detector != nil:
		return b
	case b.lender != nil:
		return b.lender
	}
	return nil
}

// BorrowDetector makes a bundle without a detector read images with lender's (its detector,
// selection and cache): a fine-tuned checkpoint's bundle served beside the bundle whose
// detector its features come from. The feature dimensions must agree. Call it before use.
func (b *Bundle) BorrowDetector(lender *Bundle) error {
	switch {
	case b.detector != nil:
		return fmt.Errorf("bundle %s has a detector of its own", b.Manifest.Name)
	case lender.detector == nil:
		return fmt.Errorf("bundle %s has no detector to lend", lender.Manifest.Name)
	case lender.Manifest.Model.FeatureDim != b.Manifest.Model.FeatureDim:
		return fmt.Errorf("bundle %s reads %d-d features, %s's detector gives %d-d ones", b.Manifest.Name,
			b.Manifest.Model.FeatureDim, lender.Manifest.Name, lender.Manifest.Model.FeatureDim)
	}
	b.lender = lender
	return nil
}

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
func (b *Bundle) MinBoxSize() float32 {
	if o := b.opts.Selection.MinBoxSize; o != nil {
		return *o
	}
	return b.Manifest.Detector.Selection.MinBoxSize
}

// PreprocessSpec is the manifest's detector.preprocess as the detector package takes it (zero
// for a bundle without a detector).
func (b *Bundle) PreprocessSpec() detector.PreprocessSpec {
	d := b.Manifest.Detector
	if d == nil {
		return detector.PreprocessSpec{}
	}
	p := d.Preprocess
	return detector.PreprocessSpec{ChannelOrder: p.ChannelOrder, PixelMeans: [3]float32(p.PixelMeans),
		PixelStd: [3]float32(p.PixelStd), ShorterSide: p.ShorterSide, LongerSideMax: p.LongerSideMax,
		ResizeRule: p.ResizeRule, MinInputSide: p.MinInputSide}
}

// newDetector is the bundle's detector: the manifest's preprocessing and selection (with the
// configured overrides) around its detector graph.
func (b *Bundle) newDetector() *detector.Detector {
	m := b.Manifest
	return &detector.Detector{
		Graph:      detectorGraph{b},
		Limits:     b.opts.Decode,
		Preprocess: b.PreprocessSpec(),
		Selection:  b.SelectionSpec(),
		MinBoxSize: b.MinBoxSize(),
		MaxRegions: b.opts.MaxRegions,
		ClassDim:   m.Model.LabelDim,
		FeatureDim: m.Model.FeatureDim,
		AttrDim:    len(b.attrs),
		Gate:       detector.NewGate(b.opts.ImageMemory),
		GraphBytes: b.PooledInputBytes(),
	}
}

// PooledInputBytes is the largest RoI-pooled heads input a split detector that pools in Go
// holds during a detection (post_nms_top_n proposals × C × S × S floats; bottom-up-attention:
// 300 × 1,024 × 14 × 14, 241 MB), counted at the image-memory gate (limits.image_memory_bytes);
// 0 for other detectors, and when the heads graph does not fix C.
func (b *Bundle) PooledInputBytes() int64 {
	d := b.Manifest.Detector
	if d == nil || d.Proposals == nil || d.Proposals.RoIPool == nil || b.detectorHeads == nil {
		return 0
	}
	p := d.Proposals
	for _, in := range b.detectorHeads.Inputs() {
		if in.Name == p.RoIPool.Input && len(in.Shape) == 4 && in.Shape[1] > 0 {
			s := int64(p.RoIPool.OutputSize)
			return int64(p.PostNMSTopN) * in.Shape[1] * s * s * 4
		}
	}
	return 0
}

// detectorGraph runs the bundle's detector session under its scheduler, with the outputs
// found by the names the manifest declares. A split detector (manifest detector.proposals)
// runs its backbone graph, proposes in Go, and scores the proposals with its heads graph.
type detectorGraph struct{ b *Bundle }

func (g detectorGraph) Run(ctx context.Context, pixels []float32, height, width int) (detector.Outputs, error) {
	b := g.b
	in := ort.Tensor{Shape: []int64{1, 3, int64(height), int64(width)}, F32: pixels}
	// One scheduler slot for the whole detection: a split detector's feature map, proposals and
	// pooled input (241 MB for bottom-up-attention) then exist at most limits.max_concurrent
	// times at once, like the graphs' own working memory.
	start := time.Now()
	if err := b.sched.Acquire(ctx); err != nil {
		return detector.Outputs{}, err
	}
	defer b.sched.Release()
	out, err := b.runHeld(ctx, GraphDetector, b.detectorGraph, []ort.Tensor{in}, 1, time.Since(start))
	if err != nil {
		return detector.Outputs{}, err
	}
	byName := outputsByName(b.detectorGraph, out)
	var boxes []float32
	if p := b.Manifest.Detector.Proposals; p != nil {
		if boxes, byName, err = g.runHeads(ctx, p, byName, height, width); err != nil || boxes == nil {
			return detector.Outputs{}, err
		}
	} else {
		boxes = byName[b.Manifest.Detector.Outputs.Boxes].F32
	}
	names := b.Manifest.Detector.Outputs
	o := detector.Outputs{Boxes: boxes, ClassProbs: byName[names.ClassProbs].F32, Features: byName[names.Features].F32}
	if len(b.attrs) > 0 {
		o.AttrProbs = byName[names.AttributeProbs].F32
	}
	return o, nil
}

// runHeads is a split detector's second half: the proposals from the backbone's RPN outputs,
// then the heads graph on them (pooled here when the manifest says so). It returns the
// proposals' boxes, flattened, and the heads' outputs; no boxes when nothing was proposed. The
// caller holds a scheduler slot.
func (g detectorGraph) runHeads(ctx context.Context, p *ProposalsSpec, backbone map[string]ort.Tensor, height, width int) ([]float32, map[string]ort.Tensor, error) {
	b := g.b
	feat, obj, deltas := backbone[p.FeatureMap], backbone[p.Objectness], backbone[p.AnchorDeltas]
	if len(feat.Shape) != 4 || len(obj.Shape) != 4 {
		return nil, nil, fmt.Errorf("%w: feature map %v and objectness %v, want [1, C, h, w]", detector.ErrInvalidOutputs, feat.Shape, obj.Shape)
	}
	c, fh, fw := int(feat.Shape[1]), int(feat.Shape[2]), int(feat.Shape[3])
	boxes, err := detector.Propose(b.proposals, obj.F32, deltas.F32, int(obj.Shape[2]), int(obj.Shape[3]), height, width)
	if err != nil {
		return nil, nil, err
	}
	if len(boxes) == 0 {
		return nil, nil, nil
	}
	n := int64(len(boxes))
	inputs := map[string]ort.Tensor{}
	if r := p.RoIPool; r != nil {
		s := int64(r.OutputSize)
		buf := pooledBuffer(int(n * int64(c) * s * s))
		defer pooledBuffers.Put(buf)
		if err := detector.RoIPool(*buf, feat.F32, c, fh, fw, boxes, r.OutputSize, r.SpatialScale); err != nil {
			return nil, nil, err
		}
		inputs[r.Input] = ort.Tensor{Shape: []int64{n, int64(c), s, s}, F32: *buf}
	} else {
		inputs[p.FeatureMap] = feat
		inputs[p.RoIs] = ort.Tensor{Shape: []int64{n, 5}, F32: detector.RoIs(boxes)}
	}
	in := make([]ort.Tensor, 0, len(inputs))
	for _, spec := range b.detectorHeads.Inputs() {
		in = append(in, inputs[spec.Name])
	}
	out, err := b.runHeld(ctx, GraphDetectorHeads, b.detectorHeads, in, 1, 0)
	if err != nil {
		return nil, nil, err
	}
	flat := make([]float32, 0, 4*len(boxes))
	for _, bx := range boxes {
		flat = append(flat, bx[:]...)
	}
	return flat, outputsByName(b.detectorHeads, out), nil
}

// pooledBuffers holds the RoI-pooled inputs of split detectors' heads graphs between
// detections (bottom-up-attention's is 241 MB an image): one per detection in flight. A buffer
// is only read by the heads graph's run, so it is free again once that run has returned.
var pooledBuffers sync.Pool

// pooledBuffer is a buffer of n values from pooledBuffers, grown when it is too small.
func pooledBuffer(n int) *[]float32 {
	buf, _ := pooledBuffers.Get().(*[]float32)
	if buf == nil || cap(*buf) < n {
		b := make([]float32, n)
		return &b
	}
	*buf = (*buf)[:n]
	return buf
}

// outputsByName pairs a session's outputs with their names.
func outputsByName(s *ort.Session, out []ort.Tensor) map[string]ort.Tensor {
	m := make(map[string]ort.Tensor, len(out))
	for i, spec := range s.Outputs() {
		m[spec.Name] = out[i]
	}
	return m
}

// Detect runs the detector on encoded image bytes (JPEG, PNG, GIF, WebP, BMP) and selects regions
// as bottom-up-attention does. Results are cached by the SHA-256 of the bytes; concurrent
// requests for the same image share one detection, which is cancelled (decoding, the queue,
// the graph run) once no request waits for it any more.
func (b *Bundle) Detect(ctx context.Context, data []byte) (*detector.Detection, bool, error) {
	if b.detector == nil && b.lender != nil {
		return b.lender.Detect(ctx, data)
	}
	if b.detector == nil {
		return nil, false, inputErr(CodeUnsupported, "model %s has no detector: send regions with features instead of an image", b.Manifest.Name)
	}
	key := sha256.Sum256(data)
	det, hit, err := b.cache.get(ctx, key, func(ctx context.Context) (*detector.Detection, error) {
		det, err := b.detector.Detect(ctx, data)
		if err != nil {
			return nil, err
		}
		det.SHA256 = hex.EncodeToString(key[:])
		return det, nil
	})
	if err != nil {
		return nil, false, classify("image", err)
	}
	return det, hit, nil
}
