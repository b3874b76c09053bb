// Package ort is the project's only boundary to ONNX Runtime (github.com/yalue/onnxruntime_go).
//
// The folder is named runtime after the product's layout; the package is named ort so that it
// never shadows Go's standard runtime package. Import it as
// "github.com/uniter-serve/uniter/runtime" and refer to it as ort.
//
// Ownership: an Environment is process-wide (ONNX Runtime allows one per process) and owns
// every Session made from it; each Session owns its native session; every tensor passed to or
// returned by ONNX Runtime lives only inside Session.Run, which copies outputs into Go memory
// and destroys all native values before returning. Nothing relies on finalizers.
package ort

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	onnx "github.com/yalue/onnxruntime_go"
)

// Execution providers.
const (
	ProviderCPU  = "cpu"
	ProviderCUDA = "cuda"
)

// ErrUnavailable reports that the configured ONNX Runtime library or execution provider cannot
// be used on this machine.
var ErrUnavailable = errors.New("onnx runtime unavailable")

// Config selects the ONNX Runtime library and how sessions execute.
type Config struct {
	LibraryPath     string // path to libonnxruntime.so
	Provider        string // "cpu" or "cuda"
	CUDADeviceID    int
	CUDAMemoryLimit int64 // bytes; 0 means no limit
	CUDAUseTF32     bool  // let CUDA use TF32 for fp32 matrix products (faster, ~1e-3 relative error)
	// CUDAStrictPlacement refuses a graph any of whose nodes ONNX Runtime would run on the
	// CPU (session.disable_cpu_ep_fallback). Off, such nodes run on the CPU and Load logs it.
	CUDAStrictPlacement bool
	AllowCPUFallback    bool // if cuda cannot start, run on cpu (logged loudly) instead of failing
	IntraOpThreads      int  // 0: ONNX Runtime's default (one per core)
	InterOpThreads      int  // 0: ONNX Runtime's default
	// IntraOpSpinning lets a graph's intra-op threads spin-wait for work after a run
	// (session.intra_op.allow_spinning, ONNX Runtime's default). Off, they sleep: the cores are
	// free for the Go side (requests, tokenizer, heads) between and beside runs.
	IntraOpSpinning bool
}

// Validate checks the values that do not need the library.
func (c Config) Validate() error {
	switch c.Provider {
	case ProviderCPU, ProviderCUDA:
	default:
		return fmt.Errorf("provider %q: want %q or %q", c.Provider, ProviderCPU, ProviderCUDA)
	}
	if c.CUDADeviceID < 0 || c.CUDAMemoryLimit < 0 || c.IntraOpThreads < 0 || c.InterOpThreads < 0 {
		return errors.New("device id, memory limit and thread counts must not be negative")
	}
	return nil
}

// Environment is the process's ONNX Runtime environment plus the execution provider choice.
type Environment struct {
	cfg Config
	log *slog.Logger

	mu             sync.Mutex
	provider       string // provider actually in use
	fallbackReason string // why cuda was replaced by cpu, if it was
	closed         bool
	sessions       map[*Session]struct{}
	cudaPlugin     cudaPlugin
	profileDir     string       // where new sessions write their profiles; "" none (ProfileTo)
	profiles       atomic.Int64 // sessions profiled so far: numbers their profile files
}

// ProfileTo makes the sessions opened from now on record ONNX Runtime's per-node profile into
// dir: each writes dir/GRAPH-N_<time>.json when it is closed (ReadProfile sums one per op).
// "" stops it for later sessions.
func (e *Environment) ProfileTo(dir string) {
	e.mu.Lock()
	e.profileDir = dir
	e.mu.Unlock()
}

var (
	processEnvMu sync.Mutex
	processEnv   *Environment
)

// NewEnvironment loads the library and initialises ONNX Runtime. Only one Environment may be
// open per process; Close it before opening another.
func NewEnvironment(cfg Config, log *slog.Logger) (*Environment, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	processEnvMu.Lock()
	defer processEnvMu.Unlock()
	if processEnv != nil {
		return nil, errors.New("an onnx runtime environment is already open in this process")
	}
	if _, err := os.Stat(cfg.LibraryPath); err != nil {
		return nil, fmt.Errorf("%w: library %s: %v (run `make ort` to install it)", ErrUnavailable, cfg.LibraryPath, err)
	}
	onnx.SetSharedLibraryPath(cfg.LibraryPath)
	if err := onnx.InitializeEnvironment(onnx.WithLogLevelError()); err != nil {
		return nil, fmt.Errorf("%w: initialising %s: %v", ErrUnavailable, cfg.LibraryPath, err)
	}
	env := &Environment{cfg: cfg, log: log, provider: cfg.Provider, sessions: map[*Session]struct{}{}}
	if cfg.Provider == ProviderCUDA {
		if err := env.probeCUDA(); err != nil {
			if !cfg.AllowCPUFallback {
				_ = onnx.DestroyEnvironment()
				return nil, fmt.Errorf("%w: cuda requested but cannot start: %v "+
					"(set allow_cpu_fallback to run on cpu instead)", ErrUnavailable, err)
			}
			env.fallBack(err)
		}
	}
	processEnv = env
	return env, nil
}

