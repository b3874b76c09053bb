package api_test

import (
	"log/slog"
	"testing"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/retrieval"
	"github.com/uniter-serve/uniter/internal/testenv"
	"github.com/uniter-serve/uniter/pipeline"
)

// testServer is what a test needs of a server over the fixture bundle.
type testServer struct {
	*api.Server
	bundle *pipeline.Bundle
	store  *gallery.Bolt      // nil without a gallery
	svc    *retrieval.Service // nil without a gallery
}

// serverOptions say how a test server differs from the plain one: the fixture bundle with at
// most 10 regions and 4 texts, a 16 MiB detector cache, no gallery, ready.
type serverOptions struct {
	config     api.Config
	pipeline   *pipeline.Options // replaces the plain options when set
	gallery    bool              // with a bbolt gallery in galleryDir (a temporary folder when "")
	galleryDir string
	search     retrieval.Config // the gallery's search settings; Source and Labels are set here
	log        *slog.Logger
	tasks      bool // also serve the fine-tuned task fixtures (testdata/bundles/tiny-<layout>)
}

// taskBundles are the fixture bundles of the official fine-tuned classes, by manifest name.
var taskBundles = []string{"tiny-retrieval", "tiny-vqa", "tiny-ve", "tiny-re", "tiny-nlvr2-paired", "tiny-nlvr2-triplet", "tiny-nlvr2-paired-attn"}

// newTestServer builds a server the way cmd/uniter wires one, closing everything at cleanup.
func newTestServer(t testing.TB, o serverOptions) *testServer {
	t.Helper()
	env := testenv.Env(t)
	opts := pipeline.Options{MaxRegions: 10, MaxTexts: 4, CacheBytes: 16 << 20}
	if o.pipeline != nil {
		opts = *o.pipeline
	}
	b, err := pipeline.Load(env, testenv.FixtureBundle(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	labels := api.LabelsFor(b)
	ts := &testServer{bundle: b}
	ts.Server = api.New(o.config, b, api.DescribeModel(b, env.Provider(), "", env.Version()), labels, o.log)
	if o.tasks {
		for _, name := range taskBundles {
			tb, err := pipeline.Load(env, testenv.Path(t, "testdata", "bundles", name), opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tb.Close() })
			if err := ts.AddModel(tb, api.DescribeModel(tb, env.Provider(), "", env.Version()), api.LabelsFor(tb)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if o.gallery {
		dir := o.galleryDir
		if dir == "" {
			dir = t.TempDir()
		}
		if ts.store, err = gallery.Open(dir, gallery.Options{FeatureDim: b.Manifest.Model.FeatureDim}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ts.store.Close() })
		cfg := o.search
		cfg.Source = "detector:tiny-random"
		cfg.Labels = retrieval.Labels{Classes: labels.Classes, Attributes: labels.Attributes, Background: labels.Background}
		ts.svc = retrieval.New(ts.store, b, cfg)
		ts.SetGallery(ts.svc)
	}
	ts.SetReady(true)
	return ts
}

// parseKeys turns key entries into keys.
func parseKeys(t testing.TB, entries ...string) []api.Key {
	t.Helper()
	keys := make([]api.Key, 0, len(entries))
	for _, e := range entries {
		k, err := api.ParseKey(e)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}
