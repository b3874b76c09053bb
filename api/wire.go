package api

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"time"

	"encoding/json"
	"fmt"
	"slices"

	"github.com/x448/float16"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/pipeline"
	"github.com/uniter-serve/uniter/textproc"
)

// RegionsJSON is the wire form R of an image's regions: boxes in pixels of the original image
// and one feature row per box. The service computes the 7-d locations itself.
type RegionsJSON struct {
	Width    int         `json:"width"`
	Height   int         `json:"height"`
	Boxes    [][]float32 `json:"boxes"`
	Features [][]float32 `json:"features"`
}

// toRegions checks the shape of the wire form (four numbers a box); the detector checks the rest.
func (r *RegionsJSON) toRegions() (detector.Regions, error) {
	if r == nil {
		return detector.Regions{}, badRequest("missing_regions", "regions: field is required")
	}
	boxes := make([]detector.Box, len(r.Boxes))
	for i, b := range r.Boxes {
		if len(b) != 4 {
			return detector.Regions{}, badRequest("invalid_regions", "regions.boxes[%d]: %d numbers, want [x1, y1, x2, y2]", i, len(b))
		}
		boxes[i] = detector.Box{b[0], b[1], b[2], b[3]}
	}
	return detector.Regions{Width: r.Width, Height: r.Height, Boxes: boxes, Features: r.Features}, nil
}

// MatchRequest is the body of POST /v1/match.
type MatchRequest struct {
	Image   *ImageJSON   `json:"image,omitempty"`
	Regions *RegionsJSON `json:"regions,omitempty"`
	Texts   []string     `json:"texts"`
	// Model names the served model that answers (GET /v1/models); absent: the default.
	Model string `json:"model,omitempty"`
}

// MatchResult is one text's score.
type MatchResult struct {
	Text       string  `json:"text"`
	Score      float32 `json:"score"`
	Logit      float32 `json:"logit"`
	Head       string  `json:"head"` // the head that scored: rank or itm
	OTDistance float64 `json:"ot_distance"`
	Tokens     int     `json:"tokens"`
	Truncated  bool    `json:"truncated"`
	// UnknownWords are the text's words outside the model's vocabulary; absent when none.
	UnknownWords []UnknownWord `json:"unknown_words,omitempty"`
}

// UnknownWord is a word of a request's text that the model's vocabulary does not know: it
// became [UNK], or, for a bundle whose vocabulary is closed (GET /v1/models
// vocabulary.closed), it could only be spelt in word pieces. Start and End are code point
// offsets into the text, [start, end).
type UnknownWord struct {
	Word  string `json:"word"`
	Start int    `json:"start"`
	End   int    `json:"end"`
}

// wireUnknownWords converts the pipeline's unknown words; nil (absent) when none.
func wireUnknownWords(ws []textproc.UnknownWord) []UnknownWord {
	if len(ws) == 0 {
		return nil
	}
	out := make([]UnknownWord, len(ws))
	for i, w := range ws {
		out[i] = UnknownWord{Word: w.Word, Start: w.Start, End: w.End}
	}
	return out
}

// MatchResponse answers POST /v1/match: one result per text, in request order.
type MatchResponse struct {
	Results []MatchResult `json:"results"`
	Image   *ImageInfo    `json:"image,omitempty"`
	Model   string        `json:"model"`
	Timings Timings       `json:"timings_ms"`
}

