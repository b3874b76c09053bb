// Package pipeline is the serving path: it loads UNITER model bundles (manifest, graphs,
// vocabulary, labels) and runs the request pipelines that compose the packages below it: text →
// textproc, images → detector, graphs → runtime, scores and alignments → heads. It caches
// detections by the image's SHA-256 and bounds graph runs with a scheduler. Bundles are made by
// the Python package in models/ (docs/bundle-format.md).
package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/uniter-serve/uniter/detector"
	ort "github.com/uniter-serve/uniter/runtime"
)

// ManifestFormat is the bundle manifest version this build reads.
const ManifestFormat = 1

// Graph roles a bundle may declare.
const (
	GraphEncoder          = "encoder"
	GraphEncoderAttention = "encoder_attention"
	GraphMLMHead          = "mlm_head"
	GraphMRCHead          = "mrc_head"
	GraphDetector         = "detector"
	GraphDetectorHeads    = "detector_heads" // a split detector's second graph (detector.proposals)
	GraphNLVR2            = "nlvr2"
)

// Tasks a bundle's checkpoint was fine-tuned for (manifest task.name). A bundle without a
// task section is a pre-training one.
const (
	TaskPretrain  = "pretrain"
	TaskRetrieval = "retrieval"
	TaskVQA       = "vqa"
	TaskVE        = "ve"
	TaskNLVR2     = "nlvr2"
	TaskRE        = "re"
)

// Precisions of the encoder graphs (encoder, encoder_attention, nlvr2; manifest precision):
// PrecisionInt8 graphs are dynamically quantized (int8 weights per output channel, uint8
// activations quantized at run time, MatMulInteger: python3 -m uniter.quantize);
// PrecisionFP32Fused graphs have their self-attention and GELU in ONNX Runtime's
// com.microsoft.Attention and Gelu, and PrecisionFP16 graphs are those converted to float16
// (python3 -m uniter.fuse). Every precision takes and returns float32: only the arithmetic
// inside the graph differs. The detector and the MLM/MRC heads stay fp32.
const (
	PrecisionFP32      = "fp32"
	PrecisionInt8      = "int8"
	PrecisionFP32Fused = "fp32-fused"
	PrecisionFP16      = "fp16"
)

// precisions lists the manifest precisions this build reads.
var precisions = []string{PrecisionFP32, PrecisionInt8, PrecisionFP32Fused, PrecisionFP16}

// The NLVR2 layouts of the official code (task.layout).
const (
	NLVR2Paired     = "paired"
	NLVR2Triplet    = "triplet"
	NLVR2PairedAttn = "paired_attn"
)

// Manifest is manifest.json: everything the Go side must know about a bundle. Nothing about a
// model is guessed from graph names or shapes.
type Manifest struct {
	FormatVersion int              `json:"format_version"`
	Name          string           `json:"name"`
	Description   string           `json:"description"`
	RandomWeights bool             `json:"random_weights"`
	Precision     string           `json:"precision,omitempty"` // the encoder graphs': one of precisions (absent: PrecisionFP32)
	Model         ModelDims        `json:"model"`
	Text          TextSpec         `json:"text"`
	Regions       RegionSpec       `json:"regions"`
	Task          *TaskSpec        `json:"task,omitempty"`
	Heads         HeadSet          `json:"heads"`
	Graphs        map[string]Graph `json:"graphs"`
	Detector      *DetectorSpec    `json:"detector,omitempty"`
	Provenance    map[string]any   `json:"provenance"`
}

// ModelDims are the encoder's dimensions.
type ModelDims struct {
	Architecture          string `json:"architecture"`
	HiddenSize            int    `json:"hidden_size"`
	NumHiddenLayers       int    `json:"num_hidden_layers"`
	NumAttentionHeads     int    `json:"num_attention_heads"`
	IntermediateSize      int    `json:"intermediate_size"`
	VocabSize             int    `json:"vocab_size"`
	MaxPositionEmbeddings int    `json:"max_position_embeddings"`
	FeatureDim            int    `json:"feature_dim"`
	LocationDim           int    `json:"location_dim"`
	LabelDim              int    `json:"label_dim"`
}

