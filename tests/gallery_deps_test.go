package tests

import (
	"strings"
	"testing"
)

// TestGalleryDependencies pins the gallery's place in the import graph: the store and the
// readers of outside formats are pure (no model, no native code, no HTTP); retrieval composes
// the store with the model and knows nothing of HTTP.
func TestGalleryDependencies(t *testing.T) {
	t.Parallel()
	pkgs := importGraph(t)
	g := module + "/gallery"
	rules := map[string][]string{
		g:                    {module + "/models", runtime, ortPkg, module + "/api", ginPkg},
		g + "/lmdb":          {module + "/models", runtime, ortPkg, module + "/api", ginPkg, g},
		g + "/featimport":    {module + "/models", runtime, ortPkg, module + "/api", ginPkg},
		g + "/retrieval":     {module + "/api", ginPkg, module + "/web"},
		module + "/models":   {g},
		module + "/detector": {g},
	}
	for from, bad := range rules {
		if p := pkgs[from]; p == nil || p.DepOnly {
			t.Fatalf("package %s is not in go list ./...: the rule checks nothing", from)
		}
		for _, to := range bad {
			if chain := importChain(pkgs, from, to); chain != nil {
				t.Errorf("%s depends on %s: %s", from, to, strings.Join(chain, " → "))
			}
		}
	}
}