// ImageInfo describes an uploaded image and its detection.
type ImageInfo struct {
	SHA256    string `json:"sha256"`
	Format    string `json:"format"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	Regions   int    `json:"regions"`
	Proposals int    `json:"proposals"`
	CacheHit  bool   `json:"cache_hit"`
}

// Timings split a request's model work, in milliseconds: the whole request, then its steps.
// The detector steps are zero for regions input and on a cache hit.
type Timings struct {
	Total      float64 `json:"total"`
	Decode     float64 `json:"decode"`
	Preprocess float64 `json:"preprocess"`
	Detector   float64 `json:"detector"`
	Selection  float64 `json:"selection"`
	Encoder    float64 `json:"encoder"`
	OT         float64 `json:"ot"`
}

func newTimings(t pipeline.Timing) Timings {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Timings{Decode: ms(t.Decode), Preprocess: ms(t.Preprocess), Detector: ms(t.Detector),
		Selection: ms(t.Selection), Encoder: ms(t.Encoder), OT: ms(t.OT)}
}

// TotalTiming is the time a request took, in milliseconds, for answers without steps.
type TotalTiming struct {
	Total float64 `json:"total"`
}

func newImageInfo(d *detector.Detection, hit bool) *ImageInfo {
	if d == nil {
		return nil
	}
	return &ImageInfo{SHA256: d.SHA256, Format: d.Format, Width: d.Width, Height: d.Height,
		Regions: len(d.Regions), Proposals: d.Proposals, CacheHit: hit}
}

// AlignRequest is the body of POST /v1/align.
type AlignRequest struct {
	Image      *ImageJSON   `json:"image,omitempty"`
	Regions    *RegionsJSON `json:"regions,omitempty"`
	Text       string       `json:"text"`
	TopRegions int          `json:"top_regions,omitempty"`
	Attention  bool         `json:"attention,omitempty"` // also return every head's attention map and pattern
	// Model names the served model that answers (GET /v1/models); absent: the default.
	Model string `json:"model,omitempty"`
}

// Token is one WordPiece token with its span in the request text (Unicode code points,
// [start, end)) and the index of the word it belongs to (-1 for [CLS] and [SEP]).
type Token struct {
	Text    string `json:"text"`
	ID      int64  `json:"id"`
	Start   int    `json:"start"`
	End     int    `json:"end"`
	Word    int    `json:"word"`
	Special bool   `json:"special"`
}

// Region is one region as the model saw it. Detected regions also carry the detector's
// confidence, top class labels and attributes.
type Region struct {
	Index      int         `json:"index"`
	Box        [4]float32  `json:"box"`
	Location   [7]float32  `json:"location"`
	Confidence *float32    `json:"confidence,omitempty"`
	Labels     []LabelProb `json:"labels,omitempty"`
	Attributes []LabelProb `json:"attributes,omitempty"`
	// ClassesGivenText: the MRC head's top classes for the region given the request's text
	// (POST /v1/regions with a text).
	ClassesGivenText []LabelProb `json:"classes_given_text,omitempty"`
}

// LabelProb is a class or attribute name with its probability.
type LabelProb struct {
	Label       string  `json:"label"`
	Probability float32 `json:"probability"`
}

// RegionsRequest is the JSON body of POST /v1/regions.
type RegionsRequest struct {
	Image    *ImageJSON `json:"image"`
	Features bool       `json:"features,omitempty"`
	// FeatureDType is the features' encoding: FeaturesFloat16 (absent) or FeaturesFloat32.
	FeatureDType string `json:"feature_dtype,omitempty"`
	TopLabels    int    `json:"top_labels,omitempty"`
	// Text, when set, adds each region's class as the MRC head predicts it given this text.
	Text string `json:"text,omitempty"`
	// Model names the served model that answers (GET /v1/models); absent: the default.
	Model string `json:"model,omitempty"`
}

// RegionsResponse answers POST /v1/regions.
type RegionsResponse struct {
	Image    ImageInfo     `json:"image"`
	Regions  []Region      `json:"regions"`
	Features *FeatureBlock `json:"features,omitempty"`
	Text     string        `json:"text,omitempty"` // the part of the request's text the model read, when classes_given_text are present
	Model    string        `json:"model"`
	Timings  Timings       `json:"timings_ms"`
}

// FeatureBlock is the regions' features as base64 of little-endian IEEE floats (DType
// FeaturesFloat16 or FeaturesFloat32), row-major.
type FeatureBlock struct {
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
	Data  string `json:"data"`
}

// The encodings of a FeatureBlock (RegionsRequest.FeatureDType).
const (
	// FeaturesFloat16 is the default: half the bytes, each value rounded to the nearest float16.
	FeaturesFloat16 = "float16"
	// FeaturesFloat32 is exactly what the encoder reads: regions sent back with these features
	// score as the image does.
	FeaturesFloat32 = "float32"
)

// resolveFeatureDType is the encoding of the features an answer carries: "" for none.
func resolveFeatureDType(features bool, dtype string) (string, error) {
	switch {
	case dtype != "" && dtype != FeaturesFloat16 && dtype != FeaturesFloat32:
		return "", badRequest("invalid_feature_dtype", "feature_dtype: %s, want %q or %q", quoteInput(dtype), FeaturesFloat16, FeaturesFloat32)
	case !features && dtype != "":
		return "", badRequest("invalid_feature_dtype", "feature_dtype: %s without features: true", quoteInput(dtype))
	case !features:
		return "", nil
	case dtype == "":
		return FeaturesFloat16, nil
	}
	return dtype, nil
}

// newFeatureBlock encodes n rows of dim features (row-major) as dtype.
func newFeatureBlock(values []float32, n, dim int, dtype string) *FeatureBlock {
	var buf []byte
	if dtype == FeaturesFloat32 {
		buf = make([]byte, 4*len(values))
		for i, v := range values {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
	} else {
		dtype = FeaturesFloat16
		buf = make([]byte, 2*len(values))
		for i, v := range values {
			binary.LittleEndian.PutUint16(buf[2*i:], float16.Fromfloat32(v).Bits())
		}
	}
	return &FeatureBlock{DType: dtype, Shape: []int{n, dim}, Data: base64.StdEncoding.EncodeToString(buf)}
}

// Rows decodes the block into one row of features per region.
func (f *FeatureBlock) Rows() ([][]float32, error) {
	if len(f.Shape) != 2 || f.Shape[0] < 0 || f.Shape[1] < 0 {
		return nil, fmt.Errorf("features: shape %v, want [regions, feature_dim]", f.Shape)
	}
	raw, err := base64.StdEncoding.DecodeString(f.Data)
	if err != nil {
		return nil, fmt.Errorf("features: data is not base64: %w", err)
	}
	size := map[string]int{FeaturesFloat16: 2, FeaturesFloat32: 4}[f.DType]
	n, dim := f.Shape[0], f.Shape[1]
	switch {
	case size == 0:
		return nil, fmt.Errorf("features: dtype %q, want %q or %q", f.DType, FeaturesFloat16, FeaturesFloat32)
	case len(raw) != n*dim*size:
		return nil, fmt.Errorf("features: %d bytes for shape %v of %s", len(raw), f.Shape, f.DType)
	}
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = make([]float32, dim)
		for j := range rows[i] {
			off := (i*dim + j) * size
			if size == 4 {
				rows[i][j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[off:]))
			} else {
				rows[i][j] = float16.Frombits(binary.LittleEndian.Uint16(raw[off:])).Float32()
			}
		}
	}
	return rows, nil
}

// RegionShare is one region's share of a word's transport mass.
type RegionShare struct {
	Region int     `json:"region"`
	Share  float64 `json:"share"`
}

// WordRegions lists a word's best-aligned regions.
type WordRegions struct {
	Word    int           `json:"word"`
	Text    string        `json:"text"`
	Start   int           `json:"start"`
	End     int           `json:"end"`
	Regions []RegionShare `json:"regions"`
}

// AlignResponse answers POST /v1/align.
type AlignResponse struct {
	Text         string         `json:"text"`
	Tokens       []Token        `json:"tokens"`
	Truncated    bool           `json:"truncated"`
	UnknownWords []UnknownWord  `json:"unknown_words,omitempty"` // the text's words outside the vocabulary
	Regions      []Region       `json:"regions"`
	Plan         [][]float64    `json:"plan"`
	WordRegions  []WordRegions  `json:"word_regions"`
	OTDistance   float64        `json:"ot_distance"`
	Score        float32        `json:"score"`
	Logit        float32        `json:"logit"`
	Head         string         `json:"head,omitempty"`      // the head of score and logit; "" (both 0) without itm or rank
	Attention    *AttentionJSON `json:"attention,omitempty"` // with "attention": true
	Image        *ImageInfo     `json:"image,omitempty"`
	Model        string         `json:"model"`
	Timings      Timings        `json:"timings_ms"`
}

// ModelInfo describes a loaded bundle in GET /v1/pipeline.
type ModelInfo struct {
	Name             string          `json:"name"`
	Description      string          `json:"description"`
	Provider         string          `json:"provider"`
	ProviderFallback string          `json:"provider_fallback,omitempty"`
	RandomWeights    bool            `json:"random_weights"`
	FeatureDim       int             `json:"feature_dim"`
	Hidden           int             `json:"hidden"`
	Layers           int             `json:"layers"`
	AttentionHeads   int             `json:"attention_heads"`
	VocabSize        int             `json:"vocab_size"`
	LabelDim         int             `json:"label_dim"`
	MaxTextLength    int             `json:"max_text_length"`
	MaxRegions       int             `json:"max_regions"`
	Lowercase        bool            `json:"lowercase"`
	Vocabulary       VocabularyInfo  `json:"vocabulary"`
	Task             TaskInfo        `json:"task"`
	Precision        string          `json:"precision"` // of the encoder graphs: fp32, int8, fp32-fused or fp16
	Transport        string          `json:"transport"` // where the word-region transport runs: graph or go
	Heads            map[string]bool `json:"heads"`
	Graphs           []string        `json:"graphs"`
	Provenance       map[string]any  `json:"provenance"`
	ONNXRuntime      string          `json:"onnxruntime_version"`
	Detector         *DetectorInfo   `json:"detector,omitempty"`
	DetectorCache    *CacheInfo      `json:"detector_cache,omitempty"`
}

// VocabularyInfo describes the bundle's text vocabulary: which texts the model can read.
type VocabularyInfo struct {
	Size  int  `json:"size"`  // tokens, special ones included
	Cased bool `json:"cased"` // false: texts are lower-cased and accents stripped
	// Closed: a closed domain vocabulary, each word the model knows one token; a word spelt in
	// word pieces is reported as unknown, as is one that becomes [UNK] (unknown_words).
	Closed bool   `json:"closed"`
	Domain string `json:"domain,omitempty"` // what texts it was made for, when the bundle says
}

// TaskInfo is what a bundle's checkpoint was fine-tuned for.
type TaskInfo struct {
	Name   string `json:"name"`             // pretrain, retrieval, vqa, ve, nlvr2, re
	Class  string `json:"class"`            // the official model class
	Labels int    `json:"labels,omitempty"` // VQA answers, entailment classes
	Layout string `json:"layout,omitempty"` // NLVR2: paired, triplet, paired_attn
}

// DetectorInfo summarises the bundle's detector: what it is and knows, how images are
// resized and regions selected.
type DetectorInfo struct {
	Description   string  `json:"description,omitempty"` // the manifest's, when it has one
	Domain        string  `json:"domain,omitempty"`      // the images it knows, when the manifest says
	Provider      string  `json:"provider"`              // the CPU unless ort.detector_on_cuda
	Classes       int     `json:"classes"`               // background included
	Attributes    int     `json:"attributes"`            // "no attribute" included; 0 without an attribute head
	ShorterSide   int     `json:"shorter_side"`
	LongerSideMax int     `json:"longer_side_max"`
	ResizeRule    string  `json:"resize_rule"` // shorter_side or detectron2 (docs/detector-contract.md)
	NMSIoU        float32 `json:"nms_iou"`
	MinConfidence float32 `json:"min_confidence"`
	MinBoxes      int     `json:"min_boxes"`
	MaxBoxes      int     `json:"max_boxes"`
	MinBoxSize    float32 `json:"min_box_size"` // original-image pixels; 0 keeps every proposal
}

// CacheInfo is the detector result cache's counters.
type CacheInfo struct {
	Hits     int64 `json:"hits"`
	Misses   int64 `json:"misses"`
	Entries  int   `json:"entries"`
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"max_bytes"`
}

