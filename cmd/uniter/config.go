package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/pipeline"
	ort "github.com/uniter-serve/uniter/runtime"
)

// Config is every setting of the service. Sources, highest first: flags, UNITER_* environment
// variables (dots become underscores: ort.provider → UNITER_ORT_PROVIDER), the --config file,
// defaults. Each key is documented in docs/configuration.md.
type Config struct {
	Addr   string `mapstructure:"addr"`
	Bundle string `mapstructure:"bundle"`
	// Models are more bundles served beside Bundle (the default model): bundle folders, or
	// folders whose subfolders are bundles. Requests name them in their "model" field.
	Models []string `mapstructure:"models"`
	ORT    struct {
		Library          string `mapstructure:"library"`
		Provider         string `mapstructure:"provider"`
		CUDADeviceID     int    `mapstructure:"cuda_device_id"`
		CUDAMemoryLimit  int64  `mapstructure:"cuda_memory_limit"`
		CUDAUseTF32      bool   `mapstructure:"cuda_use_tf32"`
		CUDAStrict       bool   `mapstructure:"cuda_strict_placement"`
		AllowCPUFallback bool   `mapstructure:"allow_cpu_fallback"`
		DetectorOnCUDA   bool   `mapstructure:"detector_on_cuda"`
		IntraOpThreads   int    `mapstructure:"intra_op_threads"`
		IntraOpSpinning  bool   `mapstructure:"intra_op_spinning"`
		InterOpThreads   int    `mapstructure:"inter_op_threads"`
		ProfileDir       string `mapstructure:"profile_dir"`
	} `mapstructure:"ort"`
	Limits struct {
		MaxBodyBytes   int64         `mapstructure:"max_body_bytes"`
		MaxTexts       int           `mapstructure:"max_texts"`
		MaxRegions     int           `mapstructure:"max_regions"`
		MaxTextLength  int           `mapstructure:"max_text_length"`
		RequestTimeout time.Duration `mapstructure:"request_timeout"`
		MaxConcurrent  int           `mapstructure:"max_concurrent"`
		MaxQueue       int           `mapstructure:"max_queue"`
		BatchPairs     int           `mapstructure:"batch_pairs"`
		BatchWait      time.Duration `mapstructure:"batch_wait"`
		MaxImageBytes  int64         `mapstructure:"max_image_bytes"`
		MaxImagePixels int64         `mapstructure:"max_image_pixels"`
		ImageMemory    int64         `mapstructure:"image_memory_bytes"`
	} `mapstructure:"limits"`
	Detector struct {
		CacheBytes    int64   `mapstructure:"cache_bytes"`
		NMSIoU        float32 `mapstructure:"nms_iou"`
		MinConfidence float32 `mapstructure:"min_confidence"`
		MinBoxes      int     `mapstructure:"min_boxes"`
		MaxBoxes      int     `mapstructure:"max_boxes"`
		MinBoxSize    float32 `mapstructure:"min_box_size"`
	} `mapstructure:"detector"`
	Log struct {
		Level  string `mapstructure:"level"`
		Format string `mapstructure:"format"`
	} `mapstructure:"log"`
	DataDir string        `mapstructure:"data_dir"`
	Gallery GalleryConfig `mapstructure:"gallery"`
	Search  SearchConfig  `mapstructure:"search"`
	Auth    AuthConfig    `mapstructure:"auth"`
	HTTP    HTTPConfig    `mapstructure:"http"`
}

// defaults lists every key; viper's Unmarshal ignores environment-only keys without one.
var defaults = map[string]any{
	"addr":                      "127.0.0.1:8080",
	"bundle":                    "bundles/shapes-uniter",
	"models":                    []string{},
	"ort.library":               ".cache/onnxruntime/lib/libonnxruntime.so",
	"ort.provider":              ort.ProviderCPU,
	"ort.cuda_device_id":        0,
	"ort.cuda_memory_limit":     int64(0),
	"ort.cuda_use_tf32":         false,
	"ort.cuda_strict_placement": true,
	"ort.allow_cpu_fallback":    false,
	"ort.detector_on_cuda":      false,
	"ort.intra_op_threads":      0,
	"ort.intra_op_spinning":     false,
	"ort.inter_op_threads":      0,
	"ort.profile_dir":           "",
	"limits.max_body_bytes":     int64(24 << 20),
	"limits.max_image_bytes":    int64(16 << 20),
	"limits.max_image_pixels":   int64(40_000_000),
	"limits.image_memory_bytes": int64(512 << 20),
	"detector.cache_bytes":      int64(256 << 20),
	"detector.nms_iou":          float32(0),
	"detector.min_confidence":   float32(-1),
	"detector.min_boxes":        0,
	"detector.max_boxes":        0,
	"detector.min_box_size":     float32(-1),
	"limits.max_texts":          32,
	"limits.max_regions":        100,
	"limits.max_text_length":    0,
	"limits.request_timeout":    20 * time.Second,
	"limits.max_concurrent":     1,
	"limits.max_queue":          64,
	"limits.batch_pairs":        32,
	"limits.batch_wait":         time.Duration(0),
	"log.level":                 "info",
	"log.format":                "text",
	"data_dir":                  "data",
	"gallery.backend":           "bbolt",
	"gallery.dsn":               "",
	"gallery.dsn_file":          "",
	"gallery.thumbnail_size":    256,
	"gallery.max_text_batch":    1000,
	"gallery.demo":              false,
	"search.max_limit":          100,
	"search.max_offset":         1000,
	"search.candidates":         100,
	"search.max_candidates":     10000,
	"search.batch_pairs":        64,
	"search.workers":            2,
	"auth.keys":                 []string{},
	"auth.keys_file":            "",
	"auth.insecure_no_auth":     false,
	"http.allowed_hosts":        []string{},
	"http.cors_origins":         []string{},
}

