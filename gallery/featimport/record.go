package featimport

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/gallery"
)

// Selection is UNITER's region selection for precomputed features (data/data.py,
// compute_num_bb): keep the first n rows, n = min(MaxBoxes, max(MinBoxes, #{conf > ConfThreshold})).
// The official extraction writes regions by confidence, best first, so this keeps the
// confident ones, at least MinBoxes and at most MaxBoxes.
type Selection struct {
	ConfThreshold      float32
	MinBoxes, MaxBoxes int
}

// DefaultSelection is UNITER's: conf_th 0.2, min_bb 10, max_bb 100.
var DefaultSelection = Selection{ConfThreshold: 0.2, MinBoxes: 10, MaxBoxes: 100}

// NumBoxes is how many leading regions the selection keeps (never more than there are).
func (s Selection) NumBoxes(conf []float32) int {
	n := 0
	for _, c := range conf {
		if c > s.ConfThreshold {
			n++
		}
	}
	return min(s.MaxBoxes, max(s.MinBoxes, n), len(conf))
}

// Options tune Image.
type Options struct {
	Selection  Selection
	FeatureDim int    // the model's; records of another dimension are refused
	Source     string // the images' Source, e.g. "import:npz"
}

// IDFromName is the gallery ID of a record named name (a file name or an LMDB key): without
// its directory and ".npz", sanitised.
func IDFromName(name string) string {
	return gallery.SanitizeID(strings.TrimSuffix(path.Base(strings.ReplaceAll(name, "\\", "/")), ".npz"))
}

// Image turns one record, the bytes of an .npz file in UNITER's feature format, into a
// gallery image: arrays features [N, D], norm_bb [N, 6] ([x1, y1, x2, y2, w, h] divided by the
// image size; UNITER appends w·h itself) or [N, 7], conf [N] and optionally soft_labels
// [N, C] and the image size image_w, image_h (then boxes are kept in pixels). Feature values
// are stored as float16. The selection keeps the first Selection.NumBoxes(conf) regions.
func Image(name string, raw []byte, opts Options) (*gallery.Image, error) {
	arrs, err := ReadNPZ(raw, "features", "norm_bb", "conf", "soft_labels", "image_w", "image_h")
	if err != nil {
		return nil, err
	}
	for _, need := range []string{"features", "norm_bb", "conf"} {
		if arrs[need] == nil {
			return nil, fmt.Errorf("%w: no %q array (UNITER's format has features, norm_bb, conf, soft_labels)", ErrFormat, need)
		}
	}
	feat, bb, conf, soft := arrs["features"], arrs["norm_bb"], arrs["conf"], arrs["soft_labels"]
	if len(feat.Shape) != 2 {
		return nil, fmt.Errorf("%w: features has shape %v, want [regions, dim]", ErrFormat, feat.Shape)
	}
	n, dim := feat.Shape[0], feat.Shape[1]
	if opts.FeatureDim > 0 && dim != opts.FeatureDim {
		return nil, fmt.Errorf("features have dimension %d, the model's feature_dim is %d", dim, opts.FeatureDim)
	}
	if len(bb.Shape) != 2 || bb.Shape[0] != n || (bb.Shape[1] != 6 && bb.Shape[1] != 7) {
		return nil, fmt.Errorf("%w: norm_bb has shape %v, want [%d, 6] or [%d, 7]", ErrFormat, bb.Shape, n, n)
	}
	if len(conf.Data) != n || len(conf.Shape) != 1 {
		return nil, fmt.Errorf("%w: conf has shape %v, want [%d]", ErrFormat, conf.Shape, n)
	}
	classDim := 0
	if soft != nil {
		if len(soft.Shape) != 2 || soft.Shape[0] != n {
			return nil, fmt.Errorf("%w: soft_labels has shape %v, want [%d, classes]", ErrFormat, soft.Shape, n)
		}
		classDim = soft.Shape[1]
	}
	width, height := 0, 0
	if w, h := arrs["image_w"], arrs["image_h"]; w != nil && h != nil && len(w.Data) == 1 && len(h.Data) == 1 {
		width, height = int(w.Data[0]), int(h.Data[0])
		if width <= 0 || height <= 0 {
			return nil, fmt.Errorf("%w: image size %d×%d", ErrFormat, width, height)
		}
	}
	k := opts.Selection.NumBoxes(conf.Data)
	if k == 0 {
		return nil, fmt.Errorf("%w: no regions", ErrFormat)
	}
	cols := bb.Shape[1]
	r := &gallery.Regions{Dim: dim, Features: feat.Data[:k*dim], Confidence: conf.Data[:k], ClassDim: classDim,
		Boxes: make([]detector.Box, k), Locations: make([][detector.LocationDim]float32, k)}
	if soft != nil {
		r.ClassProbs = soft.Data[:k*classDim]
	}
	for i := range k {
		row := bb.Data[i*cols : (i+1)*cols]
		var loc [detector.LocationDim]float32
		copy(loc[:], row)
		if cols == 6 {
			loc[6] = row[4] * row[5] // as UNITER's _get_img_feat: w·h appended
		}
		r.Locations[i] = loc
		box := detector.Box{row[0], row[1], row[2], row[3]}
		if width > 0 {
			box = detector.Box{row[0] * float32(width), row[1] * float32(height), row[2] * float32(width), row[3] * float32(height)}
		}
		r.Boxes[i] = box
	}
	sum := sha256.Sum256(raw)
	meta, _ := json.Marshal(map[string]any{"source_name": name, "source_regions": n})
	return &gallery.Image{ID: IDFromName(name), SHA256: hex.EncodeToString(sum[:]), Source: opts.Source,
		Width: width, Height: height, Metadata: meta, Created: time.Now().UTC(), Regions: r}, nil
}