// TextSpec configures tokenisation.
type TextSpec struct {
	Vocab         string            `json:"vocab"`
	Lowercase     bool              `json:"lowercase"`
	MaxLength     int               `json:"max_length"`
	SpecialTokens map[string]string `json:"special_tokens"`
	// Domain says, for people, what texts the vocabulary was made for (e.g. "Shapes World
	// captions"); optional.
	Domain string `json:"domain,omitempty"`
	// ClosedVocabulary says the vocabulary is a closed domain vocabulary: every word the model
	// was trained on is one token, its word pieces only spell the rest, so a word split into
	// pieces is outside the model's domain, as is one that becomes [UNK]. Absent (BERT's open
	// vocabulary): only [UNK] words are unknown.
	ClosedVocabulary bool `json:"closed_vocabulary,omitempty"`
}

// maxDescribe bounds the descriptive texts of a manifest (text.domain, detector.description,
// detector.domain), in bytes.
const maxDescribe = 1000

// checkDescribe checks one of a manifest's descriptive texts, which are shown to people as
// they are: optional, but when given, words on one line.
func checkDescribe(key, v string) error {
	switch {
	case v == "":
		return nil
	case strings.TrimSpace(v) == "":
		return fmt.Errorf("%s is blank: give a description or leave the key out", key)
	case len(v) > maxDescribe:
		return fmt.Errorf("%s has %d bytes, at most %d", key, len(v), maxDescribe)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not valid UTF-8", key)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s holds the control character %U: one line of text", key, r)
		}
	}
	return nil
}

// RegionSpec names the detector-class label file of the MRC head.
type RegionSpec struct {
	Labels          string `json:"labels"`
	BackgroundIndex int    `json:"background_index"`
}

// TaskSpec says what the checkpoint was fine-tuned for.
type TaskSpec struct {
	Name   string `json:"name"`             // TaskPretrain, TaskRetrieval, …
	Class  string `json:"class"`            // the official model class, e.g. UniterForVisualQuestionAnswering
	Labels string `json:"labels,omitempty"` // vqa: the answers, ve: the three classes; one per line, in logit order
	Layout string `json:"layout,omitempty"` // nlvr2: NLVR2Paired, NLVR2Triplet or NLVR2PairedAttn
	REMLP  int    `json:"re_mlp,omitempty"` // re: 1 (linear) or 2 (two-layer) re_output
}

// HeadSet says which heads the bundle carries: only heads whose weights were in the
// checkpoint are exported and declared.
type HeadSet struct {
	ITM       bool `json:"itm"`
	Rank      bool `json:"rank"`
	MLM       bool `json:"mlm"`
	MRC       bool `json:"mrc"`
	Attention bool `json:"attention"`
	VQA       bool `json:"vqa,omitempty"`
	VE        bool `json:"ve,omitempty"`
	NLVR2     bool `json:"nlvr2,omitempty"`
	RE        bool `json:"re,omitempty"`
}

// TaskName is the bundle's task (TaskPretrain without a task section).
func (m *Manifest) TaskName() string {
	if m.Task == nil {
		return TaskPretrain
	}
	return m.Task.Name
}

// PrecisionName is the encoder graphs' precision: PrecisionFP32 when the manifest has none.
func (m *Manifest) PrecisionName() string {
	if m.Precision == "" {
		return PrecisionFP32
	}
	return m.Precision
}

// Graph is one ONNX file and its declared I/O.
type Graph struct {
	File    string   `json:"file"`
	SHA256  string   `json:"sha256"`
	Inputs  []Tensor `json:"inputs"`
	Outputs []Tensor `json:"outputs"`
}

// Tensor declares one graph input or output; a dim is a number or a symbolic name (dynamic).
type Tensor struct {
	Name  string            `json:"name"`
	DType string            `json:"dtype"`
	Shape []json.RawMessage `json:"shape"`
}

// Spec converts a declaration into the runtime's form (symbolic dims become -1).
func (t Tensor) Spec() (ort.IOSpec, error) {
	spec := ort.IOSpec{Name: t.Name, DType: ort.DType(t.DType)}
	if spec.DType != ort.Float32 && spec.DType != ort.Int64 {
		return spec, fmt.Errorf("tensor %q: dtype %q not supported", t.Name, t.DType)
	}
	for i, raw := range t.Shape {
		var n int64
		var sym string
		switch {
		case json.Unmarshal(raw, &n) == nil && n > 0:
			spec.Shape = append(spec.Shape, n)
		case json.Unmarshal(raw, &sym) == nil && sym != "":
			spec.Shape = append(spec.Shape, -1)
		default:
			return spec, fmt.Errorf("tensor %q: dim %d is %s, want a positive integer or a name", t.Name, i, raw)
		}
	}
	return spec, nil
}

