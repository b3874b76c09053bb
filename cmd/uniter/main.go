// Command uniter serves UNITER over HTTP and runs its pipelines from the command line.
// It only wires the packages together: configuration, the ONNX Runtime environment, the
// bundle, the gallery, the HTTP server; each subcommand parses its flags, calls one package
// function and prints its result.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/pipeline"
	ort "github.com/uniter-serve/uniter/runtime"
	"github.com/uniter-serve/uniter/web"
)

// rootFlags map flag names to config keys.
var rootFlags = map[string]string{
	"bundle":      "bundle",
	"provider":    "ort.provider",
	"ort-library": "ort.library",
	"log-level":   "log.level",
	"addr":        "addr",
	"data-dir":    "data_dir",
	"model":       "models",
	// serve's
	"insecure-no-auth": "auth.insecure_no_auth",
}

func main() {
	if err := newRoot().ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "uniter:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var configFile string
	root := &cobra.Command{
		Use:           "uniter",
		Short:         "UNITER image-text matching, retrieval and word-region alignment",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&configFile, "config", "", "config file (YAML, JSON or TOML)")
	pf.String("bundle", "", "model bundle folder: the default model (config bundle)")
	pf.StringSlice("model", nil, "more bundles to serve beside it, by folder or a folder of bundles; repeat for several (config models)")
	pf.String("provider", "", "execution provider: cpu or cuda (config ort.provider)")
	pf.String("ort-library", "", "path to libonnxruntime.so (config ort.library)")
	pf.String("log-level", "", "debug, info, warn or error (config log.level)")
	pf.String("data-dir", "", "gallery folder (config data_dir, default ./data)")
	load := func(cmd *cobra.Command) (*Config, error) {
		return loadConfig(configFile, cmd.Flags(), rootFlags)
	}
	root.AddCommand(serveCmd(load), matchCmd(load), alignCmd(load), regionsCmd(load), runGraphCmd(load), extractCmd(load), evalCmd(load))
	root.AddCommand(synthCmd(), keygenCmd())
	root.AddCommand(indexCmd(load), indexTextsCmd(load), importFeaturesCmd(load), evalGalleryCmd(load), searchCmd(load))
	root.AddCommand(attentionStatsCmd(load))
	root.AddCommand(vqaCmd(load), entailCmd(load), nlvr2Cmd(load), referCmd(load))
	root.AddCommand(healthcheckCmd(load), profileSummaryCmd())
	return root
}

// service is an open environment and its bundles; close it once.
type service struct {
	env    *ort.Environment
	bundle *pipeline.Bundle // the default model
	info   api.ModelInfo
	extras []*pipeline.Bundle // config models, each with its own graph queue
	infos  []api.ModelInfo    // of extras
}

// pick is the bundle a command names with --model-name; "" is the default.
func (s *service) pick(name string) (*pipeline.Bundle, api.ModelInfo, error) {
	if name == "" || name == s.info.Name {
		return s.bundle, s.info, nil
	}
	names := []string{s.info.Name}
	for i, b := range s.extras {
		if s.infos[i].Name == name {
			return b, s.infos[i], nil
		}
		names = append(names, s.infos[i].Name)
	}
	return nil, api.ModelInfo{}, fmt.Errorf("model %q is not loaded; loaded: %s (config bundle and models)", name, strings.Join(names, ", "))
}

func openService(cfg *Config, log *slog.Logger) (*service, error) {
	env, err := ort.NewEnvironment(cfg.ortConfig(), log)
	if err != nil {
		return nil, err
	}
	if cfg.ORT.ProfileDir != "" {
		env.ProfileTo(cfg.ORT.ProfileDir)
		log.Info("ONNX Runtime profiles every graph run; each graph's profile is written when the process stops", "dir", cfg.ORT.ProfileDir)
	}
	b, err := pipeline.Load(env, cfg.Bundle, cfg.modelOptions())
	if err != nil {
		return nil, errors.Join(err, env.Close())
	}
	s := &service{env: env, bundle: b}
	s.info = api.DescribeModel(b, env.Provider(), env.FallbackReason(), env.Version())
	dirs, err := cfg.modelDirs()
	if err != nil {
		return nil, errors.Join(err, s.Close())
	}
	names := map[string]string{b.Manifest.Name: cfg.Bundle}
	for _, dir := range dirs {
		m, err := pipeline.Load(env, dir, cfg.modelOptions())
		if err != nil {
			return nil, errors.Join(fmt.Errorf("config models: %w", err), s.Close())
		}
		s.extras = append(s.extras, m)
		if other, taken := names[m.Manifest.Name]; taken {
			return nil, errors.Join(fmt.Errorf("config models: %s and %s are both named %q; requests could not tell them apart", other, dir, m.Manifest.Name), s.Close())
		}
		names[m.Manifest.Name] = dir
		// A fine-tuned checkpoint's bundle usually has no detector: it reads images with the
		// default model's, when the features agree.
		if !m.HasDetector() && b.HasDetector() && m.Manifest.Model.FeatureDim == b.Manifest.Model.FeatureDim {
			if err := m.BorrowDetector(b); err != nil {
				return nil, errors.Join(err, s.Close())
			}
		}
		s.infos = append(s.infos, api.DescribeModel(m, env.Provider(), env.FallbackReason(), env.Version()))
	}
	return s, nil
}

