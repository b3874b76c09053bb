package ort_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/internal/testenv"
	ort "github.com/uniter-serve/uniter/runtime"
)

var (
	probeIn  = []ort.IOSpec{{Name: "x", DType: ort.Float32, Shape: []int64{1}}}
	probeOut = []ort.IOSpec{{Name: "y", DType: ort.Float32, Shape: []int64{1}}}
)

func TestMissingLibrary(t *testing.T) {
	_, err := ort.NewEnvironment(ort.Config{LibraryPath: "/nonexistent/libonnxruntime.so", Provider: ort.ProviderCPU}, nil)
	if !errors.Is(err, ort.ErrUnavailable) || !strings.Contains(err.Error(), "/nonexistent/libonnxruntime.so") {
		t.Fatalf("got %v, want ErrUnavailable naming the path", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (ort.Config{Provider: "tpu"}).Validate(); err == nil || !strings.Contains(err.Error(), "tpu") {
		t.Fatalf("got %v, want an error naming the provider", err)
	}
}

func TestOnlyOneEnvironment(t *testing.T) {
	testenv.Env(t)
	if _, err := ort.NewEnvironment(testenv.CPUConfig(t), nil); err == nil {
		t.Fatal("second environment opened, want an error")
	}
}

func TestRunAndIOValidation(t *testing.T) {
	env := testenv.Env(t)
	probe := testenv.Path(t, "runtime", "probe.onnx")
	s, err := env.NewSession("probe", probe, probeIn, probeOut, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Run(context.Background(), []ort.Tensor{{Shape: []int64{1}, F32: []float32{-2}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := out[0].F32; len(got) != 1 || got[0] != 0 {
		t.Fatalf("relu(-2): got %v, want [0]", got)
	}
	// Declarations that disagree with the graph fail at load, naming the problem.
	bad := []struct {
		name    string
		in, out []ort.IOSpec
		want    string
	}{
		{"name", []ort.IOSpec{{Name: "input", DType: ort.Float32, Shape: []int64{1}}}, probeOut, `"input" not in graph`},
		{"dtype", []ort.IOSpec{{Name: "x", DType: ort.Int64, Shape: []int64{1}}}, probeOut, "type float32, manifest says int64"},
		{"rank", probeIn, []ort.IOSpec{{Name: "y", DType: ort.Float32, Shape: []int64{1, 1}}}, "rank 1, manifest says 2"},
		{"dim", []ort.IOSpec{{Name: "x", DType: ort.Float32, Shape: []int64{3}}}, probeOut, "dim 0 is 1, manifest says 3"},
		{"count", append(probeIn, ort.IOSpec{Name: "z", DType: ort.Float32, Shape: []int64{1}}), probeOut, "graph has 1 inputs"},
	}
	for _, c := range bad {
		if _, err := env.NewSession("probe", probe, c.in, c.out, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want error containing %q", c.name, err, c.want)
		}
	}
	// Inputs that disagree with the declaration fail before reaching ONNX Runtime.
	if _, err := s.Run(context.Background(), []ort.Tensor{{Shape: []int64{2}, F32: []float32{1, 2}}}); err == nil {
		t.Error("shape [2] accepted for a [1] input")
	}
	if _, err := s.Run(context.Background(), []ort.Tensor{{Shape: []int64{1}}}); err == nil {
		t.Error("tensor without data accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
}

func slowSession(t *testing.T, env *ort.Environment) *ort.Session {
	spec := []ort.IOSpec{{Name: "x", DType: ort.Float32, Shape: []int64{-1, -1}}}
	out := []ort.IOSpec{{Name: "y", DType: ort.Float32, Shape: []int64{-1, -1}}}
	s, err := env.NewSession("slow", testenv.Path(t, "runtime", "testdata", "slow.onnx"), spec, []ort.IOSpec(out), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func square(n int) ort.Tensor {
	data := make([]float32, n*n)
	for i := range data {
		data[i] = float32(i%7) / 70
	}
	return ort.Tensor{Shape: []int64{int64(n), int64(n)}, F32: data}
}

// TestCancel cancels a run that is in progress: Run must return the context's error (after ONNX
// Runtime has stopped) and the session must stay usable.
func TestCancel(t *testing.T) {
	env := testenv.Env(t)
	s := slowSession(t, env)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := s.Run(ctx, []ort.Tensor{square(512)}) // 400 × 512³ multiply-adds: seconds, not 50 ms
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, err := s.Run(ctx, []ort.Tensor{square(4)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("already cancelled context: got %v, want context.Canceled", err)
	}
	out, err := s.Run(context.Background(), []ort.Tensor{square(8)})
	if err != nil || len(out[0].F32) != 64 {
		t.Fatalf("run after cancellation: got %v, %d values", err, len(out[0].F32))
	}
}

// TestCloseWaitsForRuns closes a session while a long run is in progress: Close must wait for
// the run to return (destroying the native session under it crashes the process), and runs
// after Close fail with ErrClosed.
func TestCloseWaitsForRuns(t *testing.T) {
	env := testenv.Env(t)
	s := slowSession(t, env)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() {
		_, err := s.Run(ctx, []ort.Tensor{square(512)})
		ran <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the run start
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a run was in progress", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancel() // the run stops; Close may now destroy the session
	if err := <-ran; !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want context.Canceled", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(context.Background(), []ort.Tensor{square(4)}); !errors.Is(err, ort.ErrClosed) {
		t.Fatalf("run after Close: %v, want ErrClosed", err)
	}
}

func TestConcurrentRuns(t *testing.T) {
	env := testenv.Env(t)
	s := slowSession(t, env)
	want, err := s.Run(context.Background(), []ort.Tensor{square(16)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.Run(context.Background(), []ort.Tensor{square(16)})
			if err != nil {
				errs <- err
				return
			}
			for i := range got[0].F32 {
				if got[0].F32[i] != want[0].F32[i] {
					errs <- errors.New("concurrent run gave a different result")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Sessions open and run with intra-op spinning on and off (the option is ONNX Runtime's
// session.intra_op.allow_spinning, which it reads when the session starts its threads).
func TestIntraOpSpinning(t *testing.T) {
	for _, spin := range []bool{false, true} {
		cfg := testenv.Config(t)
		cfg.IntraOpSpinning = spin
		env, err := ort.NewEnvironment(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := env.NewSession("probe", testenv.Path(t, "runtime", "probe.onnx"), probeIn, probeOut, nil)
		if err != nil {
			t.Fatalf("spinning %v: %v", spin, err)
		}
		out, err := s.Run(context.Background(), []ort.Tensor{{Shape: []int64{1}, F32: []float32{3}}})
		if err != nil || out[0].F32[0] != 3 {
			t.Fatalf("spinning %v: relu(3) = %v, %v", spin, out, err)
		}
		if err := errors.Join(s.Close(), env.Close()); err != nil {
			t.Fatal(err)
		}
	}
}

// cudaUsable reports whether this machine could run the CUDA provider at all.
func cudaUsable(t *testing.T) (bool, string) {
	lib := filepath.Join(filepath.Dir(testenv.ORTLibrary(t)), "libonnxruntime_providers_cuda.so")
	if _, err := os.Stat(lib); err != nil {
		return false, "CUDA provider library not installed (ORT_GPU=1 make ort)"
	}
	if _, err := os.Stat("/dev/nvidiactl"); err != nil {
		return false, "no NVIDIA device"
	}
	return true, ""
}

// TestCUDAProvider: without a GPU, asking for CUDA must refuse to start (saying why) unless
// fallback is allowed, in which case the provider in use is CPU with the reason recorded.
// With a GPU, the CUDA session must reproduce the CPU result.
func TestCUDAProvider(t *testing.T) {
	cfg := testenv.CPUConfig(t)
	cfg.Provider = ort.ProviderCUDA
	if ok, why := cudaUsable(t); !ok {
		t.Logf("no usable GPU here (%s): checking refusal and fallback", why)
		if _, err := ort.NewEnvironment(cfg, nil); !errors.Is(err, ort.ErrUnavailable) || !strings.Contains(err.Error(), "cuda") {
			t.Fatalf("got %v, want ErrUnavailable mentioning cuda", err)
		}
		cfg.AllowCPUFallback = true
		env, err := ort.NewEnvironment(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer env.Close()
		if env.Provider() != ort.ProviderCPU || env.FallbackReason() == "" {
			t.Fatalf("provider %q reason %q, want cpu with a reason", env.Provider(), env.FallbackReason())
		}
		return
	}
	cpuEnv, err := ort.NewEnvironment(testenv.CPUConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := slowSession(t, cpuEnv).Run(context.Background(), []ort.Tensor{square(64)})
	if err != nil {
		t.Fatal(err)
	}
	if err := cpuEnv.Close(); err != nil {
		t.Fatal(err)
	}
	// Twice: a process (a test binary) opens one environment after another, and the CUDA
	// plugin's registration dies with the ONNX Runtime environment it was made in.
	for round := 1; round <= 2; round++ {
		env, err := ort.NewEnvironment(cfg, nil)
		if err != nil {
			t.Fatalf("round %d: cuda on a machine with a GPU: %v", round, err)
		}
		if env.Provider() != ort.ProviderCUDA {
			t.Fatalf("round %d: provider %q, want cuda", round, env.Provider())
		}
		got, err := slowSession(t, env).Run(context.Background(), []ort.Tensor{square(64)})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for i, v := range got[0].F32 {
			if d := v - want[0].F32[i]; d > 1e-3 || d < -1e-3 {
				t.Fatalf("round %d: cuda value %d: got %v, cpu %v", round, i, v, want[0].F32[i])
			}
		}
		if err := env.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestProfile: a session opened after ProfileTo writes ONNX Runtime's profile when closed, and
// ReadProfile counts its runs and the probe's one operator (Relu) once per run.
func TestProfile(t *testing.T) {
	env := testenv.Env(t)
	dir := t.TempDir()
	env.ProfileTo(dir)
	s, err := env.NewSession("probe", testenv.Path(t, "runtime", "probe.onnx"), probeIn, probeOut, nil)
	env.ProfileTo("")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.Run(context.Background(), []ort.Tensor{{Shape: []int64{1}, F32: []float32{1}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "probe-*.json"))
	if len(files) != 1 {
		t.Fatalf("profile files %v, want one probe-N_<time>.json", files)
	}
	p, err := ort.ReadProfile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if p.Runs != 3 || len(p.Ops) != 1 || p.Ops[0].Op != "Relu" || p.Ops[0].Calls != 3 || p.Total <= 0 {
		t.Errorf("profile %+v, want 3 runs of one Relu", p)
	}
	if _, err := ort.ReadProfile(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("a missing profile read without an error")
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"not": "a list"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ort.ReadProfile(bad); err == nil || !strings.Contains(err.Error(), "not an ONNX Runtime profile") {
		t.Errorf("a file that is no profile: %v", err)
	}
}