// ReadManifest reads and validates dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("bundle %s: manifest.json: %w", dir, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("bundle %s: manifest.json: %w", dir, err)
	}
	return &m, nil
}

// Validate checks the manifest on its own (the graphs are checked against it at load).
func (m *Manifest) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if m.FormatVersion != ManifestFormat {
		bad("format_version %d, this build reads %d", m.FormatVersion, ManifestFormat)
	}
	if m.Name == "" {
		bad("name is empty")
	}
	if p := m.Precision; p != "" && !slices.Contains(precisions, p) {
		bad("precision %q: want one of %s (absent means %s)", p, strings.Join(precisions, ", "), PrecisionFP32)
	}
	d := m.Model
	if d.Architecture != "uniter" {
		bad("model.architecture %q, want \"uniter\"", d.Architecture)
	}
	for key, v := range map[string]int{"hidden_size": d.HiddenSize, "num_hidden_layers": d.NumHiddenLayers,
		"num_attention_heads": d.NumAttentionHeads, "vocab_size": d.VocabSize, "feature_dim": d.FeatureDim,
		"label_dim": d.LabelDim, "max_position_embeddings": d.MaxPositionEmbeddings} {
		if v <= 0 {
			bad("model.%s must be positive, got %d", key, v)
		}
	}
	if d.LocationDim != 7 {
		bad("model.location_dim %d, UNITER uses 7", d.LocationDim)
	}
	if m.Text.Vocab == "" {
		bad("text.vocab is empty")
	}
	if m.Text.MaxLength < 3 || m.Text.MaxLength > d.MaxPositionEmbeddings {
		bad("text.max_length %d must be in [3, %d]", m.Text.MaxLength, d.MaxPositionEmbeddings)
	}
	if err := checkDescribe("text.domain", m.Text.Domain); err != nil {
		errs = append(errs, err)
	}
	if m.Regions.BackgroundIndex < 0 || m.Regions.BackgroundIndex >= max(d.LabelDim, 1) {
		bad("regions.background_index %d outside [0, %d)", m.Regions.BackgroundIndex, d.LabelDim)
	}
	if _, ok := m.Graphs[GraphEncoder]; !ok {
		bad("graphs.%s is missing", GraphEncoder)
	}
	errs = append(errs, m.validateTask()...)
	need := map[string]bool{GraphEncoderAttention: m.Heads.Attention, GraphMLMHead: m.Heads.MLM, GraphMRCHead: m.Heads.MRC,
		GraphNLVR2: m.Heads.NLVR2}
	for g, want := range need {
		if _, ok := m.Graphs[g]; ok != want {
			bad("heads and graphs disagree about %s", g)
		}
	}
	if m.Detector != nil {
		errs = append(errs, m.Detector.validate(m)...)
	}
	for role, g := range m.Graphs {
		if g.File == "" || filepath.IsAbs(g.File) || strings.Contains(g.File, "..") {
			bad("graphs.%s.file %q must be a file inside the bundle", role, g.File)
		}
		for _, t := range append(append([]Tensor(nil), g.Inputs...), g.Outputs...) {
			if _, err := t.Spec(); err != nil {
				bad("graphs.%s: %v", role, err)
			}
		}
	}
	return errors.Join(errs...)
}

