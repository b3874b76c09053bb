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

// TestDependencies pins the import graph of docs/style.md: dependencies point one way and only
// the runtime package touches ONNX Runtime (and cgo).
func TestDependencies(t *testing.T) {
	t.Parallel()
	pkgs := importGraph(t)
	mustHave := func(path string) {
		if p := pkgs[path]; p == nil || p.DepOnly {
			t.Fatalf("package %s is not in the module's go list ./... output: the rules below would check nothing", path)
		}
	}
	for _, p := range []string{runtime, module + "/api", module + "/models", module + "/detector",
		module + "/textproc", module + "/heads", module + "/cmd/uniter"} {
		mustHave(p)
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

	forbidden := map[string][]string{
		// The pure rooms: no native code, no HTTP, no model composition.
		module + "/detector": {runtime, ortPkg, module + "/api", module + "/models", ginPkg, module + "/web"},
		module + "/textproc": {runtime, ortPkg, module + "/api", module + "/models", ginPkg, module + "/web"},
		module + "/heads":    {runtime, ortPkg, module + "/api", module + "/models", ginPkg, module + "/web"},
		// models composes the rooms below it and knows nothing of HTTP.
		module + "/models": {module + "/api", ginPkg, module + "/web"},
		// runtime is the bottom of the graph.
		runtime: {module + "/api", module + "/models", module + "/detector", module + "/textproc", module + "/heads", ginPkg},
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

	t.Run("api", func(t *testing.T) {
		if slices.Contains(pkgs[module+"/api"].Imports, ortPkg) {
			t.Errorf("%s imports %s directly", module+"/api", ortPkg)
		}
	})

	t.Run("chains are found", func(t *testing.T) {
		// The rules above only mean something if a real dependency is detected.
		if importChain(pkgs, module+"/cmd/uniter", ortPkg) == nil {
			t.Errorf("no chain from cmd/uniter to %s found: the graph walk is broken", ortPkg)
		}
	})
}