// ModelsResponse answers GET /v1/pipeline.
type ModelsResponse struct {
	Models []ModelInfo `json:"models"`
}

// ErrorBody is every error response: {"error": {"code": ..., "message": ...}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail holds a stable code and a message safe to show to clients.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// NewMatchResponse converts pipeline results to the wire form (Timings.Total left to the caller).
func NewMatchResponse(out *pipeline.MatchOutput, model string) MatchResponse {
	resp := MatchResponse{Results: make([]MatchResult, len(out.Results)), Model: model,
		Image: newImageInfo(out.Image, out.Timing.CacheHit), Timings: newTimings(out.Timing)}
	for i, r := range out.Results {
		resp.Results[i] = MatchResult{Text: r.Text, Score: r.Score, Logit: r.Logit, Head: r.Head, OTDistance: r.OTDistance,
			Tokens: r.Tokens, Truncated: r.Truncated, UnknownWords: wireUnknownWords(r.UnknownWords)}
	}
	return resp
}

// NewAlignResponse converts an alignment to the wire form (Timings.Total left to the caller).
func NewAlignResponse(a *pipeline.Alignment, labels Labels, model string) AlignResponse {
	resp := AlignResponse{Text: a.Text, Truncated: a.Truncated, UnknownWords: wireUnknownWords(a.UnknownWords), Plan: a.Plan, OTDistance: a.OTDistance,
		Score: a.Score, Logit: a.Logit, Head: a.MatchHead, Model: model, Image: newImageInfo(a.Image, a.Timing.CacheHit),
		Timings: newTimings(a.Timing)}
	resp.Tokens = wireTokens(a.Tokens)
	if a.Attention != nil {
		resp.Attention = newAttentionJSON(a.Attention)
		resp.Attention.CrossAttention = a.CrossAttention
		resp.Attention.WordRegions = wireWordRegions(a.Words, a.AttentionWordRegions)
	}
	if a.Image != nil {
		resp.Regions = labels.regions(a.Image, 3)
	} else {
		for i, b := range a.Regions.Boxes {
			resp.Regions = append(resp.Regions, Region{Index: i, Box: b, Location: a.Regions.Locations[i]})
		}
	}
	resp.WordRegions = wireWordRegions(a.Words, a.WordRegions)
	return resp
}