// validateTask checks the task section against the heads: a task's head is there, and no
// other task's.
func (m *Manifest) validateTask() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("task."+format, a...)) }
	name := m.TaskName()
	h := m.Heads
	switch name {
	case TaskPretrain, TaskRetrieval, TaskVQA, TaskVE, TaskNLVR2, TaskRE:
	default:
		bad("name %q: want one of %s", name, strings.Join([]string{TaskPretrain, TaskRetrieval, TaskVQA, TaskVE, TaskNLVR2, TaskRE}, ", "))
		return errs
	}
	for task, has := range map[string]bool{TaskVQA: h.VQA, TaskVE: h.VE, TaskNLVR2: h.NLVR2, TaskRE: h.RE} {
		if has != (name == task) {
			bad("name %q and heads.%s = %v disagree", name, task, has)
		}
	}
	if name == TaskRetrieval && !h.Rank {
		bad("name %q needs heads.rank", name)
	}
	t := m.Task
	if (name == TaskVQA || name == TaskVE) && (t == nil || t.Labels == "") {
		bad("labels: a %s bundle names its label file", name)
	}
	if name == TaskNLVR2 {
		if l := t.Layout; l != NLVR2Paired && l != NLVR2Triplet && l != NLVR2PairedAttn {
			bad("layout %q: want %s, %s or %s", l, NLVR2Paired, NLVR2Triplet, NLVR2PairedAttn)
		}
	}
	return errs
}

// DetectorSpec declares the bundle's Faster R-CNN (docs/detector-contract.md): which graph and
// outputs, how images are preprocessed, and how regions are selected.
type DetectorSpec struct {
	// Description says what the detector is, for people (e.g. "Faster R-CNN trained on Shapes
	// World"); Domain, the images it was trained for and knows (e.g. "Shapes World only: …;
	// photographs are outside it"). Both optional, reported by GET /v1/models.
	Description string `json:"description,omitempty"`
	Domain      string `json:"domain,omitempty"`
	Graph       string `json:"graph"`
	Input       string `json:"input"`
	// Outputs name the graph outputs the contract reads: Graph's, or with Proposals the heads
	// graph's, and then without boxes (the proposals are the boxes).
	Outputs struct {
		Boxes          string `json:"boxes,omitempty"`
		ClassProbs     string `json:"class_probs"`
		Features       string `json:"features"`
		AttributeProbs string `json:"attribute_probs,omitempty"`
	} `json:"outputs"`
	Preprocess struct {
		ChannelOrder  string    `json:"channel_order"`
		PixelMeans    []float32 `json:"pixel_means"`
		PixelStd      []float32 `json:"pixel_std"`
		ShorterSide   int       `json:"shorter_side"`
		LongerSideMax int       `json:"longer_side_max"`
		Resize        string    `json:"resize"`
		// ResizeRule is how the resized size is computed and boxes map back:
		// "shorter_side" (absent: the default, one scale) or "detectron2" (the LXMERT port's
		// ResizeShortestEdge, boxes mapped back per axis); docs/detector-contract.md.
		ResizeRule string `json:"resize_rule,omitempty"`
		// MinInputSide is the smallest resized side the graph takes (absent: any); a smaller
		// image is answered 400 image_too_small.
		MinInputSide int `json:"min_input_side,omitempty"`
	} `json:"preprocess"`
	BackgroundIndex int    `json:"background_index"`
	Labels          string `json:"labels"`
	Attributes      string `json:"attributes,omitempty"`
	Selection       struct {
		NMSIoU        float32 `json:"nms_iou"`
		MinConfidence float32 `json:"min_confidence"`
		MinBoxes      int     `json:"min_boxes"`
		MaxBoxes      int     `json:"max_boxes"`
		// MinBoxSize drops proposals narrower or lower than this many pixels of the original
		// image before selection (bottom-up-attention's RPN_MIN_SIZE); absent or 0 keeps all.
		MinBoxSize float32 `json:"min_box_size,omitempty"`
	} `json:"selection"`
	// Proposals, when present, splits the detector in two graphs with the proposal stage in Go
	// between them (docs/detector-contract.md, "Split detectors"): Graph is then the backbone
	// and RPN head, and the heads graph pools the proposals (Proposals.RoIs) or takes them
	// pooled in Go (Proposals.RoIPool).
	Proposals *ProposalsSpec `json:"proposals,omitempty"`
}

