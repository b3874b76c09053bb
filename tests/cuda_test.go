package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/internal/testenv"
)

// cudaAvailable says whether this machine can run the CUDA provider: an NVIDIA driver and the
// CUDA provider library installed beside the ONNX Runtime library (`ORT_GPU=1 make ort`).
func cudaAvailable(t testing.TB) bool {
	lib := testenv.ORTLibrary(t)
	_, errDev := os.Stat("/dev/nvidiactl")
	_, errEP := os.Stat(filepath.Join(filepath.Dir(lib), "libonnxruntime_providers_cuda.so"))
	return errDev == nil && errEP == nil
}

func TestCUDA(t *testing.T) {
	t.Parallel()
	g := loadGolden(t)
	if cudaAvailable(t) {
		// A GPU machine: cuda must really be used, without a fallback.
		s := startServe(t, uniterEnv(t, "UNITER_ORT_PROVIDER=cuda"))
		info := s.modelInfo(t)
		if info.Provider != "cuda" || info.ProviderFallback != "" {
			t.Errorf("provider %q, provider_fallback %q; want cuda, none", info.Provider, info.ProviderFallback)
		}
		// The detector stays on the CPU unless ort.detector_on_cuda (graphs with CPU-placed nodes crash ONNX Runtime 1.29's CUDA plugin).
		if info.Detector == nil || info.Detector.Provider != "cpu" {
			t.Errorf("detector %+v, want it on the cpu", info.Detector)
		}
		if r := s.match(t, g.regions(0), g.matchTexts()...); len(r.Results) != 3 {
			t.Errorf("%d results on cuda, want 3", len(r.Results))
		}
		// Initialising CUDA replaces Go's signal handlers (onnxruntime_go issue 140): SIGTERM
		// must still stop the service cleanly.
		s.stop(t)
		return
	}

	t.Run("refused without allow_cpu_fallback", func(t *testing.T) {
		t.Parallel()
		for name, c := range map[string]struct{ env, args []string }{
			"env":  {env: []string{"UNITER_ORT_PROVIDER=cuda"}},
			"flag": {args: []string{"--provider", "cuda"}},
		} {
			args := append([]string{"serve", "--addr", freeAddr(t), "--bundle", testenv.FixtureBundle(t)}, c.args...)
			start := time.Now()
			code, _, stderr := runUniter(t, "", uniterEnv(t, c.env...), args...)
			if code == 0 {
				t.Fatalf("%s: cuda on a machine without it: exit code 0, want non-zero", name)
			}
			if took := time.Since(start); took > exitTimeout {
				t.Errorf("%s: took %v to refuse, a hang guard, not a speed goal", name, took)
			}
			if !strings.Contains(strings.ToLower(stderr), "cuda") || !strings.Contains(stderr, "allow_cpu_fallback") {
				t.Errorf("%s: stderr does not mention cuda and allow_cpu_fallback:\n%s", name, stderr)
			}
		}
	})

	t.Run("falls back to cpu when allowed", func(t *testing.T) {
		t.Parallel()
		s := startServe(t, uniterEnv(t, "UNITER_ORT_PROVIDER=cuda", "UNITER_ORT_ALLOW_CPU_FALLBACK=true"))
		info := s.modelInfo(t)
		if info.Provider != "cpu" || info.ProviderFallback == "" {
			t.Errorf("provider %q, provider_fallback %q; want cpu and a reason", info.Provider, info.ProviderFallback)
		}
		if !strings.Contains(s.stderr.String(), "FALLING BACK TO CPU") {
			t.Errorf("the fallback was not logged loudly; stderr:\n%s", s.stderr.String())
		}
		if r := s.match(t, g.regions(0), g.matchTexts()...); len(r.Results) != 3 {
			t.Errorf("%d results after the fallback, want 3", len(r.Results))
		}
	})
}