// fallBack switches the environment to CPU after a CUDA failure; it is loud on purpose.
func (e *Environment) fallBack(cause error) {
	e.provider = ProviderCPU
	e.fallbackReason = cause.Error()
	e.log.Error("CUDA EXECUTION PROVIDER UNAVAILABLE: FALLING BACK TO CPU", "reason", cause)
}

// probeCUDA checks that the CUDA provider library loads and a device answers, by building a
// session on a one-node graph.
func (e *Environment) probeCUDA() error {
	opts, err := e.sessionOptions(ProviderCUDA, nil)
	if err != nil {
		return err
	}
	defer opts.Destroy()
	s, err := onnx.NewDynamicAdvancedSessionWithONNXData(probeGraph, []string{"x"}, []string{"y"}, opts)
	if err != nil {
		return err
	}
	return s.Destroy()
}

// Provider is the execution provider actually in use ("cpu" after a fallback).
func (e *Environment) Provider() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.provider
}

// CUDAUseTF32 reports whether the CUDA provider is configured to use TF32 for fp32 matrix
// products (Config.CUDAUseTF32); it says nothing about the provider in use (see Provider).
func (e *Environment) CUDAUseTF32() bool { return e.cfg.CUDAUseTF32 }

// FallbackReason says why CUDA was replaced by CPU; empty when it was not.
func (e *Environment) FallbackReason() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fallbackReason
}

// Version is the ONNX Runtime library version.
func (e *Environment) Version() string { return onnx.GetVersion() }

// Close destroys every session still open, then the process environment.
func (e *Environment) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	open := make([]*Session, 0, len(e.sessions))
	for s := range e.sessions {
		open = append(open, s)
	}
	e.mu.Unlock()
	var errs []error
	for _, s := range open {
		errs = append(errs, s.Close())
	}
	processEnvMu.Lock()
	defer processEnvMu.Unlock()
	errs = append(errs, onnx.DestroyEnvironment())
	processEnv = nil
	return errors.Join(errs...)
}

// SessionTuning holds per-graph provider settings (e.g. cuDNN algorithm search for convolutions).
type SessionTuning struct {
	CUDAOptions map[string]string
	OnCPU       bool // run this graph on the CPU whatever the environment's provider
}

// sessionOptions builds the options for one provider. The caller destroys them.
func (e *Environment) sessionOptions(provider string, tuning *SessionTuning) (*onnx.SessionOptions, error) {
	opts, err := onnx.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*onnx.SessionOptions, error) {
		return nil, errors.Join(err, opts.Destroy())
	}
	if e.cfg.IntraOpThreads > 0 {
		if err := opts.SetIntraOpNumThreads(e.cfg.IntraOpThreads); err != nil {
			return fail(err)
		}
	}
	spinning := "0"
	if e.cfg.IntraOpSpinning {
		spinning = "1"
	}
	if err := opts.AddSessionConfigEntry("session.intra_op.allow_spinning", spinning); err != nil {
		return fail(err)
	}
	if e.cfg.InterOpThreads > 0 {
		if err := opts.SetInterOpNumThreads(e.cfg.InterOpThreads); err != nil {
			return fail(err)
		}
	}
	if provider != ProviderCUDA {
		return opts, nil
	}
	if e.cfg.CUDAStrictPlacement {
		// No per-node fallback: a node CUDA does not run fails the session instead.
		if err := opts.AddSessionConfigEntry("session.disable_cpu_ep_fallback", "1"); err != nil {
			return fail(err)
		}
	}
	tf32 := "0"
	if e.cfg.CUDAUseTF32 {
		tf32 = "1"
	}
	settings := map[string]string{"device_id": strconv.Itoa(e.cfg.CUDADeviceID), "use_tf32": tf32}
	if e.cfg.CUDAMemoryLimit > 0 {
		settings["gpu_mem_limit"] = strconv.FormatInt(e.cfg.CUDAMemoryLimit, 10)
	}
	if tuning != nil {
		for k, v := range tuning.CUDAOptions {
			settings[k] = v
		}
	}
	if err := e.appendCUDA(opts, settings); err != nil {
		return fail(err)
	}
	return opts, nil
}

// appendCUDA adds the CUDA provider through the classic options API, or, for builds that
// ship it as a plugin EP library, through plugin registration and device selection.
func (e *Environment) appendCUDA(opts *onnx.SessionOptions, settings map[string]string) error {
	cuda, err := onnx.NewCUDAProviderOptions()
	if notEnabled(err) {
		return e.appendCUDAPlugin(opts, settings)
	}
	if err != nil {
		return err
	}
	defer cuda.Destroy()
	if err := cuda.Update(settings); err != nil {
		return err
	}
	return opts.AppendExecutionProviderCUDA(cuda)
}