// ProposalsSpec is a split detector's proposal stage: the graphs' tensor names and
// bottom-up-attention's test-time RPN settings (detector.ProposalSpec).
type ProposalsSpec struct {
	HeadsGraph   string `json:"heads_graph"`
	FeatureMap   string `json:"feature_map"`   // backbone output [1, C, fh, fw]
	Objectness   string `json:"objectness"`    // backbone output [1, A, fh, fw]
	AnchorDeltas string `json:"anchor_deltas"` // backbone output [1, 4A, fh, fw]
	// Exactly one of RoIs (the heads graph's input [P, 5] beside the feature map: it pools
	// itself) and RoIPool (Go max-pools, the heads graph takes [P, C, S, S]).
	RoIs         string       `json:"rois,omitempty"`
	RoIPool      *RoIPoolSpec `json:"roi_pool,omitempty"`
	Stride       float32      `json:"stride"`
	AnchorOffset float32      `json:"anchor_offset"`
	CellAnchors  [][4]float32 `json:"cell_anchors"`
	BoxWeights   [4]float32   `json:"box_weights"`
	ScaleClamp   float32      `json:"scale_clamp"`
	PreNMSTopN   int          `json:"pre_nms_top_n"`
	PostNMSTopN  int          `json:"post_nms_top_n"`
	NMSIoU       float32      `json:"nms_iou"`
	MinSize      *float32     `json:"min_size,omitempty"`
}

// RoIPoolSpec is Caffe's RoI max pooling done in Go (detector.RoIPool).
type RoIPoolSpec struct {
	Input        string  `json:"input"`
	OutputSize   int     `json:"output_size"`
	SpatialScale float32 `json:"spatial_scale"`
}

// Spec is the proposal stage as package detector runs it.
func (p *ProposalsSpec) Spec() detector.ProposalSpec {
	anchors := make([]detector.Box, len(p.CellAnchors))
	for i, a := range p.CellAnchors {
		anchors[i] = detector.Box(a)
	}
	return detector.ProposalSpec{Stride: p.Stride, AnchorOffset: p.AnchorOffset, CellAnchors: anchors,
		BoxWeights: p.BoxWeights, ScaleClamp: p.ScaleClamp, PreNMSTopN: p.PreNMSTopN,
		PostNMSTopN: p.PostNMSTopN, NMSIoU: p.NMSIoU, MinSize: p.MinSize}
}

// HeadsGraphName is the graph that scores the proposals: Graph itself, or the split
// detector's heads graph.
func (d *DetectorSpec) HeadsGraphName() string {
	if d.Proposals != nil {
		return d.Proposals.HeadsGraph
	}
	return d.Graph
}

// validate checks the detector section against itself and the manifest's graphs and dims.
func (d *DetectorSpec) validate(m *Manifest) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("detector."+format, a...)) }
	for _, e := range []error{checkDescribe("detector.description", d.Description), checkDescribe("detector.domain", d.Domain)} {
		if e != nil {
			errs = append(errs, e)
		}
	}
	g, ok := m.Graphs[d.Graph]
	if !ok {
		bad("graph %q is not in graphs", d.Graph)
		return errs
	}
	if len(g.Inputs) != 1 || g.Inputs[0].Name != d.Input {
		bad("input %q: graph %s must have exactly that one input", d.Input, d.Graph)
	}
	heads := g
	need := map[string]string{"class_probs": d.Outputs.ClassProbs, "features": d.Outputs.Features}
	if d.Outputs.AttributeProbs != "" {
		need["attribute_probs"] = d.Outputs.AttributeProbs
	}
	if p := d.Proposals; p != nil {
		if d.Outputs.Boxes != "" {
			bad("outputs.boxes: a split detector's boxes are its proposals; leave it out")
		}
		h, hok := m.Graphs[p.HeadsGraph]
		errs = append(errs, p.validate(d.Graph, g, h, hok)...)
		if !hok {
			return errs
		}
		heads = h
	} else {
		need["boxes"] = d.Outputs.Boxes
	}
	outs := heads.outputsByName()
	for role, name := range need {
		if _, ok := outs[name]; !ok {
			bad("outputs.%s %q is not an output of graph %s", role, name, d.HeadsGraphName())
		}
	}
	if (d.Outputs.AttributeProbs == "") != (d.Attributes == "") {
		bad("outputs.attribute_probs and attributes must be given together")
	}
	p := d.Preprocess
	if p.ChannelOrder != "BGR" && p.ChannelOrder != "RGB" {
		bad("preprocess.channel_order %q: want BGR or RGB", p.ChannelOrder)
	}
	if len(p.PixelMeans) != 3 || len(p.PixelStd) != 3 {
		bad("preprocess.pixel_means and pixel_std need 3 values each")
	}
	for _, v := range p.PixelStd {
		if v <= 0 {
			bad("preprocess.pixel_std values must be positive")
		}
	}
	if p.ShorterSide <= 0 || p.LongerSideMax < p.ShorterSide {
		bad("preprocess: want 0 < shorter_side (%d) <= longer_side_max (%d)", p.ShorterSide, p.LongerSideMax)
	}
	if p.MinInputSide < 0 || p.MinInputSide > p.ShorterSide {
		bad("preprocess.min_input_side %d: want 0 (any) to shorter_side (%d)", p.MinInputSide, p.ShorterSide)
	}
	if p.Resize != "bilinear" {
		bad("preprocess.resize %q: this build implements \"bilinear\"", p.Resize)
	}
	if !detector.ValidResizeRule(p.ResizeRule) {
		bad("preprocess.resize_rule %q: want %q (the default when absent) or %q",
			p.ResizeRule, detector.ResizeShorterSide, detector.ResizeDetectron2)
	}
	if d.BackgroundIndex < 0 || d.BackgroundIndex >= m.Model.LabelDim {
		bad("background_index %d outside [0, %d)", d.BackgroundIndex, m.Model.LabelDim)
	}
	if d.Labels == "" {
		bad("labels is empty")
	}
	s := d.Selection
	if !(s.NMSIoU > 0 && s.NMSIoU <= 1) || s.MinConfidence < 0 || s.MinConfidence > 1 {
		bad("selection: want 0 < nms_iou <= 1 and 0 <= min_confidence <= 1")
	}
	if !(s.MinBoxSize >= 0) || math.IsInf(float64(s.MinBoxSize), 0) {
		bad("selection: min_box_size %v, want a finite value >= 0", s.MinBoxSize)
	}
	if s.MinBoxes < 1 || s.MaxBoxes < s.MinBoxes {
		bad("selection: want 1 <= min_boxes (%d) <= max_boxes (%d)", s.MinBoxes, s.MaxBoxes)
	}
	return errs
}