// wireWordRegions names each aligned word by its text and offsets.
func wireWordRegions(words []textproc.Word, aligned []heads.WordAlignment) []WordRegions {
	out := make([]WordRegions, 0, len(aligned)) // [] rather than null when no word aligns
	for _, w := range aligned {
		word := words[w.Word]
		wr := WordRegions{Word: w.Word, Text: word.Text, Start: word.Start, End: word.End, Regions: []RegionShare{}}
		for _, r := range w.Regions {
			wr.Regions = append(wr.Regions, RegionShare{Region: r.Region, Share: r.Share})
		}
		out = append(out, wr)
	}
	return out
}

// Labels are the detector's class and attribute names.
type Labels struct {
	Classes, Attributes []string
	Background          int
}

// regions lists detected regions with their top labels and attributes (background and
// "no attribute", index 0, excluded).
func (l Labels) regions(d *detector.Detection, top int) []Region {
	out := make([]Region, len(d.Regions))
	for i, r := range d.Regions {
		conf := r.Confidence
		out[i] = Region{Index: i, Box: r.Box, Location: r.Location, Confidence: &conf,
			Labels: topLabels(d.ClassProbs[i*d.ClassDim:(i+1)*d.ClassDim], l.Classes, l.Background, top)}
		if d.AttrDim > 0 {
			out[i].Attributes = topLabels(d.AttrProbs[i*d.AttrDim:(i+1)*d.AttrDim], l.Attributes, 0, top)
		}
	}
	return out
}