// maxRequestTimeout bounds limits.request_timeout; the shutdown grace is the request timeout
// plus shutdownMargin, so a request admitted before SIGTERM can always finish.
const (
	maxRequestTimeout = 10 * time.Minute
	shutdownMargin    = 5 * time.Second
)

// shutdownGrace is how long SIGTERM waits for requests in flight before cancelling them.
func (c *Config) shutdownGrace() time.Duration { return c.Limits.RequestTimeout + shutdownMargin }

// loadConfig merges defaults, the optional file, the environment and the flags that were set.
func loadConfig(file string, flags *pflag.FlagSet, flagKeys map[string]string) (*Config, error) {
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix("UNITER")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	for flag, key := range flagKeys {
		if f := flags.Lookup(flag); f != nil {
			if err := v.BindPFlag(key, f); err != nil {
				return nil, err
			}
		}
	}
	var c Config
	if err := v.UnmarshalExact(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, c.Validate()
}

// Validate names the key of every invalid value.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("config %s: %s", key, fmt.Sprintf(format, a...)))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("addr", "%q is not host:port: %v", c.Addr, err)
	}
	if c.Bundle == "" {
		bad("bundle", "must name a model bundle folder")
	} else if st, err := os.Stat(c.Bundle); err != nil || !st.IsDir() {
		bad("bundle", "%q is not a folder", c.Bundle)
	}
	if _, err := c.modelDirs(); err != nil {
		bad("models", "%v", err)
	}
	if c.ORT.Provider != ort.ProviderCPU && c.ORT.Provider != ort.ProviderCUDA {
		bad("ort.provider", "%q: want %q or %q", c.ORT.Provider, ort.ProviderCPU, ort.ProviderCUDA)
	}
	if st, err := os.Stat(c.ORT.Library); err != nil || st.IsDir() {
		bad("ort.library", "ONNX Runtime library %q not found (run `make ort` to install it)", c.ORT.Library)
	}
	nonNegative := map[string]int64{"ort.cuda_device_id": int64(c.ORT.CUDADeviceID), "ort.cuda_memory_limit": c.ORT.CUDAMemoryLimit,
		"ort.intra_op_threads": int64(c.ORT.IntraOpThreads), "ort.inter_op_threads": int64(c.ORT.InterOpThreads)}
	for key, v := range nonNegative {
		if v < 0 {
			bad(key, "must not be negative, got %d", v)
		}
	}
	positive := map[string]int64{"limits.max_body_bytes": c.Limits.MaxBodyBytes, "limits.max_texts": int64(c.Limits.MaxTexts),
		"limits.max_regions": int64(c.Limits.MaxRegions), "limits.max_concurrent": int64(c.Limits.MaxConcurrent),
		"limits.max_queue": int64(c.Limits.MaxQueue)}
	for key, v := range positive {
		if v <= 0 {
			bad(key, "must be positive, got %d", v)
		}
	}
	for key, v := range map[string]int64{"limits.max_image_bytes": c.Limits.MaxImageBytes, "limits.max_image_pixels": c.Limits.MaxImagePixels,
		"limits.image_memory_bytes": c.Limits.ImageMemory} {
		if v <= 0 {
			bad(key, "must be positive, got %d", v)
		}
	}
	if c.Detector.CacheBytes < 0 {
		bad("detector.cache_bytes", "must not be negative (0 disables the cache)")
	}
	if c.Limits.BatchPairs < 0 || c.Limits.BatchPairs > 1024 {
		bad("limits.batch_pairs", "%d: want 0 or 1 (no batching across requests) up to 1024", c.Limits.BatchPairs)
	}
	if c.Limits.BatchWait < 0 || c.Limits.BatchWait > time.Second {
		bad("limits.batch_wait", "%v: want 0 (run as soon as the graph is free) up to 1s", c.Limits.BatchWait)
	}
	if c.Detector.NMSIoU < 0 || c.Detector.NMSIoU > 1 {
		bad("detector.nms_iou", "%v: want 0 (the bundle's) or a value in (0, 1]", c.Detector.NMSIoU)
	}
	if c.Detector.MinConfidence > 1 || (c.Detector.MinConfidence < 0 && c.Detector.MinConfidence != -1) {
		bad("detector.min_confidence", "%v: want -1 (the bundle's) or a value in [0, 1]", c.Detector.MinConfidence)
	}
	if m := c.Detector.MinBoxSize; m != -1 && !(m >= 0 && m <= 1e6) {
		bad("detector.min_box_size", "%v: want -1 (the bundle's) or a size >= 0 in original-image pixels (0 keeps every proposal)", m)
	}
	if c.Detector.MinBoxes < 0 || c.Detector.MaxBoxes < 0 || (c.Detector.MaxBoxes > 0 && c.Detector.MinBoxes > c.Detector.MaxBoxes) {
		bad("detector.min_boxes", "want 0 (the bundle's) or 1 <= min_boxes <= max_boxes")
	}
	if c.Limits.MaxTextLength < 0 {
		bad("limits.max_text_length", "must not be negative")
	}
	if c.Limits.RequestTimeout <= 0 || c.Limits.RequestTimeout > maxRequestTimeout {
		bad("limits.request_timeout", "%v: want a duration in (0, %v]", c.Limits.RequestTimeout, maxRequestTimeout)
	}
	if _, err := c.logLevel(); err != nil {
		bad("log.level", "%v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q: want text or json", c.Log.Format)
	}
	errs = append(errs, c.validateGallery()...)
	return errors.Join(errs...)
}