// validate checks a split detector's proposal section against its two graphs.
func (p *ProposalsSpec) validate(backboneName string, backbone, heads Graph, haveHeads bool) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("detector.proposals."+format, a...)) }
	outs := backbone.outputsByName()
	for role, name := range map[string]string{"feature_map": p.FeatureMap, "objectness": p.Objectness, "anchor_deltas": p.AnchorDeltas} {
		if t, ok := outs[name]; !ok {
			bad("%s %q is not an output of graph %s", role, name, backboneName)
		} else if len(t.Shape) != 4 {
			bad("%s %q: want a [1, channels, height, width] output", role, name)
		}
	}
	if err := p.Spec().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("detector.proposals: %w", err))
	}
	var want []string
	switch {
	case (p.RoIs == "") == (p.RoIPool == nil):
		bad("rois and roi_pool: give exactly one (the heads graph pools, or Go pools for it)")
	case p.RoIPool != nil:
		r := p.RoIPool
		if r.OutputSize < 1 || !(r.SpatialScale > 0) || math.IsInf(float64(r.SpatialScale), 0) {
			bad("roi_pool: want output_size >= 1 and a finite spatial_scale > 0, got %d and %v", r.OutputSize, r.SpatialScale)
		}
		want = []string{r.Input}
	default:
		want = []string{p.FeatureMap, p.RoIs}
	}
	if !haveHeads {
		bad("heads_graph %q is not in graphs", p.HeadsGraph)
		return errs
	}
	var got []string
	for _, t := range heads.Inputs {
		got = append(got, t.Name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if want != nil && !slices.Equal(got, want) {
		bad("heads_graph %s takes %v; want exactly %v", p.HeadsGraph, got, want)
	}
	return errs
}

// outputsByName are the graph's declared outputs by name.
func (g Graph) outputsByName() map[string]Tensor {
	m := make(map[string]Tensor, len(g.Outputs))
	for _, o := range g.Outputs {
		m[o.Name] = o
	}
	return m
}

// specs converts a graph's declarations.
func (g Graph) specs() (in, out []ort.IOSpec, err error) {
	for _, t := range g.Inputs {
		s, err := t.Spec()
		if err != nil {
			return nil, nil, err
		}
		in = append(in, s)
	}
	for _, t := range g.Outputs {
		s, err := t.Spec()
		if err != nil {
			return nil, nil, err
		}
		out = append(out, s)
	}
	return in, out, nil
}