func (s *service) Close() error {
	errs := []error{s.bundle.Close()}
	for _, m := range s.extras {
		errs = append(errs, m.Close())
	}
	return errors.Join(append(errs, s.env.Close())...)
}

func serveCmd(load func(*cobra.Command) (*Config, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "serve the HTTP API",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg)
		},
	}
	cmd.Flags().String("addr", "", "listen address (config addr, default 127.0.0.1:8080)")
	cmd.Flags().Bool("insecure-no-auth", false, "serve beyond loopback without API keys (config auth.insecure_no_auth)")
	return cmd
}

func serve(parent context.Context, cfg *Config) error {
	log := cfg.logger()
	access, err := cfg.access()
	if err != nil {
		return err
	}
	if len(access.Keys) == 0 {
		log.Warn("no API keys: anyone who reaches this address may read and change the gallery", "addr", cfg.Addr)
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	svc, err := openService(cfg, log)
	if err != nil {
		return err
	}
	defer func() { // last: every request has returned (srv.Wait below) and every run with it
		if err := svc.Close(); err != nil {
			log.Error("closing model", "err", err)
		}
	}()
	gal, err := openGallery(ctx, cfg, svc)
	if err != nil {
		return err
	}
	log.Info("gallery", "backend", cfg.Gallery.Backend, "at", gal.where(cfg))
	defer func() {
		if err := gal.Close(); err != nil {
			log.Error("closing gallery", "err", err)
		}
	}()
	// The demo filler (gallery.demo) stops, and is waited for, before the gallery closes.
	demoCtx, cancelDemo := context.WithCancel(ctx)
	var demo sync.WaitGroup
	defer func() { cancelDemo(); demo.Wait() }()
	srv := api.New(api.Config{MaxBodyBytes: cfg.Limits.MaxBodyBytes, RequestTimeout: cfg.Limits.RequestTimeout,
		MaxInFlight: cfg.Limits.MaxConcurrent + cfg.Limits.MaxQueue, Access: access,
		IndexHTML: web.IndexHTML, Assets: web.Assets}, svc.bundle, svc.info, api.LabelsFor(svc.bundle), log)
	for i, m := range svc.extras {
		if err := srv.AddModel(m, svc.infos[i], api.LabelsFor(m)); err != nil {
			return err
		}
	}
	srv.SetGallery(gal.service)
	demoProgress := &api.DemoProgress{}
	if cfg.Gallery.Demo {
		srv.SetDemo(demoProgress)
	}
	// Every request's context derives from requests, so that the end of the shutdown grace
	// cancels the model work still running (ONNX Runtime runs are terminated).
	requests, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	httpServer := &http.Server{
		Addr: cfg.Addr, Handler: srv.Handler(),
		BaseContext:       func(net.Listener) context.Context { return requests },
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: cfg.Limits.RequestTimeout,
		WriteTimeout: cfg.Limits.RequestTimeout + 10*time.Second, IdleTimeout: 120 * time.Second,
	}
	// Take the port before warming up, so that a taken address fails at once.
	listener, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("config addr: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- httpServer.Serve(listener) }() // exits when the server is shut down
	log.Info("serving", "addr", cfg.Addr, "model", svc.info.Name, "more_models", len(svc.extras), "provider", svc.info.Provider,
		"random_weights", svc.info.RandomWeights, "api_keys", len(access.Keys))
	for _, b := range append([]*pipeline.Bundle{svc.bundle}, svc.extras...) {
		if err := b.Warmup(ctx); err != nil {
			_ = httpServer.Close()
			return fmt.Errorf("warm-up of %s: %w", b.Manifest.Name, err)
		}
	}
	srv.SetReady(true)
	log.Info("ready")
	if cfg.Gallery.Demo {
		demo.Go(func() { fillDemo(demoCtx, cfg, gal, demoProgress, log) })
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	return shutdown(httpServer, srv, cancelRequests, cfg.shutdownGrace(), log)
}

// shutdown stops taking requests and lets those in flight finish within grace (no request
// may run longer: grace exceeds the request timeout). Past it, their work is cancelled and
// slow connections closed. It returns once no handler runs, so that the model and the gallery
// can be closed safely after it.
func shutdown(httpServer *http.Server, srv *api.Server, cancelRequests context.CancelFunc, grace time.Duration, log *slog.Logger) error {
	srv.SetReady(false)
	log.Info("shutting down", "grace", grace)
	graceCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := httpServer.Shutdown(graceCtx); err != nil {
		log.Warn("shutdown grace over: cancelling the requests still in flight and closing their connections", "err", err)
		cancelRequests()
		_ = httpServer.Close()
	}
	// Cancelled work returns within moments (ONNX Runtime terminates its runs); bound the wait
	// all the same, and say so if it was not enough.
	drain, cancelDrain := context.WithTimeout(context.Background(), shutdownMargin)
	defer cancelDrain()
	if err := srv.Wait(drain); err != nil {
		cancelRequests()
		if err := srv.Wait(context.Background()); err != nil {
			return err
		}
	}
	log.Info("stopped")
	return nil
}
