package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/internal/testenv"
)

const (
	module  = "github.com/uniter-serve/uniter"
	ortPkg  = "github.com/yalue/onnxruntime_go"
	ginPkg  = "github.com/gin-gonic/gin"
	runtime = module + "/runtime"
)

// listedPackage is the part of `go list -json` output the rules need.
type listedPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	CgoFiles     []string
	DepOnly      bool
}

// importGraph lists every package of the module and all their dependencies.
func importGraph(t *testing.T) map[string]*listedPackage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-json", "./...")
	cmd.Dir = testenv.RepoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps -json ./...: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]*listedPackage{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = &p
	}
	return pkgs
}

// importChain is the shortest chain of (non-test) imports from from to to, nil if there is none.
func importChain(pkgs map[string]*listedPackage, from, to string) []string {
	parent := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var chain []string
			for p := cur; p != ""; p = parent[p] {
				chain = append(chain, p)
			}
			slices.Reverse(chain)
			return chain
		}
		if p := pkgs[cur]; p != nil {
			for _, imp := range p.Imports {
				if _, seen := parent[imp]; !seen {
					parent[imp] = cur
					queue = append(queue, imp)
				}
			}
		}
	}
	return nil
}

// TestDependencies pins the import graph (docs/architecture.md): dependencies point one way,
// the request path holds no offline code, HTTP stays in api, and only runtime touches ONNX
// Runtime (and cgo).
func TestDependencies(t *testing.T) {
	t.Parallel()
	pkgs := importGraph(t)
	pkg := func(name string) string { return module + "/" + name }
	var (
		api, pipeline, detector, textproc, heads = pkg("api"), pkg("pipeline"), pkg("detector"), pkg("textproc"), pkg("heads")
		gallery, retrieval, ingest, featimport   = pkg("gallery"), pkg("gallery/retrieval"), pkg("gallery/ingest"), pkg("gallery/featimport")
		lmdb, shapes, offline, web, progress     = pkg("gallery/lmdb"), pkg("shapes"), pkg("offline"), pkg("web"), pkg("internal/progress")
		cmd                                      = pkg("cmd/uniter")
	)
	for _, p := range []string{runtime, api, pipeline, detector, textproc, heads, gallery, retrieval, ingest, featimport,
		lmdb, shapes, offline, web, progress, cmd} {
		if q := pkgs[p]; q == nil || q.DepOnly {
			t.Fatalf("package %s is not in the module's go list ./... output: the rules below would check nothing", p)
		}
	}

	t.Run("only runtime imports onnxruntime_go", func(t *testing.T) {
		if !slices.Contains(pkgs[runtime].Imports, ortPkg) {
			t.Errorf("%s does not import %s: update this test if the binding moved", runtime, ortPkg)
		}
		for path, p := range pkgs {
			if !strings.HasPrefix(path, module+"/") || path == runtime {
				continue
			}
			for kind, imports := range map[string][]string{"imports": p.Imports, "test imports": p.TestImports,
				"external test imports": p.XTestImports} {
				if slices.Contains(imports, ortPkg) {
					t.Errorf("%s %s %s: only %s may", path, kind, ortPkg, runtime)
				}
			}
			if len(p.CgoFiles) > 0 {
				t.Errorf("%s uses cgo (%v): only %s crosses into native code", path, p.CgoFiles, runtime)
			}
		}
	})

	// offlineCode is what runs over whole data sets or files, never on a request.
	offlineCode := []string{offline, shapes, ingest, featimport, lmdb, progress}
	// http is what only api (and the binary) may know of.
	http := []string{api, ginPkg, web}
	forbidden := map[string][]string{
		// The request path: the HTTP layer and everything below it hold no offline code.
		api:       offlineCode,
		pipeline:  slices.Concat(offlineCode, http, []string{gallery, retrieval}),
		retrieval: slices.Concat(offlineCode, http),
		gallery:   slices.Concat(offlineCode, http, []string{pipeline, runtime, ortPkg}),
		// Pure packages: no native code, no model composition, no HTTP, no offline code.
		detector: slices.Concat(offlineCode, http, []string{runtime, ortPkg, pipeline, gallery}),
		textproc: slices.Concat(offlineCode, http, []string{runtime, ortPkg, pipeline, gallery, detector}),
		heads:    slices.Concat(offlineCode, http, []string{runtime, ortPkg, pipeline, gallery, detector, textproc}),
		// runtime is the bottom of the graph.
		runtime: slices.Concat(offlineCode, http, []string{pipeline, detector, textproc, heads, gallery}),
		// The offline packages know nothing of HTTP; the generator and the file readers know no model.
		offline:    http,
		ingest:     slices.Concat(http, []string{offline, shapes}),
		shapes:     slices.Concat(http, []string{pipeline, runtime, ortPkg, detector, gallery, offline}),
		featimport: slices.Concat(http, []string{pipeline, runtime, ortPkg, offline, shapes}),
		lmdb:       slices.Concat(http, []string{pipeline, runtime, ortPkg, gallery}),
		progress:   {pipeline, runtime, gallery, offline, api},
	}
	for from, bad := range forbidden {
		t.Run(strings.TrimPrefix(from, module+"/"), func(t *testing.T) {
			for _, to := range bad {
				if chain := importChain(pkgs, from, to); chain != nil {
					t.Errorf("%s depends on %s: %s", from, to, strings.Join(chain, " → "))
				}
			}
		})
	}

	t.Run("chains are found", func(t *testing.T) {
		// The rules above only mean something if real dependencies are detected.
		for _, c := range [][2]string{{cmd, ortPkg}, {cmd, offline}, {offline, shapes}, {api, pipeline}} {
			if importChain(pkgs, c[0], c[1]) == nil {
				t.Errorf("no chain from %s to %s found: the graph walk is broken", c[0], c[1])
			}
		}
	})
}