func topLabels(probs []float32, names []string, skip, k int) []LabelProb {
	idx := make([]int, 0, len(probs))
	for i := range probs {
		if i != skip {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(probs[b], probs[a]) })
	out := make([]LabelProb, 0, k)
	for _, i := range idx[:min(k, len(idx))] {
		name := strconv.Itoa(i)
		if i < len(names) {
			name = names[i]
		}
		out = append(out, LabelProb{Label: name, Probability: probs[i]})
	}
	return out
}

// NewRegionsResponse converts a detection to the wire form; features is their encoding
// (FeaturesFloat16 or FeaturesFloat32), or "" for none.
func NewRegionsResponse(d *detector.Detection, hit bool, labels Labels, topK int, features string, model string) RegionsResponse {
	resp := RegionsResponse{Image: *newImageInfo(d, hit), Regions: labels.regions(d, topK), Model: model}
	if !hit {
		resp.Timings = newTimings(pipeline.Timing{Timing: d.Timing})
	}
	if features != "" {
		p := d.Prepared
		resp.Features = newFeatureBlock(p.Features, p.Len(), p.Dim, features)
	}
	return resp
}

// RegionsInput turns an answer of POST /v1/regions that carries features back into the
// regions input R of the model endpoints: the same boxes (as detected, zero-width or
// zero-height ones included) and features. With FeaturesFloat32 features the encoder reads
// exactly what it reads for the image.
func (r *RegionsResponse) RegionsInput() (*RegionsJSON, error) {
	if r.Features == nil {
		return nil, errors.New("the regions answer has no features: ask for them with features: true")
	}
	rows, err := r.Features.Rows()
	if err != nil {
		return nil, err
	}
	if len(rows) != len(r.Regions) {
		return nil, fmt.Errorf("%d feature rows for %d regions", len(rows), len(r.Regions))
	}
	out := &RegionsJSON{Width: r.Image.Width, Height: r.Image.Height, Boxes: make([][]float32, len(r.Regions)), Features: rows}
	for i, reg := range r.Regions {
		out.Boxes[i] = reg.Box[:]
	}
	return out, nil
}

