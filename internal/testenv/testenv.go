// Package testenv gives tests the repository's fixtures and a real ONNX Runtime environment.
// Tests fail (they do not skip) when the library is missing: `make test` installs it.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
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

// FixtureCopy copies the fixture bundle into a temporary folder, each file's bytes passed
// through edit (its name and bytes in, the bytes to write out), and returns the folder.
func FixtureCopy(t testing.TB, edit func(name string, raw []byte) []byte) string {
	t.Helper()
	dir := t.TempDir()
	src := FixtureBundle(t)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), edit(e.Name(), raw), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

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

// Python finds the interpreter that runs models/uniter: $UNITER_PYTHON, else /usr/bin/python3,
// else python3 on PATH, the first that imports every one of modules (e.g. "onnx, numpy").
// Without one the test skips, or fails when the environment variable requireVar is "require"
// (as `make test` sets the ones it needs); why says what the test wanted it for.
func Python(t testing.TB, requireVar, modules, why string) string {
	t.Helper()
	candidates := []string{os.Getenv("UNITER_PYTHON"), "/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if exec.Command(p, "-c", "import "+modules).Run() == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s: no python3 that imports %s (set UNITER_PYTHON)", why, modules)
	if os.Getenv(requireVar) == "require" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
