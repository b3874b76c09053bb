package ort

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	onnx "github.com/yalue/onnxruntime_go"
)

//go:embed probe.onnx
var probeGraph []byte

// DType is a tensor element type as written in bundle manifests.
type DType string

// Element types the project's graphs use.
const (
	Float32 DType = "float32"
	Int64   DType = "int64"
)

// IOSpec declares one graph input or output. Dims of -1 are dynamic.
type IOSpec struct {
	Name  string
	DType DType
	Shape []int64
}

// Tensor is a Go-owned tensor: exactly one of F32 and I64 holds len = product(Shape) values.
type Tensor struct {
	Shape []int64
	F32   []float32
	I64   []int64
}

// NumElements is the product of the shape.
func (t Tensor) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Session runs one graph. It is safe for concurrent use: the underlying
// DynamicAdvancedSession allows concurrent Run calls.
type Session struct {
	env      *Environment
	name     string
	provider string // the execution provider this graph runs on
	inputs   []IOSpec
	outputs  []IOSpec
	s        *onnx.DynamicAdvancedSession

	// runs is held for reading by every Run and for writing by Close, so that the native
	// session is destroyed only after every run has returned.
	runs   sync.RWMutex
	closed bool // guarded by runs
}

// ErrClosed is Run's error on a closed session.
var ErrClosed = errors.New("the session is closed")

// NewSession loads the graph at path and checks that its inputs and outputs are exactly the
// declared ones (names, order-insensitive; element types; ranks; fixed dims), so that a wrong
// manifest fails at load and not at the first request.
func (e *Environment) NewSession(name, path string, inputs, outputs []IOSpec, tuning *SessionTuning) (*Session, error) {
	e.mu.Lock()
	closed, provider, profileDir := e.closed, e.provider, e.profileDir
	e.mu.Unlock()
	if closed {
		return nil, errors.New("onnx runtime environment is closed")
	}
	gotIn, gotOut, err := onnx.GetInputOutputInfo(path)
	if err != nil {
		return nil, fmt.Errorf("graph %s (%s): %w", name, path, err)
	}
	if err := checkIO("input", inputs, gotIn); err != nil {
		return nil, fmt.Errorf("graph %s (%s): %w", name, path, err)
	}
	if err := checkIO("output", outputs, gotOut); err != nil {
		return nil, fmt.Errorf("graph %s (%s): %w", name, path, err)
	}
	if tuning != nil && tuning.OnCPU && provider != ProviderCPU {
		e.log.Info("graph runs on the CPU", "graph", name, "environment_provider", provider)
		provider = ProviderCPU
	}
	opts, err := e.sessionOptions(provider, tuning)
	if err != nil {
		return nil, fmt.Errorf("graph %s: session options for %s: %w", name, provider, err)
	}
	defer opts.Destroy()
	if profileDir != "" {
		if err := os.MkdirAll(profileDir, 0o755); err != nil {
			return nil, fmt.Errorf("graph %s: profile folder: %w", name, err)
		}
		if err := opts.EnableProfiling(filepath.Join(profileDir, fmt.Sprintf("%s-%d", name, e.profiles.Add(1)))); err != nil {
			return nil, fmt.Errorf("graph %s: profiling: %w", name, err)
		}
	}
	s, err := onnx.NewDynamicAdvancedSession(path, names(inputs), names(outputs), opts)
	if err != nil {
		hint := ""
		if strings.Contains(err.Error(), "fallback to CPU EP has been explicitly disabled") {
			hint = " (ONNX Runtime places some nodes of this graph on the CPU; set ort.cuda_strict_placement to false to allow that)"
		}
		return nil, fmt.Errorf("graph %s (%s) on %s: %w%s", name, path, provider, err, hint)
	}
	if provider == ProviderCUDA && !e.cfg.CUDAStrictPlacement {
		e.log.Info("CUDA session: ONNX Runtime may run some nodes of this graph on the CPU", "graph", name, "why", "ort.cuda_strict_placement is false")
	}
	sess := &Session{env: e, name: name, provider: provider, inputs: inputs, outputs: outputs, s: s}
	e.mu.Lock()
	e.sessions[sess] = struct{}{}
	e.mu.Unlock()
	return sess, nil
}

// Provider is the execution provider this graph runs on: the environment's, or the CPU for a
// graph kept off the GPU (SessionTuning.OnCPU).
func (s *Session) Provider() string { return s.provider }

func names(specs []IOSpec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

func dtypeOf(t onnx.TensorElementDataType) DType {
	switch t {
	case onnx.TensorElementDataTypeFloat:
		return Float32
	case onnx.TensorElementDataTypeInt64:
		return Int64
	default:
		return DType(fmt.Sprintf("onnx-type-%d", t))
	}
}

func checkIO(kind string, want []IOSpec, got []onnx.InputOutputInfo) error {
	byName := make(map[string]onnx.InputOutputInfo, len(got))
	for _, g := range got {
		byName[g.Name] = g
	}
	if len(want) != len(got) {
		return fmt.Errorf("graph has %d %ss %v, manifest declares %d %v", len(got), kind, infoNames(got), len(want), names(want))
	}
	for _, w := range want {
		g, ok := byName[w.Name]
		if !ok {
			return fmt.Errorf("manifest %s %q not in graph (graph has %v)", kind, w.Name, infoNames(got))
		}
		if g.OrtValueType != onnx.ONNXTypeTensor {
			return fmt.Errorf("%s %q is a %v, want a tensor", kind, w.Name, g.OrtValueType)
		}
		if dt := dtypeOf(g.DataType); dt != w.DType {
			return fmt.Errorf("%s %q has type %s, manifest says %s", kind, w.Name, dt, w.DType)
		}
		if len(g.Dimensions) != len(w.Shape) {
			return fmt.Errorf("%s %q has rank %d, manifest says %d", kind, w.Name, len(g.Dimensions), len(w.Shape))
		}
		for i, d := range w.Shape {
			gd := g.Dimensions[i]
			if d >= 0 && gd >= 0 && d != gd {
				return fmt.Errorf("%s %q dim %d is %d, manifest says %d", kind, w.Name, i, gd, d)
			}
			if d >= 0 && gd < 0 {
				return fmt.Errorf("%s %q dim %d is dynamic in the graph, manifest fixes it to %d", kind, w.Name, i, d)
			}
		}
	}
	return nil
}

func infoNames(infos []onnx.InputOutputInfo) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Name
	}
	return out
}