// ParseRegions reads the wire form R (as in a request body) from raw JSON, for the CLI.
func ParseRegions(raw []byte) (detector.Regions, error) {
	var r RegionsJSON
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return detector.Regions{}, fmt.Errorf("regions JSON: %w", err)
	}
	return r.toRegions()
}

// DescribeModel is a bundle's entry in GET /v1/models; provider is the execution provider
// actually in use and fallback says why it differs from the configured one, if it does.
func DescribeModel(b *pipeline.Bundle, provider, fallback, ortVersion string) ModelInfo {
	m := b.Manifest
	info := ModelInfo{
		Name: m.Name, Description: m.Description, Provider: provider, ProviderFallback: fallback,
		RandomWeights: m.RandomWeights, FeatureDim: m.Model.FeatureDim, Hidden: m.Model.HiddenSize,
		Layers: m.Model.NumHiddenLayers, AttentionHeads: m.Model.NumAttentionHeads, VocabSize: m.Model.VocabSize,
		LabelDim: m.Model.LabelDim, MaxTextLength: b.Tokenizer().MaxLength(), MaxRegions: b.MaxRegions(),
		Lowercase: m.Text.Lowercase, Provenance: m.Provenance, ONNXRuntime: ortVersion,
		Vocabulary: VocabularyInfo{Size: b.Tokenizer().VocabSize(), Cased: !m.Text.Lowercase,
			Closed: m.Text.ClosedVocabulary, Domain: m.Text.Domain},
		Heads: map[string]bool{"itm": m.Heads.ITM, "rank": m.Heads.Rank, "mlm": m.Heads.MLM, "mrc": m.Heads.MRC,
			"attention": m.Heads.Attention, "vqa": m.Heads.VQA, "ve": m.Heads.VE, "nlvr2": m.Heads.NLVR2, "re": m.Heads.RE},
		Task:      TaskInfo{Name: m.TaskName(), Class: "UniterForPretraining", Labels: len(b.TaskLabels())},
		Precision: m.PrecisionName(), Transport: "go",
	}
	if b.OTInGraph() {
		info.Transport = "graph"
	}
	if t := m.Task; t != nil {
		info.Task.Class, info.Task.Layout = t.Class, t.Layout
	}
	for g := range m.Graphs {
		info.Graphs = append(info.Graphs, g)
	}
	if d := m.Detector; d != nil {
		sel := b.SelectionSpec()
		info.Detector = &DetectorInfo{Description: d.Description, Domain: d.Domain,
			Provider: b.DetectorProvider(), Classes: m.Model.LabelDim, Attributes: len(b.AttributeLabels()),
			ShorterSide: d.Preprocess.ShorterSide, LongerSideMax: d.Preprocess.LongerSideMax, ResizeRule: b.PreprocessSpec().Rule(),
			NMSIoU: sel.NMSIoU, MinConfidence: sel.MinConfidence, MinBoxes: sel.MinBoxes, MaxBoxes: sel.MaxBoxes,
			MinBoxSize: b.MinBoxSize()}
	}
	slices.Sort(info.Graphs)
	return info
}

