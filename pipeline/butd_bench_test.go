package pipeline

// The bottom-up-attention detector (the LXMERT demo port's Faster R-CNN converted by
// convert-butd, models/uniter/butd.py) in `make bench`: BenchmarkBUTDDetector times the Go path
// of one image — decode, preprocessing, the detector graph in ONNX Runtime, region selection,
// no cache — on the bundle and images `python3 -m uniter.butd_bench export` writes into
// UNITER_BENCH_BUTD (scripts/bench.sh: .cache/bench/butd; BENCH_ONLY=butd runs only this part):
// random full-size weights with the port's 300 post-NMS proposals, a 640×480 JPEG (read at
// 800×600) and a 480×800 one (read at 600×1000). `python3 -m uniter.butd_bench torch` times
// PyTorch eager on the same weights and images. Without UNITER_BENCH_BUTD it is skipped: the
// tiny fixture has no such detector.

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// BenchmarkBUTDDetector has one sub-benchmark per image of UNITER_BENCH_BUTD/images (named by
// the file, e.g. image=640x480), each after one untimed warm-up detection; it reports images/s,
// each stage's mean time, and the proposals and regions of the warm-up.
func BenchmarkBUTDDetector(b *testing.B) {
	dir := os.Getenv("UNITER_BENCH_BUTD")
	if dir == "" {
		b.Skip("UNITER_BENCH_BUTD is not set: `BENCH_ONLY=butd bash scripts/bench.sh` exports the converted " +
			"detector (python3 -m uniter.butd_bench export) and runs this benchmark on it")
	}
	if !filepath.IsAbs(dir) {
		dir = testenv.Path(b, dir)
	}
	images, err := filepath.Glob(filepath.Join(dir, "images", "*.jpg"))
	if err != nil || len(images) == 0 {
		b.Fatalf("no images in %s/images (%v): run python3 -m uniter.butd_bench export", dir, err)
	}
	sort.Strings(images)
	env := testenv.Env(b)
	// UNITER_BENCH_DETECTOR_ON_CUDA=1 (with UNITER_TEST_PROVIDER=cuda) runs the detector graph on
	// the CUDA provider, as ort.detector_on_cuda does (scripts/device/gpu-bench.sh).
	// UNITER_BENCH_BUTD_BUNDLE picks the bundle folder: "bundle" (the default, one graph) or
	// "bundle-split" (the same weights as a split detector, `butd_bench export --split`).
	opts := Options{MaxRegions: servingMaxRegions, DetectorOnCUDA: os.Getenv("UNITER_BENCH_DETECTOR_ON_CUDA") == "1"}
	sub := cmp.Or(os.Getenv("UNITER_BENCH_BUTD_BUNDLE"), "bundle")
	bundle, err := Load(env, filepath.Join(dir, sub), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := bundle.Close(); err != nil {
			b.Errorf("closing bundle: %v", err)
		}
	})
	if bundle.detector == nil {
		b.Fatalf("%s/%s has no detector", dir, sub)
	}
	form := "one graph"
	if bundle.Manifest.Detector.Proposals != nil {
		form = "split, proposals in Go"
	}
	fmt.Printf("onnxruntime: %s\nbutd-bundle: %s (%s), %s, detector on %s\n", env.Version(), bundle.Manifest.Name,
		bundle.Manifest.Detector.Description, form, bundle.DetectorProvider())
	ctx := context.Background()
	for _, path := range images {
		name := strings.TrimSuffix(filepath.Base(path), ".jpg")
		b.Run("image="+name, func(b *testing.B) {
			data, err := os.ReadFile(path)
			if err != nil {
				b.Fatal(err)
			}
			det, err := bundle.detector.Detect(ctx, data) // warm-up, and what the report describes
			if err != nil {
				b.Fatal(err)
			}
			_, wr, hr := detector.ResizeScale(det.Width, det.Height, bundle.detector.Preprocess)
			fmt.Printf("butd-image: %s %dx%d JPEG, %d bytes -> detector input %dx%d, %d proposals, %d regions\n",
				name, det.Width, det.Height, len(data), wr, hr, det.Proposals, len(det.Regions))
			timeDetector(b, bundle, data, det)
		})
	}
}
