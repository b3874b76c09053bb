// Package testenv gives tests the repository's fixtures and a real ONNX Runtime environment.
// Tests fail (they do not skip) when the library is missing: `make test` installs it.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	ort "github.com/uniter-serve/uniter/runtime"
)

// RepoRoot is the folder holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Path joins elements onto the repository root.
func Path(t testing.TB, elem ...string) string {
	return filepath.Join(append([]string{RepoRoot(t)}, elem...)...)
}

// FixtureBundle is the committed tiny random-weight bundle.
func FixtureBundle(t testing.TB) string { return Path(t, "testdata", "bundles", "tiny-random") }

// ORTLibrary is $UNITER_ORT_LIBRARY, or the library `make ort` installs.
func ORTLibrary(t testing.TB) string {
	t.Helper()
	lib := os.Getenv("UNITER_ORT_LIBRARY")
	if lib == "" {
		lib = Path(t, ".cache", "onnxruntime", "lib", "libonnxruntime.so")
	}
	if _, err := os.Stat(lib); err != nil {
		t.Fatalf("ONNX Runtime library missing (%v): run `make ort` or set UNITER_ORT_LIBRARY", err)
	}
	return lib
}

// CPUConfig is a CPU runtime configuration on the test library: 2 intra-op threads, or
// $UNITER_TEST_INTRA_OP_THREADS (benchmarks on a machine with more cores).
func CPUConfig(t testing.TB) ort.Config {
	threads := 2
	if v := os.Getenv("UNITER_TEST_INTRA_OP_THREADS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("UNITER_TEST_INTRA_OP_THREADS=%q: want a positive integer", v)
		}
		threads = n
	}
	return ort.Config{LibraryPath: ORTLibrary(t), Provider: ort.ProviderCPU, IntraOpThreads: threads}
}

// Config is the configuration Env uses: CPU, or CUDA when $UNITER_TEST_PROVIDER is "cuda"
// (how the same parity tests and benchmarks run on a GPU machine).
func Config(t testing.TB) ort.Config {
	cfg := CPUConfig(t)
	if p := os.Getenv("UNITER_TEST_PROVIDER"); p != "" {
		cfg.Provider = p
		cfg.CUDAStrictPlacement = os.Getenv("UNITER_TEST_CUDA_STRICT") == "1"
	}
	return cfg
}

// Env opens the process's ONNX Runtime environment for one test and closes it afterwards.
func Env(t testing.TB) *ort.Environment {
	t.Helper()
	env, err := ort.NewEnvironment(Config(t), nil)
	if err != nil {
		t.Fatalf("onnx runtime: %v", err)
	}
	// As the service's ort.profile_dir: benchmarks run with it write per-node profiles.
	if dir := os.Getenv("UNITER_ORT_PROFILE_DIR"); dir != "" {
		env.ProfileTo(dir)
	}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Errorf("closing environment: %v", err)
		}
	})
	return env
}
