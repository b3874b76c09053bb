package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/uniter-serve/uniter/detector"
	ort "github.com/uniter-serve/uniter/runtime"
	"github.com/uniter-serve/uniter/textproc"
)

// The encoder's I/O contract: the exporter (models/uniter/export.py) writes these names and
// the manifest declares them; Load refuses a bundle whose encoder differs. Every encoder
// returns pooled and hidden, and one output per head it carries (encoderOutputs).
var encoderInputs = []string{"input_ids", "text_mask", "img_feat", "img_loc", "img_mask"}

// Encoder outputs of the heads.
const (
	outITM   = "itm_logits"  // [batch, 2]
	outRank  = "rank_logits" // [batch, 1]
	outVQA   = "vqa_logits"  // [batch, answers]
	outVE    = "ve_logits"   // [batch, 3]
	outRE    = "re_logits"   // [batch, regions]
	outNLVR2 = "nlvr2_logits"
)

// encoderOutputs are the outputs an encoder with heads h must have.
func encoderOutputs(h HeadSet) []string {
	out := []string{"pooled", "hidden"}
	for name, has := range map[string]bool{outITM: h.ITM, outRank: h.Rank, outVQA: h.VQA, outVE: h.VE, outRE: h.RE} {
		if has {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Options are the serving limits applied on top of the manifest.
type Options struct {
	MaxRegions    int // regions per image
	MaxTexts      int // texts per Match call; 0: no limit
	MaxConcurrent int // graph runs at once; 0 means 1
	// BatchPairs > 1 coalesces concurrent callers' encoder runs (without attention) into
	// batches of at most this many pairs; 0 or 1 runs each caller's pairs alone.
	BatchPairs int
	// BatchWait is how long a coalesced batch that is not full waits for more callers before
	// it runs; 0 runs it as soon as a slot is free (callers queued meanwhile still join).
	BatchWait     time.Duration
	MaxTextLength int // 0: the manifest's text.max_length; otherwise at most that
	// VerifyChecksums compares each graph file with its manifest sha256 at load.
	VerifyChecksums bool
	Decode          detector.DecodeLimits // image bytes and pixels; zero fields take detector's defaults
	// ImageMemory bounds the bytes of pixels decoded and preprocessed at once, across requests
	// (detector.Gate); 0 means 512 MiB.
	ImageMemory int64
	CacheBytes  int64             // detector result cache bound; 0 disables caching
	Selection   SelectionOverride // region selection settings that replace the manifest's
	// DetectorOnCUDA runs the detector graph on the environment's CUDA provider; otherwise it
	// runs on the CPU whatever the provider. Under strict placement (the default) a detector
	// graph with nodes ONNX Runtime places on the CPU is refused at load (docs/gpu.md).
	DetectorOnCUDA bool
}

// SelectionOverride replaces the manifest's region selection settings where set.
type SelectionOverride struct {
	NMSIoU, MinConfidence, MinBoxSize *float32
	MinBoxes, MaxBoxes                *int
}

// Bundle is a loaded model: manifest, tokenizer, labels and graph sessions. It is safe for
// concurrent use; Close it once every call has returned.
type Bundle struct {
	Manifest *Manifest
	Dir      string

	opts          Options
	tokenizer     *textproc.Tokenizer
	labels        []string
	encoder       *ort.Session
	attention     *ort.Session // nil when the bundle has no attention graph
	mlm           *ort.Session // nil without an MLM head
	mrc           *ort.Session // nil without an MRC head
	nlvr2         *ort.Session // nil unless the task is NLVR2
	batcher       *batcher     // coalesces concurrent encoder runs; nil when batching is off
	otInGraph     bool         // the encoder graphs compute the word-region transport (transport.go)
	taskLabels    []string     // the task head's labels (VQA answers, entailment classes); nil for other tasks
	detectorGraph *ort.Session // nil when the bundle has no detector
	detectorHeads *ort.Session // a split detector's heads graph (manifest detector.proposals); else nil
	proposals     detector.ProposalSpec
	detector      *detector.Detector // runs detectorGraph; nil when the bundle has no detector
	lender        *Bundle            // whose detector reads images when detector is nil (BorrowDetector); may be nil
	attrs         []string           // detector attribute names; nil without an attribute head
	sched         *Scheduler
	observer      Observer // nil: none; set by Observe before use
	cache         *resultCache[*detector.Detection]
}

// Load reads the bundle in dir and builds its sessions in env. On error nothing stays open.
func Load(env *ort.Environment, dir string, opts Options) (b *Bundle, err error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if opts.MaxRegions <= 0 {
		return nil, fmt.Errorf("max regions must be positive, got %d", opts.MaxRegions)
	}
	maxLen := m.Text.MaxLength
	if opts.MaxTextLength > 0 {
		maxLen = min(opts.MaxTextLength, maxLen)
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 1
	}
	if opts.ImageMemory <= 0 {
		opts.ImageMemory = 512 << 20
	}
	b = &Bundle{Manifest: m, Dir: dir, opts: opts, sched: NewScheduler(opts.MaxConcurrent),
		cache: newResultCache(opts.CacheBytes, detectionSize)}
	// Close what was opened if anything below fails. The deferred function uses its own
	// reference: a `return nil, err` has already set the named result b to nil.
	partial := b
	defer func() {
		if err != nil {
			err = errors.Join(err, partial.Close())
			b = nil
		}
	}()
	sp := m.Text.SpecialTokens
	b.tokenizer, err = textproc.New(textproc.Config{
		VocabPath: filepath.Join(dir, m.Text.Vocab), Lowercase: m.Text.Lowercase, MaxLength: maxLen,
		CLS: sp["cls"], SEP: sp["sep"], PAD: sp["pad"], UNK: sp["unk"], Mask: sp["mask"],
		ClosedVocabulary: m.Text.ClosedVocabulary,
	})
	if err != nil {
		return nil, fmt.Errorf("bundle %s: tokenizer: %w", dir, err)
	}
	if got := b.tokenizer.VocabSize(); got != m.Model.VocabSize {
		return nil, fmt.Errorf("bundle %s: vocab has %d tokens, manifest says %d", dir, got, m.Model.VocabSize)
	}
	if m.Regions.Labels != "" {
		if b.labels, err = readLines(filepath.Join(dir, m.Regions.Labels)); err != nil {
			return nil, fmt.Errorf("bundle %s: region labels: %w", dir, err)
		}
		if len(b.labels) != m.Model.LabelDim {
			return nil, fmt.Errorf("bundle %s: %d region labels, manifest says label_dim %d", dir, len(b.labels), m.Model.LabelDim)
		}
	}
	open := func(role string) (*ort.Session, error) {
		g, ok := m.Graphs[role]
		if !ok {
			return nil, nil
		}
		path := filepath.Join(dir, g.File)
		if opts.VerifyChecksums && g.SHA256 != "" {
			if err := checkSHA256(path, g.SHA256); err != nil {
				return nil, fmt.Errorf("bundle %s: graph %s: %w", dir, role, err)
			}
		}
		in, out, err := g.specs()
		if err != nil {
			return nil, err
		}
		var tuning *ort.SessionTuning
		if d := m.Detector; d != nil && (role == d.Graph || role == d.HeadsGraphName()) {
			// EXHAUSTIVE would re-benchmark cuDNN convolutions for every new image shape. On the
			// CUDA provider the detector is held to strict placement like every graph: ONNX
			// Runtime 1.29's plugin provider crashes at the first run of a graph with nodes placed
			// on the CPU, so such a graph is refused at load, its CPU nodes named, instead.
			tuning = &ort.SessionTuning{CUDAOptions: map[string]string{"cudnn_conv_algo_search": "HEURISTIC"},
				OnCPU: !opts.DetectorOnCUDA}
		}
		return env.NewSession(role, path, in, out, tuning)
	}
	if err := checkEncoderContract(m.Graphs[GraphEncoder], m.Heads); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if b.encoder, err = open(GraphEncoder); err != nil {
		return nil, err
	}
	if b.attention, err = open(GraphEncoderAttention); err != nil {
		return nil, err
	}
	if b.otInGraph, err = otFromGraph(m, env, b.encoder); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if b.mlm, err = open(GraphMLMHead); err != nil {
		return nil, err
	}
	if b.mrc, err = open(GraphMRCHead); err != nil {
		return nil, err
	}
	if b.nlvr2, err = open(GraphNLVR2); err != nil {
		return nil, err
	}
	if t := m.Task; t != nil && t.Labels != "" {
		if b.taskLabels, err = readLines(filepath.Join(dir, t.Labels)); err != nil {
			return nil, fmt.Errorf("bundle %s: task labels: %w", dir, err)
		}
		if err := checkTaskLabels(m, len(b.taskLabels)); err != nil {
			return nil, fmt.Errorf("bundle %s: %w", dir, err)
		}
	}
	if opts.BatchPairs > 1 {
		b.batcher = newBatcher(b, opts.BatchPairs, opts.BatchWait)
	}
	if d := m.Detector; d != nil {
		if b.detectorGraph, err = open(d.Graph); err != nil {
			if opts.DetectorOnCUDA && d.Proposals == nil {
				err = fmt.Errorf("%w (a detector that proposes inside its graph does not run on the CUDA provider: "+
					"split it with python3 -m uniter.detector_split bundle, docs/detector-contract.md)", err)
			}
			return nil, err
		}
		if p := d.Proposals; p != nil {
			if b.detectorHeads, err = open(p.HeadsGraph); err != nil {
				return nil, err
			}
			b.proposals = p.Spec()
		}
		if err := b.SelectionSpec().Validate(m.Model.LabelDim); err != nil {
			return nil, fmt.Errorf("bundle %s: %w", dir, err)
		}
		if d.Attributes != "" {
			if b.attrs, err = readLines(filepath.Join(dir, d.Attributes)); err != nil {
				return nil, fmt.Errorf("bundle %s: attribute labels: %w", dir, err)
			}
		}
		b.detector = b.newDetector()
	}
	return b, nil
}

func checkEncoderContract(g Graph, h HeadSet) error {
	var in, out []string
	for _, t := range g.Inputs {
		in = append(in, t.Name)
	}
	for _, t := range g.Outputs {
		out = append(out, t.Name)
	}
	if !slices.Equal(in, encoderInputs) {
		return fmt.Errorf("encoder inputs %v, this build needs %v", in, encoderInputs)
	}
	for _, name := range encoderOutputs(h) {
		if !slices.Contains(out, name) {
			return fmt.Errorf("encoder outputs %v lack %q", out, name)
		}
	}
	return nil
}

// checkTaskLabels compares the label count with the width the encoder declares for the
// task's output (when the dimension is a number).
func checkTaskLabels(m *Manifest, n int) error {
	out := map[string]string{TaskVQA: outVQA, TaskVE: outVE}[m.TaskName()]
	if n == 0 {
		return fmt.Errorf("task labels file %s is empty", m.Task.Labels)
	}
	for _, o := range m.Graphs[GraphEncoder].Outputs {
		if o.Name != out || len(o.Shape) != 2 {
			continue
		}
		var width int
		if json.Unmarshal(o.Shape[1], &width) == nil && width != n {
			return fmt.Errorf("%d task labels in %s, the encoder's %s has %d", n, m.Task.Labels, out, width)
		}
	}
	return nil
}

func checkSHA256(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s has sha256 %s, manifest says %s", path, got, want)
	}
	return nil
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err()
}

// Close destroys the bundle's sessions. It is safe on a partly loaded bundle.
func (b *Bundle) Close() error {
	if b.batcher != nil {
		b.batcher.close()
	}
	var errs []error
	for _, s := range []*ort.Session{b.encoder, b.attention, b.mlm, b.mrc, b.nlvr2, b.detectorGraph, b.detectorHeads} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}

// Tokenizer is the bundle's tokenizer.
func (b *Bundle) Tokenizer() *textproc.Tokenizer { return b.tokenizer }

// Options are the options the bundle was loaded with, defaults filled in: another bundle loaded
// with them runs under the same limits.
func (b *Bundle) Options() Options { return b.opts }

// RegionLabels are the MRC head's class names, background included.
func (b *Bundle) RegionLabels() []string { return b.labels }

// DetectorProvider is the execution provider the detector runs on ("" without a detector).
func (b *Bundle) DetectorProvider() string {
	if b.detectorGraph == nil {
		return ""
	}
	return b.detectorGraph.Provider()
}

// MaxRegions is the serving limit on regions per image.
func (b *Bundle) MaxRegions() int { return b.opts.MaxRegions }

// Observe reports every graph run to o from now on; call it before the bundle is used.
func (b *Bundle) Observe(o Observer) { b.observer = o }

// GraphWaiting is the number of graph runs waiting for a slot now.
func (b *Bundle) GraphWaiting() int { return b.sched.Waiting() }

// MaxConcurrent is the most graph runs at once.
func (b *Bundle) MaxConcurrent() int { return b.sched.Running() }

// Warmup runs one small batch through the encoder so that the first request does not pay for
// ONNX Runtime's lazy initialisation.
func (b *Bundle) Warmup(ctx context.Context) error {
	dim := b.Manifest.Model.FeatureDim
	r := detector.Regions{Width: 2, Height: 2, Boxes: []detector.Box{{0, 0, 1, 1}}, Features: [][]float32{make([]float32, dim)}}
	var t Timing
	if _, _, err := b.encodeOne(ctx, Input{Regions: &r}, "text", "warm up", &t); err != nil {
		return err
	}
	if b.nlvr2 != nil {
		if _, err := b.NLVR2(ctx, [2]Input{{Regions: &r}, {Regions: &r}}, "warm up"); err != nil {
			return err
		}
	}
	if b.detector == nil {
		return nil
	}
	// A small image through the detector, bypassing the cache.
	_, err := b.detector.Detect(ctx, warmupPNG())
	return err
}

// RunGraph runs one of the bundle's graphs on raw named tensors and returns its outputs by
// name. It is for parity checks and debugging; the pipelines do not use it.
func (b *Bundle) RunGraph(ctx context.Context, role string, inputs map[string]ort.Tensor) (map[string]ort.Tensor, error) {
	sessions := map[string]*ort.Session{GraphEncoder: b.encoder, GraphEncoderAttention: b.attention, GraphMLMHead: b.mlm, GraphMRCHead: b.mrc}
	if d := b.Manifest.Detector; d != nil {
		sessions[d.Graph] = b.detectorGraph
		if d.Proposals != nil {
			sessions[d.Proposals.HeadsGraph] = b.detectorHeads
		}
	}
	s := sessions[role]
	if s == nil {
		return nil, inputErr(CodeUnsupported, "bundle %s has no graph %q", b.Manifest.Name, role)
	}
	in := make([]ort.Tensor, len(s.Inputs()))
	for i, spec := range s.Inputs() {
		t, ok := inputs[spec.Name]
		if !ok {
			return nil, inputErr(CodeUnsupported, "graph %s needs input %q", role, spec.Name)
		}
		in[i] = t
	}
	batch := 1
	if len(in) > 0 && len(in[0].Shape) > 0 {
		batch = int(in[0].Shape[0])
	}
	out, err := b.runGraph(ctx, role, s, in, batch)
	if err != nil {
		return nil, err
	}
	return outputsByName(s, out), nil
}

// warmupPNG is a 64×48 grey PNG.
func warmupPNG() []byte {
	img := image.NewGray(image.Rect(0, 0, 64, 48))
	for i := range img.Pix {
		img.Pix[i] = uint8(i % 251)
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}