// LabelsFor reads the class and attribute names of the detector that reads a bundle's images
// (its own, or the one it borrows).
func LabelsFor(b *pipeline.Bundle) Labels {
	if d := b.DetectorBundle(); d != nil && d != b {
		b = d
	}
	l := Labels{Classes: b.RegionLabels(), Attributes: b.AttributeLabels()}
	if d := b.Manifest.Detector; d != nil {
		l.Background = d.BackgroundIndex
	} else {
		l.Background = b.Manifest.Regions.BackgroundIndex
	}
	return l
}

// addClassesGivenText sets each region's MRC classes given text (probs: regions × classes).
func (r *RegionsResponse) addClassesGivenText(out *pipeline.RegionClassesOutput, labels Labels, top int) {
	r.Text = out.Text
	probs := out.Probs
	C := len(probs) / max(len(r.Regions), 1)
	for i := range r.Regions {
		r.Regions[i].ClassesGivenText = topLabels(probs[i*C:(i+1)*C], labels.Classes, labels.Background, top)
	}
}

// FillMaskRequest is the body of POST /v1/fill-mask.
type FillMaskRequest struct {
	Image   *ImageJSON   `json:"image,omitempty"`
	Regions *RegionsJSON `json:"regions,omitempty"`
	Text    string       `json:"text"`            // with one or more [MASK] tokens
	TopK    int          `json:"top_k,omitempty"` // predictions per mask, 1–50; default 5
	// WithoutImage also predicts with the image blanked out (regions kept, features and
	// locations zero): the difference shows what the model reads from the image.
	WithoutImage bool `json:"without_image,omitempty"`
	// Model names the served model that answers (GET /v1/models); absent: the default.
	Model string `json:"model,omitempty"`
}

// TokenPrediction is one predicted token.
type TokenPrediction struct {
	Token       string  `json:"token"`
	ID          int64   `json:"id"`
	Probability float32 `json:"probability"`
}

// MaskPrediction is the prediction for one [MASK] of the text.
type MaskPrediction struct {
	Position                int               `json:"position"` // index in tokens
	Start                   int               `json:"start"`    // span of the [MASK] in the text (code points)
	End                     int               `json:"end"`
	Predictions             []TokenPrediction `json:"predictions"`
	PredictionsWithoutImage []TokenPrediction `json:"predictions_without_image,omitempty"`
}

// FillMaskResponse answers POST /v1/fill-mask.
type FillMaskResponse struct {
	Text         string           `json:"text"`
	Tokens       []Token          `json:"tokens"`
	Truncated    bool             `json:"truncated"`
	UnknownWords []UnknownWord    `json:"unknown_words,omitempty"` // the text's words outside the vocabulary
	Masks        []MaskPrediction `json:"masks"`
	Image        *ImageInfo       `json:"image,omitempty"`
	Model        string           `json:"model"`
	Timings      Timings          `json:"timings_ms"`
}

// NewFillMaskResponse converts FillMask's answer to the wire form (Timings.Total left to the caller).
func NewFillMaskResponse(o *pipeline.FillMaskOutput, model string) FillMaskResponse {
	resp := FillMaskResponse{Text: o.Text, Truncated: o.Truncated, UnknownWords: wireUnknownWords(o.UnknownWords), Model: model,
		Image: newImageInfo(o.Image, o.Timing.CacheHit), Timings: newTimings(o.Timing)}
	resp.Tokens = wireTokens(o.Tokens)
	conv := func(ps []pipeline.TokenProb) []TokenPrediction {
		var out []TokenPrediction
		for _, p := range ps {
			out = append(out, TokenPrediction{Token: p.Token, ID: p.ID, Probability: p.Probability})
		}
		return out
	}
	for _, m := range o.Masks {
		resp.Masks = append(resp.Masks, MaskPrediction{Position: m.Position, Start: m.Start, End: m.End,
			Predictions: conv(m.Top), PredictionsWithoutImage: conv(m.TopWithoutImage)})
	}
	return resp
}

// wireTokens converts tokens to the wire form.
func wireTokens(ts []textproc.Token) []Token {
	out := make([]Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, Token{Text: t.Text, ID: t.ID, Start: t.Start, End: t.End, Word: t.Word, Special: t.Special})
	}
	return out
}