func (c *Config) ortConfig() ort.Config {
	return ort.Config{LibraryPath: c.ORT.Library, Provider: c.ORT.Provider, CUDADeviceID: c.ORT.CUDADeviceID,
		CUDAMemoryLimit: c.ORT.CUDAMemoryLimit, CUDAUseTF32: c.ORT.CUDAUseTF32, CUDAStrictPlacement: c.ORT.CUDAStrict, AllowCPUFallback: c.ORT.AllowCPUFallback,
		IntraOpThreads: c.ORT.IntraOpThreads, IntraOpSpinning: c.ORT.IntraOpSpinning, InterOpThreads: c.ORT.InterOpThreads}
}

func (c *Config) logLevel() (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(c.Log.Level))
	return l, err
}

func (c *Config) logger() *slog.Logger {
	level, _ := c.logLevel()
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// modelOptions are the bundle options this configuration sets.
// modelDirs are the folders of the bundles served beside Bundle: each entry of Models that
// holds a manifest.json, and every subfolder holding one of each other entry (in name order),
// Bundle's own folder left out.
func (c *Config) modelDirs() ([]string, error) {
	var dirs []string
	same := func(a, b string) bool {
		x, err1 := filepath.Abs(a)
		y, err2 := filepath.Abs(b)
		return err1 == nil && err2 == nil && x == y
	}
	isBundle := func(dir string) bool {
		st, err := os.Stat(filepath.Join(dir, "manifest.json"))
		return err == nil && !st.IsDir()
	}
	for _, m := range c.Models {
		if st, err := os.Stat(m); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%q is not a folder", m)
		}
		if isBundle(m) {
			if !same(m, c.Bundle) {
				dirs = append(dirs, m)
			}
			continue
		}
		entries, err := os.ReadDir(m)
		if err != nil {
			return nil, err
		}
		found := 0
		for _, e := range entries {
			if sub := filepath.Join(m, e.Name()); e.IsDir() && isBundle(sub) {
				if found++; !same(sub, c.Bundle) {
					dirs = append(dirs, sub)
				}
			}
		}
		if found == 0 {
			return nil, fmt.Errorf("%q holds no manifest.json, and none of its subfolders does", m)
		}
	}
	return dirs, nil
}

func (c *Config) modelOptions() pipeline.Options {
	o := pipeline.Options{
		MaxRegions: c.Limits.MaxRegions, MaxTexts: c.Limits.MaxTexts, MaxTextLength: c.Limits.MaxTextLength,
		MaxConcurrent: c.Limits.MaxConcurrent, VerifyChecksums: true,
		BatchPairs: c.Limits.BatchPairs, BatchWait: c.Limits.BatchWait,
		DetectorOnCUDA: c.ORT.DetectorOnCUDA,
		Decode:         detector.DecodeLimits{MaxBytes: c.Limits.MaxImageBytes, MaxPixels: c.Limits.MaxImagePixels},
		ImageMemory:    c.Limits.ImageMemory,
		CacheBytes:     c.Detector.CacheBytes,
	}
	d := c.Detector
	if d.NMSIoU > 0 {
		o.Selection.NMSIoU = &d.NMSIoU
	}
	if d.MinConfidence >= 0 {
		o.Selection.MinConfidence = &d.MinConfidence
	}
	if d.MinBoxes > 0 {
		o.Selection.MinBoxes = &d.MinBoxes
	}
	if d.MaxBoxes > 0 {
		o.Selection.MaxBoxes = &d.MaxBoxes
	}
	if d.MinBoxSize >= 0 {
		o.Selection.MinBoxSize = &d.MinBoxSize
	}
	return o
}