// Name is the graph's role in its bundle.
func (s *Session) Name() string { return s.name }

// Inputs and Outputs are the declared I/O, in the order Run takes and returns them.
func (s *Session) Inputs() []IOSpec  { return s.inputs }
func (s *Session) Outputs() []IOSpec { return s.outputs }

// Run executes the graph on inputs (in Inputs() order) and returns every output (in Outputs()
// order) copied into Go memory. When ctx is cancelled, ONNX Runtime is told to terminate and
// Run waits for it to stop before freeing anything; it then returns ctx's error.
func (s *Session) Run(ctx context.Context, inputs []Tensor) ([]Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.runs.RLock()
	defer s.runs.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("graph %s: %w", s.name, ErrClosed)
	}
	if len(inputs) != len(s.inputs) {
		return nil, fmt.Errorf("graph %s: %d inputs given, want %d", s.name, len(inputs), len(s.inputs))
	}
	ins := make([]onnx.Value, 0, len(inputs))
	outs := make([]onnx.Value, len(s.outputs)) // nil: ONNX Runtime allocates them
	// Every native value made here is destroyed before returning, after Run has returned.
	defer func() {
		for _, v := range ins {
			v.Destroy()
		}
		for _, v := range outs {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, t := range inputs {
		v, err := s.newValue(s.inputs[i], t)
		if err != nil {
			return nil, err
		}
		ins = append(ins, v)
	}
	opts, err := onnx.NewRunOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	finished := make(chan struct{})
	watcher := make(chan struct{})
	go func() { // exits when Run has returned
		defer close(watcher)
		select {
		case <-ctx.Done():
			_ = opts.Terminate()
		case <-finished:
		}
	}()
	runErr := s.s.RunWithOptions(ins, outs, opts)
	close(finished)
	<-watcher
	if runErr != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("graph %s: %w", s.name, ctx.Err())
		}
		return nil, fmt.Errorf("graph %s: %w", s.name, runErr)
	}
	result := make([]Tensor, len(outs))
	for i, v := range outs {
		t, err := copyOut(s.outputs[i], v)
		if err != nil {
			return nil, fmt.Errorf("graph %s output %s: %w", s.name, s.outputs[i].Name, err)
		}
		result[i] = t
	}
	return result, nil
}

func (s *Session) newValue(spec IOSpec, t Tensor) (onnx.Value, error) {
	if len(t.Shape) != len(spec.Shape) {
		return nil, fmt.Errorf("graph %s input %s: rank %d, want %d", s.name, spec.Name, len(t.Shape), len(spec.Shape))
	}
	for i, d := range spec.Shape {
		if t.Shape[i] <= 0 || (d >= 0 && t.Shape[i] != d) {
			return nil, fmt.Errorf("graph %s input %s: shape %v does not fit %v", s.name, spec.Name, t.Shape, spec.Shape)
		}
	}
	n := t.NumElements()
	shape := onnx.NewShape(t.Shape...)
	switch spec.DType {
	case Float32:
		if int64(len(t.F32)) != n {
			return nil, fmt.Errorf("graph %s input %s: %d float32 values for shape %v", s.name, spec.Name, len(t.F32), t.Shape)
		}
		return onnx.NewTensor(shape, t.F32)
	case Int64:
		if int64(len(t.I64)) != n {
			return nil, fmt.Errorf("graph %s input %s: %d int64 values for shape %v", s.name, spec.Name, len(t.I64), t.Shape)
		}
		return onnx.NewTensor(shape, t.I64)
	}
	return nil, fmt.Errorf("graph %s input %s: unsupported dtype %s", s.name, spec.Name, spec.DType)
}

func copyOut(spec IOSpec, v onnx.Value) (Tensor, error) {
	shape := append([]int64(nil), v.GetShape()...)
	switch spec.DType {
	case Float32:
		ft, ok := v.(*onnx.Tensor[float32])
		if !ok {
			return Tensor{}, fmt.Errorf("got %T, want a float32 tensor", v)
		}
		return Tensor{Shape: shape, F32: append([]float32(nil), ft.GetData()...)}, nil
	case Int64:
		it, ok := v.(*onnx.Tensor[int64])
		if !ok {
			return Tensor{}, fmt.Errorf("got %T, want an int64 tensor", v)
		}
		return Tensor{Shape: shape, I64: append([]int64(nil), it.GetData()...)}, nil
	}
	return Tensor{}, fmt.Errorf("unsupported dtype %s", spec.DType)
}

// Close waits for the runs in progress to return, then destroys the native session; later
// runs fail with ErrClosed. Cancel long runs first (their contexts) to close promptly.
func (s *Session) Close() error {
	s.runs.Lock()
	s.closed = true
	s.runs.Unlock()
	s.env.mu.Lock()
	_, open := s.env.sessions[s]
	delete(s.env.sessions, s)
	s.env.mu.Unlock()
	if !open {
		return nil
	}
	return s.s.Destroy()
}
