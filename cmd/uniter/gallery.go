package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/retrieval"
)

// GalleryConfig are the gallery keys (gallery.*).
type GalleryConfig struct {
	Backend       string `mapstructure:"backend"`  // bbolt (data_dir) or postgres (dsn)
	DSN           string `mapstructure:"dsn"`      // PostgreSQL connection string; never logged
	DSNFile       string `mapstructure:"dsn_file"` // a file holding it (a mounted secret)
	ThumbnailSize int    `mapstructure:"thumbnail_size"`
	MaxTextBatch  int    `mapstructure:"max_text_batch"`
	// Demo fills an empty gallery with Shapes World test-100 in the background at `serve`.
	Demo bool `mapstructure:"demo"`
}

// Gallery backends.
const (
	backendBolt     = "bbolt"
	backendPostgres = "postgres"
)

// SearchConfig are the search keys (search.*).
type SearchConfig struct {
	MaxLimit      int `mapstructure:"max_limit"`
	MaxOffset     int `mapstructure:"max_offset"`
	Candidates    int `mapstructure:"candidates"`
	MaxCandidates int `mapstructure:"max_candidates"`
	BatchPairs    int `mapstructure:"batch_pairs"`
	Workers       int `mapstructure:"workers"`
}

func (c *Config) validateGallery() []error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("config %s: %s", key, fmt.Sprintf(format, a...)))
	}
	switch c.Gallery.Backend {
	case backendBolt:
		if c.DataDir == "" {
			bad("data_dir", "must name a folder (the gallery lives there)")
		}
	case backendPostgres:
		if (c.Gallery.DSN == "") == (c.Gallery.DSNFile == "") {
			bad("gallery.dsn", "gallery.backend postgres needs exactly one of gallery.dsn (UNITER_GALLERY_DSN) and gallery.dsn_file")
		}
	default:
		bad("gallery.backend", "%q: want %s or %s", c.Gallery.Backend, backendBolt, backendPostgres)
	}
	for key, v := range map[string]int{"gallery.thumbnail_size": c.Gallery.ThumbnailSize, "gallery.max_text_batch": c.Gallery.MaxTextBatch,
		"search.max_limit": c.Search.MaxLimit, "search.max_offset": c.Search.MaxOffset, "search.candidates": c.Search.Candidates, "search.max_candidates": c.Search.MaxCandidates,
		"search.batch_pairs": c.Search.BatchPairs, "search.workers": c.Search.Workers} {
		if v <= 0 {
			bad(key, "must be positive, got %d", v)
		}
	}
	if c.Gallery.ThumbnailSize > 2048 {
		bad("gallery.thumbnail_size", "%d: at most 2048 pixels", c.Gallery.ThumbnailSize)
	}
	if c.Search.Candidates > c.Search.MaxCandidates {
		bad("search.candidates", "%d is above search.max_candidates (%d)", c.Search.Candidates, c.Search.MaxCandidates)
	}
	return errs
}

// galleryService is the open gallery of a command: the store and the service over it.
type galleryService struct {
	store   gallery.Store
	service *retrieval.Service
}

// openStore opens the configured store: the bbolt file in data_dir, or the PostgreSQL
// database of gallery.dsn (the DSN stays out of every message). unnamed are the model's
// labels that name nothing (no term index postings for them).
func openStore(ctx context.Context, cfg *Config, featureDim int, unnamed gallery.Unnamed) (gallery.Store, error) {
	opts := gallery.Options{FeatureDim: featureDim, Unnamed: &unnamed}
	if cfg.Gallery.Backend != backendPostgres {
		st, err := gallery.Open(cfg.DataDir, opts)
		if err != nil {
			return nil, fmt.Errorf("config data_dir: %w", err)
		}
		return st, nil
	}
	dsn := cfg.Gallery.DSN
	if cfg.Gallery.DSNFile != "" {
		raw, err := os.ReadFile(cfg.Gallery.DSNFile)
		if err != nil {
			return nil, fmt.Errorf("config gallery.dsn_file: %w", err)
		}
		dsn = strings.TrimSpace(string(raw))
	}
	st, err := gallery.OpenPostgres(ctx, dsn, opts)
	if err != nil {
		return nil, fmt.Errorf("config gallery.dsn: %w", err)
	}
	return st, nil
}

// openGallery opens the configured gallery for the loaded model; close it once.
func openGallery(ctx context.Context, cfg *Config, svc *service) (*galleryService, error) {
	labels := api.LabelsFor(svc.bundle)
	st, err := openStore(ctx, cfg, svc.bundle.Manifest.Model.FeatureDim,
		gallery.Unnamed{Class: labels.Background, Attr: noAttribute(labels.Attributes)})
	if err != nil {
		return nil, err
	}
	rcfg := retrieval.Config{
		Source:        "detector:" + svc.info.Name,
		Labels:        retrieval.Labels{Classes: labels.Classes, Attributes: labels.Attributes, Background: labels.Background, NoAttribute: noAttribute(labels.Attributes)},
		ThumbnailSize: cfg.Gallery.ThumbnailSize, MaxTextBatch: cfg.Gallery.MaxTextBatch,
		MaxLimit: cfg.Search.MaxLimit, MaxOffset: cfg.Search.MaxOffset, Candidates: cfg.Search.Candidates,
		MaxCandidates: cfg.Search.MaxCandidates, BatchPairs: cfg.Search.BatchPairs, Workers: cfg.Search.Workers,
	}
	return &galleryService{store: st, service: retrieval.New(st, svc.bundle, rcfg)}, nil
}

// noAttribute is the index of the "no attribute" entry of bottom-up-attention's attribute
// list (index 0, "__no_attribute__"), −1 when the list has none.
func noAttribute(attrs []string) int {
	if len(attrs) > 0 && attrs[0] == "__no_attribute__" {
		return 0
	}
	return -1
}

// where names the gallery for the log: the bbolt file's folder, or the database without its
// password.
func (g *galleryService) where(cfg *Config) string {
	if pg, ok := g.store.(*gallery.Postgres); ok {
		return pg.Target()
	}
	return cfg.DataDir
}

func (g *galleryService) Close() error {
	if g == nil {
		return nil
	}
	return g.store.Close()
}

// withGallery runs fn with the loaded bundle and the gallery of data_dir, and closes the gallery
// after it (fn's error first).
func withGallery(cmd *cobra.Command, load loader, fn func(cfg *Config, s *service, g *galleryService) error) error {
	cfg, err := load(cmd)
	if err != nil {
		return err
	}
	return withService(cmd, load, func(s *service) error {
		g, err := openGallery(cmd.Context(), cfg, s)
		if err != nil {
			return err
		}
		return closeAfter(fn(cfg, s, g), g)
	})
}
