package tests

// TestDeploy validates the Kubernetes manifests under deploy/ offline: no cluster, no schema
// download. Every YAML document is decoded strictly into the official API types of its kind
// (k8s.io/api: unknown or wrongly cased fields fail), each kustomization is rendered the way
// `kubectl apply -k` would (its resources, its strategic-merge patches), and the rendered
// objects are checked against each other and against what the image and the server define:
// the Dockerfiles (port, user, entrypoint, environment), the image tags the build scripts give,
// the configuration keys (docs/uniter.example.yaml) and the shutdown grace
// (docs/operations.md).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/uniter-serve/uniter/internal/testenv"
)

const (
	// deployMeasuredRSS is the server's peak resident memory under load with the default model
	// and the default 256 MiB detector cache (docs/benchmarks.md, HTTP load: 300–460 MiB): a
	// server container's memory request must cover it.
	deployMeasuredRSS = "460Mi"
	// deployShutdownMargin is what `uniter serve` adds to limits.request_timeout on SIGTERM
	// (the grace), and again as the bound on draining cancelled work (cmd/uniter/config.go
	// shutdownMargin; docs/operations.md, Shutdown).
	deployShutdownMargin = 5 * time.Second
)

// deployExtraEnv are the variables other than configuration keys that a manifest may set.
var deployExtraEnv = map[string]string{
	"GOMAXPROCS": "the Go runtime",
	"GOMEMLIMIT": "the Go runtime",
	"GODEBUG":    "the Go runtime",
}

// deploySecretEnv are variables whose values are secrets: a manifest takes them from a Secret,
// never as a literal value.
var deploySecretEnv = []string{"UNITER_AUTH_KEYS", "UNITER_GALLERY_DSN"}

// deployKinds are the kinds a manifest may hold, by apiVersion and kind, with the type it is
// decoded into.
var deployKinds = map[string]func() any{
	"apps/v1 Deployment":                            func() any { return new(appsv1.Deployment) },
	"v1 Service":                                    func() any { return new(corev1.Service) },
	"v1 Secret":                                     func() any { return new(corev1.Secret) },
	"autoscaling/v2 HorizontalPodAutoscaler":        func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"policy/v1 PodDisruptionBudget":                 func() any { return new(policyv1.PodDisruptionBudget) },
	"batch/v1 Job":                                  func() any { return new(batchv1.Job) },
	"kustomize.config.k8s.io/v1beta1 Kustomization": func() any { return new(deployKustomization) },
}

// deployKustomization is the part of kustomize's Kustomization that deploy/ uses; anything
// else in a kustomization.yaml fails the strict decoding (add the field here when it is used).
type deployKustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources,omitempty"`
	Patches    []struct {
		Path   string `json:"path"`
		Target *struct {
			Group   string `json:"group,omitempty"`
			Version string `json:"version,omitempty"`
			Kind    string `json:"kind,omitempty"`
			Name    string `json:"name,omitempty"`
		} `json:"target,omitempty"`
	} `json:"patches,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
}

// deployDoc is one YAML document of a file under deploy/.
type deployDoc struct {
	file  string // relative to the repository root
	index int    // the document's place in its file, from 0
	typ   string // "apiVersion kind"
	name  string
	json  []byte
	obj   any // the typed object
}

func (d *deployDoc) String() string {
	return fmt.Sprintf("%s#%d (%s %s)", d.file, d.index, d.typ, d.name)
}

func TestDeploy(t *testing.T) {
	root := testenv.RepoRoot(t)
	docs := deployLoad(t, root)
	if len(docs) == 0 {
		t.Fatal("no YAML document under deploy/")
	}
	byFile := map[string][]*deployDoc{}
	for _, d := range docs {
		byFile[d.file] = append(byFile[d.file], d)
	}
	cpu := deployDockerfile(t, root, "Dockerfile")
	cuda := deployDockerfile(t, root, "Dockerfile.cuda")
	env := &deployEnv{known: deployConfigEnv(t, root)}
	images := map[string]*deployImage{ // the tags the build gives each Dockerfile's image
		deployTag(t, root, "scripts/image.sh", `IMAGE=\$\{IMAGE:-([^}\s]+)\}`):            cpu,
		deployTag(t, root, "Dockerfile.cuda", `docker build -f Dockerfile.cuda -t (\S+)`): cuda,
	}
	timeout := deployRequestTimeout(t, root)

	kustomizations := deployKustomizations(docs)
	t.Run("kustomizations list every file", func(t *testing.T) {
		deployCheckListing(t, root, docs, kustomizations)
		for _, dir := range slices.Sorted(maps.Keys(kustomizations)) {
			if _, err := deployRender(root, dir, byFile, kustomizations); err != nil {
				t.Error(err)
			}
		}
	})
	trees := []struct {
		dir        string
		serverTag  string // the image the Deployment runs
		gpu        bool
		dockerfile *deployImage
	}{
		{"deploy/kubernetes", "uniter:latest", false, cpu},
		{"deploy/kubernetes/gpu", "uniter:cuda", true, cuda},
	}
	for _, tr := range trees {
		t.Run(tr.dir, func(t *testing.T) {
			if images[tr.serverTag] != tr.dockerfile {
				t.Fatalf("the build tags %v; want %s to be %s's image", slices.Sorted(maps.Keys(images)), tr.serverTag, tr.dockerfile.path)
			}
			objs, err := deployRender(root, tr.dir, byFile, kustomizations)
			if err != nil {
				t.Fatal(err)
			}
			c := &deployTree{t: t, objs: objs, images: images, env: env, timeout: timeout}
			c.check(tr.serverTag, tr.gpu)
		})
	}
}

// deployLoad reads and strictly decodes every YAML document under deploy/.
func deployLoad(t *testing.T, root string) []*deployDoc {
	t.Helper()
	var docs []*deployDoc
	sep := regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)
	err := filepath.WalkDir(filepath.Join(root, "deploy"), func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !deployIsYAML(path) {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, part := range sep.Split(string(data), -1) {
			j, err := yaml.YAMLToJSONStrict([]byte(part))
			if err != nil {
				t.Errorf("%s#%d: %v", rel, i, err)
				continue
			}
			if string(bytes.TrimSpace(j)) == "null" { // comments only
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(j, &head); err != nil {
				t.Errorf("%s#%d: not an object: %v", rel, i, err)
				continue
			}
			d := &deployDoc{file: rel, index: i, typ: head.APIVersion + " " + head.Kind, name: head.Metadata.Name, json: j}
			newObj, ok := deployKinds[d.typ]
			if !ok {
				t.Errorf("%s: unknown kind %q (known: %v)", d, d.typ, slices.Sorted(maps.Keys(deployKinds)))
				continue
			}
			if (head.Kind == "Kustomization") != (filepath.Base(path) == "kustomization.yaml") {
				t.Errorf("%s: a Kustomization is kustomization.yaml, and only it", d)
				continue
			}
			d.obj = newObj()
			if err := deployDecodeStrict(j, d.obj); err != nil {
				t.Errorf("%s: %v", d, err)
				continue
			}
			if head.Kind != "Kustomization" && d.name == "" {
				t.Errorf("%s: no metadata.name", d)
			}
			docs = append(docs, d)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

func deployIsYAML(path string) bool {
	return strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")
}

// deployDecodeStrict decodes JSON into the typed object with unknown fields refused, then
// checks that every field given is spelled exactly as the type spells it: encoding/json
// matches names case-insensitively, the API server does not.
func deployDecodeStrict(data []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the object")
	}
	back, err := json.Marshal(into)
	if err != nil {
		return err
	}
	var in, out any
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	if err := json.Unmarshal(back, &out); err != nil {
		return err
	}
	return deploySameNames("", in, out)
}

// deploySameNames reports a field of in that out (the typed object, marshalled) lacks; fields
// at their zero value may be dropped by omitempty.
func deploySameNames(path string, in, out any) error {
	switch in := in.(type) {
	case map[string]any:
		o, _ := out.(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(in)) {
			ov, ok := o[k]
			if !ok {
				if deployIsZero(in[k]) {
					continue
				}
				return fmt.Errorf("field %s%s is not spelled as in the API (its case?)", path, k)
			}
			if err := deploySameNames(path+k+".", in[k], ov); err != nil {
				return err
			}
		}
	case []any:
		if o, ok := out.([]any); ok && len(o) == len(in) {
			for i := range in {
				if err := deploySameNames(fmt.Sprintf("%s%d.", path, i), in[i], o[i]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func deployIsZero(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return !v
	case float64:
		return v == 0
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

// deployKustomizations are the kustomization.yaml files by folder (relative, slash-separated).
func deployKustomizations(docs []*deployDoc) map[string]*deployKustomization {
	out := map[string]*deployKustomization{}
	for _, d := range docs {
		if k, ok := d.obj.(*deployKustomization); ok {
			out[filepath.ToSlash(filepath.Dir(d.file))] = k
		}
	}
	return out
}

// deployCheckListing: every folder with manifests has a kustomization.yaml, which lists each
// of its YAML files (as a resource or a patch); every entry exists.
func deployCheckListing(t *testing.T, root string, docs []*deployDoc, ks map[string]*deployKustomization) {
	files := map[string]bool{}
	for _, d := range docs {
		files[d.file] = true
	}
	dirs := map[string][]string{}
	for f := range files {
		dir := filepath.ToSlash(filepath.Dir(f))
		if filepath.Base(f) != "kustomization.yaml" {
			dirs[dir] = append(dirs[dir], filepath.Base(f))
		}
	}
	for _, dir := range slices.Sorted(maps.Keys(dirs)) {
		k, ok := ks[dir]
		if !ok {
			t.Errorf("%s: manifests %v but no kustomization.yaml", dir, dirs[dir])
			continue
		}
		listed := map[string]bool{}
		for _, r := range k.Resources {
			listed[filepath.Clean(r)] = true
		}
		for _, p := range k.Patches {
			listed[filepath.Clean(p.Path)] = true
		}
		for _, f := range dirs[dir] {
			if !listed[f] {
				t.Errorf("%s/kustomization.yaml does not list %s", dir, f)
			}
		}
	}
	for _, dir := range slices.Sorted(maps.Keys(ks)) {
		k := ks[dir]
		if k.APIVersion == "" || k.Kind != "Kustomization" {
			t.Errorf("%s/kustomization.yaml: apiVersion and kind: Kustomization, please", dir)
		}
		for _, r := range k.Resources {
			p := filepath.Join(root, dir, r)
			st, err := os.Stat(p)
			switch {
			case err != nil:
				t.Errorf("%s/kustomization.yaml: resource %s: %v", dir, r, err)
			case st.IsDir():
				if _, err := os.Stat(filepath.Join(p, "kustomization.yaml")); err != nil {
					t.Errorf("%s/kustomization.yaml: resource %s is a folder without kustomization.yaml", dir, r)
				}
			case !files[filepath.ToSlash(filepath.Join(dir, r))]:
				t.Errorf("%s/kustomization.yaml: resource %s holds no manifest", dir, r)
			}
		}
		for _, p := range k.Patches {
			if p.Path == "" || !files[filepath.ToSlash(filepath.Join(dir, p.Path))] {
				t.Errorf("%s/kustomization.yaml: patch %q is not a manifest file here (inline patches are not used)", dir, p.Path)
			}
		}
	}
}

// deployObj is a rendered object: its type, its final JSON and the typed value.
type deployObj struct {
	typ, name string
	json      []byte
	obj       any
	from      string // the file (and patches) it came from
}

// deployRender renders the kustomization in dir as `kubectl apply -k` would: its resources
// (files, and folders rendered recursively), then its patches, then its image overrides.
// Patches are applied with the subset of strategic merge that Deployments need: objects merge;
// lists of objects merge by their merge key (name for containers, env, volumes; containerPort
// for ports; mountPath for volume mounts); other lists are replaced; null deletes.
// A folder resource may not contain a folder being rendered (kustomize refuses the cycle: an
// overlay cannot live inside its base).
func deployRender(root, dir string, byFile map[string][]*deployDoc, ks map[string]*deployKustomization, visited ...string) ([]*deployObj, error) {
	k, ok := ks[dir]
	if !ok {
		return nil, fmt.Errorf("%s: no kustomization.yaml", dir)
	}
	visited = append(visited, dir)
	var objs []*deployObj
	for _, r := range k.Resources {
		p := filepath.ToSlash(filepath.Clean(filepath.Join(dir, r)))
		if st, err := os.Stat(filepath.Join(root, p)); err == nil && st.IsDir() {
			for _, v := range visited {
				if v == p || strings.HasPrefix(v, p+"/") {
					return nil, fmt.Errorf("%s/kustomization.yaml: resource %s contains %s, which is being built (a cycle to kustomize)", dir, r, v)
				}
			}
			sub, err := deployRender(root, p, byFile, ks, visited...)
			if err != nil {
				return nil, err
			}
			objs = append(objs, sub...)
			continue
		}
		docs, ok := byFile[p]
		if !ok {
			return nil, fmt.Errorf("%s/kustomization.yaml: resource %s: no manifest there", dir, r)
		}
		for _, d := range docs {
			objs = append(objs, &deployObj{typ: d.typ, name: d.name, json: d.json, obj: d.obj, from: d.file})
		}
	}
	for _, p := range k.Patches {
		pf := filepath.ToSlash(filepath.Join(dir, p.Path))
		docs := byFile[pf]
		if len(docs) != 1 {
			return nil, fmt.Errorf("%s: want one document in a patch file, have %d", pf, len(docs))
		}
		patch := docs[0]
		kind, name := strings.Fields(patch.typ)[1], patch.name
		if p.Target != nil {
			if p.Target.Kind != "" {
				kind = p.Target.Kind
			}
			if p.Target.Name != "" {
				name = p.Target.Name
			}
		}
		hits := 0
		for _, o := range objs {
			if strings.Fields(o.typ)[1] != kind || o.name != name {
				continue
			}
			if o.typ != patch.typ {
				return nil, fmt.Errorf("%s patches %s with a %s", pf, o.from, patch.typ)
			}
			hits++
			var base, pv any
			if err := json.Unmarshal(o.json, &base); err != nil {
				return nil, err
			}
			if err := json.Unmarshal(patch.json, &pv); err != nil {
				return nil, err
			}
			merged, err := json.Marshal(deployMerge(base, pv))
			if err != nil {
				return nil, err
			}
			typed := deployKinds[o.typ]()
			if err := deployDecodeStrict(merged, typed); err != nil {
				return nil, fmt.Errorf("%s patched by %s: %v", o.from, pf, err)
			}
			*o = deployObj{typ: o.typ, name: o.name, json: merged, obj: typed, from: o.from + " + " + pf}
		}
		if hits != 1 {
			return nil, fmt.Errorf("%s: patch %s matches %d objects (%s %s), want 1", dir, p.Path, hits, kind, name)
		}
	}
	for _, img := range k.Images {
		for _, o := range objs {
			for _, spec := range deployPodSpecs(o) {
				for i := range spec.Containers {
					c := &spec.Containers[i]
					repo, _, _ := strings.Cut(c.Image, ":")
					if repo != img.Name {
						continue
					}
					if img.NewName != "" {
						repo = img.NewName
					}
					tag := strings.TrimPrefix(c.Image, img.Name)
					if img.NewTag != "" {
						tag = ":" + img.NewTag
					}
					c.Image = repo + tag
				}
			}
		}
	}
	return objs, nil
}

func deployMerge(base, patch any) any {
	switch p := patch.(type) {
	case map[string]any:
		b, ok := base.(map[string]any)
		if !ok {
			return p
		}
		out := make(map[string]any, len(b))
		for k, v := range b {
			out[k] = v
		}
		for k, v := range p {
			if v == nil {
				delete(out, k)
				continue
			}
			out[k] = deployMerge(b[k], v)
		}
		return out
	case []any:
		b, ok := base.([]any)
		key := deployMergeKey(p, b)
		if !ok || key == "" {
			return p
		}
		out := slices.Clone(b)
	next:
		for _, pe := range p {
			pm := pe.(map[string]any)
			for i, be := range out {
				if be.(map[string]any)[key] == pm[key] {
					out[i] = deployMerge(be, pe)
					continue next
				}
			}
			out = append(out, pe)
		}
		return out
	}
	return patch
}

// deployMergeKey is the strategic-merge key shared by every element of both lists, or "".
func deployMergeKey(lists ...[]any) string {
	for _, key := range []string{"name", "containerPort", "mountPath"} {
		all := true
		for _, l := range lists {
			for _, e := range l {
				m, ok := e.(map[string]any)
				if !ok || m[key] == nil {
					all = false
				}
			}
		}
		if all {
			return key
		}
	}
	return ""
}

// deployPodSpecs are the pod templates of a workload.
func deployPodSpecs(o *deployObj) []*corev1.PodSpec {
	switch v := o.obj.(type) {
	case *appsv1.Deployment:
		return []*corev1.PodSpec{&v.Spec.Template.Spec}
	case *batchv1.Job:
		return []*corev1.PodSpec{&v.Spec.Template.Spec}
	}
	return nil
}

// deployImage is what a Dockerfile's final image defines.
type deployImage struct {
	path       string
	expose     []int32
	uid        int64
	entrypoint []string
	env        map[string]string
}

// deployDockerfile reads EXPOSE, USER, ENTRYPOINT and ENV. The final stage of both Dockerfiles
// derives from the runtime stage without changing them, so the last of each is the image's.
func deployDockerfile(t *testing.T, root, name string) *deployImage {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	img := &deployImage{path: name, uid: -1, env: map[string]string{}}
	var lines []string
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	for _, line := range lines {
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "EXPOSE":
			img.expose = nil
			for _, f := range strings.Fields(rest) {
				p, err := strconv.ParseInt(strings.TrimSuffix(f, "/tcp"), 10, 32)
				if err != nil {
					t.Fatalf("%s: EXPOSE %s: %v", name, rest, err)
				}
				img.expose = append(img.expose, int32(p))
			}
		case "USER":
			user, _, _ := strings.Cut(rest, ":")
			uid, err := strconv.ParseInt(user, 10, 64)
			if err != nil {
				t.Fatalf("%s: USER %s: want a numeric uid (runAsNonRoot checks it)", name, rest)
			}
			img.uid = uid
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &img.entrypoint); err != nil {
				t.Fatalf("%s: ENTRYPOINT %s: want the exec form: %v", name, rest, err)
			}
		case "ENV":
			for _, f := range strings.Fields(rest) {
				if k, v, ok := strings.Cut(f, "="); ok {
					img.env[k] = v
				}
			}
		}
	}
	if len(img.expose) != 1 || img.uid < 0 || len(img.entrypoint) == 0 {
		t.Fatalf("%s: want one EXPOSE port, a USER and an ENTRYPOINT; read %+v", name, img)
	}
	return img
}

// deployTag is the image tag a build file gives (the first group of pattern).
func deployTag(t *testing.T, root, file, pattern string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(pattern).FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s: no image tag (%s)", file, pattern)
	}
	return string(m[1])
}

// deployExample is docs/uniter.example.yaml flattened: "section.key" → its default.
func deployExample(t *testing.T, root string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "docs", "uniter.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("docs/uniter.example.yaml: %v", err)
	}
	out := map[string]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			out[prefix+k] = v
		}
	}
	walk("", m)
	if len(out) < 10 {
		t.Fatalf("docs/uniter.example.yaml: only %d keys", len(out))
	}
	return out
}

// deployConfigEnv maps each configuration key's variable (UNITER_ and the key in capitals with
// dots as underscores, docs/configuration.md) to its key.
func deployConfigEnv(t *testing.T, root string) map[string]string {
	out := map[string]string{}
	for k := range deployExample(t, root) {
		out["UNITER_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))] = k
	}
	return out
}

// deployRequestTimeout is limits.request_timeout's default.
func deployRequestTimeout(t *testing.T, root string) time.Duration {
	v, ok := deployExample(t, root)["limits.request_timeout"].(string)
	if !ok {
		t.Fatal("docs/uniter.example.yaml: no limits.request_timeout")
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("docs/uniter.example.yaml: limits.request_timeout %q: %v", v, err)
	}
	return d
}

type deployEnv struct {
	known map[string]string // variable → configuration key
}

// check reports a variable name that is neither a configuration key nor a known extra.
func (e *deployEnv) check(name string) error {
	if _, ok := e.known[name]; ok {
		return nil
	}
	if _, ok := deployExtraEnv[name]; ok {
		return nil
	}
	if strings.HasPrefix(name, "UNITER_") {
		return fmt.Errorf("%s is no configuration key's variable (keys: docs/uniter.example.yaml)", name)
	}
	return fmt.Errorf("%s is neither a UNITER_ configuration variable nor one of %v", name, slices.Sorted(maps.Keys(deployExtraEnv)))
}

// deployTree checks one rendered kustomization.
type deployTree struct {
	t       *testing.T
	objs    []*deployObj
	images  map[string]*deployImage
	env     *deployEnv
	timeout time.Duration
}

func deployOfType[T any](c *deployTree) []T {
	var out []T
	for _, o := range c.objs {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func (c *deployTree) check(serverTag string, gpu bool) {
	t := c.t
	deps := deployOfType[*appsv1.Deployment](c)
	jobs := deployOfType[*batchv1.Job](c)
	services := deployOfType[*corev1.Service](c)
	hpas := deployOfType[*autoscalingv2.HorizontalPodAutoscaler](c)
	pdbs := deployOfType[*policyv1.PodDisruptionBudget](c)
	secrets := deployOfType[*corev1.Secret](c)
	if len(deps) != 1 || len(services) != 1 || len(hpas) != 1 || len(pdbs) != 1 || len(secrets) != 1 || len(jobs) != 1 {
		t.Fatalf("want one each of Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget, Secret and Job; have %d, %d, %d, %d, %d, %d",
			len(deps), len(services), len(hpas), len(pdbs), len(secrets), len(jobs))
	}
	dep, job, svc, hpa, pdb, secret := deps[0], jobs[0], services[0], hpas[0], pdbs[0], secrets[0]
	for _, o := range c.objs {
		if m, ok := o.obj.(metav1.Object); ok && m.GetNamespace() != "" {
			t.Errorf("%s: sets namespace %q; the manifests are namespace-less", o.from, m.GetNamespace())
		}
	}

	// Both workloads: image, user, environment, secrets, writable folders.
	secretRefs := map[string]bool{}
	c.checkPod("Deployment "+dep.Name, &dep.Spec.Template.Spec, secret, secretRefs)
	c.checkPod("Job "+job.Name, &job.Spec.Template.Spec, secret, secretRefs)
	for _, k := range slices.Sorted(maps.Keys(deploySecretKeys(secret))) {
		if !secretRefs[k] {
			t.Errorf("Secret %s: key %s is referenced by no container", secret.Name, k)
		}
	}

	// The server.
	server := deployContainer(t, &dep.Spec.Template.Spec, "the Deployment")
	if server.Image != serverTag {
		t.Errorf("Deployment: image %q, want %q (the tag the build gives it)", server.Image, serverTag)
	}
	img := c.images[server.Image]
	if img == nil {
		t.FailNow()
	}
	if len(server.Command) > 0 && !slices.Equal(server.Command, img.entrypoint) {
		t.Errorf("Deployment: command %v overrides the image's ENTRYPOINT %v", server.Command, img.entrypoint)
	}
	if len(server.Args) > 0 {
		t.Errorf("Deployment: args %v after `%s`: configure through the environment", server.Args, strings.Join(img.entrypoint, " "))
	}
	http := deployPort(server, "http")
	if http == nil {
		t.Fatalf("Deployment: container %s has no port named http", server.Name)
	}
	if http.ContainerPort != img.expose[0] {
		t.Errorf("Deployment: containerPort %d, %s EXPOSEs %d", http.ContainerPort, img.path, img.expose[0])
	}
	addr := deployEnvValue(server, img, "UNITER_ADDR")
	if _, port, _ := strings.Cut(addr, ":"); port != strconv.Itoa(int(http.ContainerPort)) {
		t.Errorf("Deployment: the server listens on UNITER_ADDR %q, the port is %d", addr, http.ContainerPort)
	}
	probes := []struct {
		what  string
		probe *corev1.Probe
		paths []string
	}{
		{"readinessProbe", server.ReadinessProbe, []string{"/readyz"}},
		{"livenessProbe", server.LivenessProbe, []string{"/healthz"}},
		{"startupProbe", server.StartupProbe, []string{"/readyz", "/healthz"}},
	}
	for _, p := range probes {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("Deployment: no %s with httpGet", p.what)
			continue
		}
		g := p.probe.HTTPGet
		if !slices.Contains(p.paths, g.Path) {
			t.Errorf("Deployment: %s GET %s, want %s (docs/operations.md, Health)", p.what, g.Path, strings.Join(p.paths, " or "))
		}
		if port := deployResolvePort(server, g.Port); port != http.ContainerPort || g.Port.Type != intstr.String {
			t.Errorf("Deployment: %s on port %s, want the named port http", p.what, g.Port.String())
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			t.Errorf("Deployment: %s scheme %s: the server speaks plain HTTP", p.what, g.Scheme)
		}
	}
	c.checkShutdown(dep, server, img)
	c.checkResources("Deployment", server)
	provider := deployEnvValue(server, img, "UNITER_ORT_PROVIDER")
	if gpu != (provider == "cuda") {
		t.Errorf("Deployment: ort.provider %q with a GPU %v", provider, gpu)
	}
	replicas := int32(1)
	if dep.Spec.Replicas != nil {
		replicas = *dep.Spec.Replicas
	}
	if backend := deployEnvValue(server, img, "UNITER_GALLERY_BACKEND"); backend != "postgres" {
		t.Errorf("Deployment: gallery.backend %q: %d replicas and an autoscaler need the postgres gallery (bbolt's /data is held by one process)", backend, replicas)
	}
	podLabels := labels.Set(dep.Spec.Template.Labels)
	jobLabels := labels.Set(job.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("Deployment: selector %s does not select its pod template's labels %v (%v)", metav1.FormatLabelSelector(dep.Spec.Selector), podLabels, err)
	}
	if sel != nil && sel.Matches(jobLabels) {
		t.Errorf("Deployment: selector %s also selects the indexing Job's pods", metav1.FormatLabelSelector(dep.Spec.Selector))
	}
	if dep.Spec.Template.Annotations["prometheus.io/scrape"] == "true" {
		if p := dep.Spec.Template.Annotations["prometheus.io/port"]; p != strconv.Itoa(int(http.ContainerPort)) {
			t.Errorf("Deployment: prometheus.io/port %q, the server's port is %d", p, http.ContainerPort)
		}
		if p := dep.Spec.Template.Annotations["prometheus.io/path"]; p != "/metrics" {
			t.Errorf("Deployment: prometheus.io/path %q, metrics are at /metrics", p)
		}
	}

	// The Service.
	if svc.Spec.Type != "" && svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service: type %s, want ClusterIP", svc.Spec.Type)
	}
	svcSel := labels.SelectorFromSet(svc.Spec.Selector)
	if len(svc.Spec.Selector) == 0 || !svcSel.Matches(podLabels) {
		t.Errorf("Service: selector %v does not select the Deployment's pods %v", svc.Spec.Selector, podLabels)
	}
	if len(svc.Spec.Selector) > 0 && svcSel.Matches(jobLabels) {
		t.Errorf("Service: selector %v also selects the indexing Job's pods", svc.Spec.Selector)
	}
	if len(svc.Spec.Ports) == 0 {
		t.Error("Service: no ports")
	}
	for _, p := range svc.Spec.Ports {
		if p.TargetPort.Type != intstr.String || deployPort(server, p.TargetPort.StrVal) == nil {
			t.Errorf("Service: port %d targets %s, not a named port of the server container", p.Port, p.TargetPort.String())
		}
	}

	// The autoscaler and the disruption budget.
	ref := hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != dep.Name {
		t.Errorf("HorizontalPodAutoscaler: targets %s %s %s, want apps/v1 Deployment %s", ref.APIVersion, ref.Kind, ref.Name, dep.Name)
	}
	minReplicas := int32(1)
	if hpa.Spec.MinReplicas != nil {
		minReplicas = *hpa.Spec.MinReplicas
	}
	if replicas != minReplicas {
		t.Errorf("Deployment: replicas %d, the autoscaler's minReplicas %d: keep them equal", replicas, minReplicas)
	}
	if hpa.Spec.MaxReplicas < minReplicas {
		t.Errorf("HorizontalPodAutoscaler: maxReplicas %d < minReplicas %d", hpa.Spec.MaxReplicas, minReplicas)
	}
	cpuMetric := false
	for _, m := range hpa.Spec.Metrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU {
			cpuMetric = m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil
		}
	}
	if !cpuMetric {
		t.Error("HorizontalPodAutoscaler: no CPU utilisation target")
	}
	for _, ct := range dep.Spec.Template.Spec.Containers {
		if _, ok := ct.Resources.Requests[corev1.ResourceCPU]; !ok {
			t.Errorf("Deployment: container %s requests no CPU: CPU utilisation is relative to requests", ct.Name)
		}
	}
	pdbSel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || pdb.Spec.Selector == nil || !pdbSel.Matches(podLabels) {
		t.Errorf("PodDisruptionBudget: selector %s does not select the Deployment's pods %v (%v)", metav1.FormatLabelSelector(pdb.Spec.Selector), podLabels, err)
	} else if pdbSel.Matches(jobLabels) {
		t.Errorf("PodDisruptionBudget: selector %s also selects the indexing Job's pods", metav1.FormatLabelSelector(pdb.Spec.Selector))
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.Type != intstr.Int {
		t.Error("PodDisruptionBudget: want minAvailable as a number")
	} else if n := pdb.Spec.MinAvailable.IntVal; n < 1 || n >= minReplicas {
		t.Errorf("PodDisruptionBudget: minAvailable %d with at least %d replicas: a drain could never evict (or nothing stays)", n, minReplicas)
	}

	// The indexing Job.
	c.checkJob(job)

	// The GPU.
	gpus, hasGPU := server.Resources.Limits["nvidia.com/gpu"]
	switch {
	case gpu && (!hasGPU || gpus.Value() < 1):
		t.Errorf("Deployment: limits nvidia.com/gpu %v, want at least 1", gpus.String())
	case gpu:
		if r, ok := server.Resources.Requests["nvidia.com/gpu"]; ok && r.Cmp(gpus) != 0 {
			t.Errorf("Deployment: requests nvidia.com/gpu %s ≠ limits %s", r.String(), gpus.String())
		}
	case hasGPU:
		t.Errorf("Deployment: the CPU variant asks for nvidia.com/gpu %s", gpus.String())
	}
}

// checkPod: what every workload's pod needs, whatever it runs.
func (c *deployTree) checkPod(what string, spec *corev1.PodSpec, secret *corev1.Secret, refs map[string]bool) {
	t := c.t
	if len(spec.Containers) == 0 {
		t.Errorf("%s: no containers", what)
		return
	}
	volumes := map[string]*corev1.Volume{}
	for i := range spec.Volumes {
		volumes[spec.Volumes[i].Name] = &spec.Volumes[i]
	}
	for i := range spec.Containers {
		ct := &spec.Containers[i]
		img := c.images[ct.Image]
		if img == nil {
			t.Errorf("%s: container %s runs %q, which the build does not tag (%v)", what, ct.Name, ct.Image, slices.Sorted(maps.Keys(c.images)))
			continue
		}
		uid, nonRoot := int64(-1), false
		if s := spec.SecurityContext; s != nil {
			if s.RunAsUser != nil {
				uid = *s.RunAsUser
			}
			nonRoot = s.RunAsNonRoot != nil && *s.RunAsNonRoot
		}
		if s := ct.SecurityContext; s != nil {
			if s.RunAsUser != nil {
				uid = *s.RunAsUser
			}
			if s.RunAsNonRoot != nil {
				nonRoot = *s.RunAsNonRoot
			}
		}
		if !nonRoot {
			t.Errorf("%s: container %s without runAsNonRoot", what, ct.Name)
		}
		if uid != img.uid {
			t.Errorf("%s: container %s runs as uid %d, %s's USER is %d", what, ct.Name, uid, img.path, img.uid)
		}
		seen := map[string]bool{}
		for _, e := range ct.Env {
			if seen[e.Name] {
				t.Errorf("%s: container %s sets %s twice", what, ct.Name, e.Name)
			}
			seen[e.Name] = true
			if err := c.env.check(e.Name); err != nil {
				t.Errorf("%s: container %s: %v", what, ct.Name, err)
			}
			if slices.Contains(deploySecretEnv, e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
				t.Errorf("%s: container %s: %s is a secret: take it from the Secret (secretKeyRef)", what, ct.Name, e.Name)
			}
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			if ref.Name != secret.Name {
				t.Errorf("%s: container %s: %s from Secret %q, the manifests' is %q", what, ct.Name, e.Name, ref.Name, secret.Name)
				continue
			}
			if _, ok := deploySecretKeys(secret)[ref.Key]; !ok {
				t.Errorf("%s: container %s: %s from key %q, which Secret %s lacks", what, ct.Name, e.Name, ref.Key, secret.Name)
			}
			refs[ref.Key] = true
		}
		for _, ef := range ct.EnvFrom {
			t.Errorf("%s: container %s: envFrom %+v: name each variable, so that the test can check it", what, ct.Name, ef)
		}
		if v := deployEnvValue(ct, img, "UNITER_ORT_INTRA_OP_THREADS"); v != "" {
			n, err := strconv.Atoi(v)
			lim, ok := ct.Resources.Limits[corev1.ResourceCPU]
			if err != nil || (ok && float64(n) > math.Ceil(float64(lim.MilliValue())/1000)) {
				t.Errorf("%s: container %s: UNITER_ORT_INTRA_OP_THREADS %q beyond its CPU limit %s", what, ct.Name, v, lim.String())
			}
		} else if _, ok := ct.Resources.Limits[corev1.ResourceCPU]; ok {
			t.Errorf("%s: container %s: set UNITER_ORT_INTRA_OP_THREADS to its CPU: ONNX Runtime's default counts the node's cores", what, ct.Name)
		}
		mounts := map[string]string{}
		for _, m := range ct.VolumeMounts {
			if volumes[m.Name] == nil {
				t.Errorf("%s: container %s mounts volume %s, which the pod lacks", what, ct.Name, m.Name)
			}
			mounts[m.MountPath] = m.Name
		}
		if s := ct.SecurityContext; s == nil || s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem {
			t.Errorf("%s: container %s: readOnlyRootFilesystem, please (/tmp is an emptyDir)", what, ct.Name)
		} else if v := volumes[mounts["/tmp"]]; v == nil || v.EmptyDir == nil {
			t.Errorf("%s: container %s: a read-only root needs a writable /tmp (emptyDir)", what, ct.Name)
		}
		if s := ct.SecurityContext; s == nil || s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation {
			t.Errorf("%s: container %s: allowPrivilegeEscalation: false, please", what, ct.Name)
		}
		if deployEnvValue(ct, img, "UNITER_GALLERY_BACKEND") != "postgres" {
			if _, ok := mounts[deployEnvValue(ct, img, "UNITER_DATA_DIR")]; !ok {
				t.Errorf("%s: container %s: the bbolt gallery needs a volume on data_dir", what, ct.Name)
			}
		}
	}
}

// checkShutdown: the grace period covers the preStop wait, the server's shutdown grace
// (limits.request_timeout + 5 s) and its bounded drain (5 s more).
func (c *deployTree) checkShutdown(dep *appsv1.Deployment, server *corev1.Container, img *deployImage) {
	t := c.t
	timeout := c.timeout
	if v := deployEnvValue(server, img, "UNITER_LIMITS_REQUEST_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Errorf("Deployment: UNITER_LIMITS_REQUEST_TIMEOUT %q: %v", v, err)
		}
		timeout = d
	}
	var preStop time.Duration
	switch h := deployPreStop(server); {
	case h == nil:
		t.Error("Deployment: no preStop wait: the pod leaves the endpoints while it already refuses connections")
	case h.Sleep != nil:
		preStop = time.Duration(h.Sleep.Seconds) * time.Second
	case h.Exec != nil && len(h.Exec.Command) == 2 && strings.HasSuffix(h.Exec.Command[0], "sleep"):
		s, err := strconv.Atoi(h.Exec.Command[1])
		if err != nil {
			t.Errorf("Deployment: preStop %v", h.Exec.Command)
		}
		preStop = time.Duration(s) * time.Second
	default:
		t.Errorf("Deployment: preStop %+v: want a sleep", h)
	}
	if preStop <= 0 {
		t.Errorf("Deployment: preStop waits %v", preStop)
	}
	need := preStop + timeout + 2*deployShutdownMargin
	grace := 30 * time.Second // Kubernetes' default
	if g := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace <= need {
		t.Errorf("Deployment: terminationGracePeriodSeconds %v, want more than preStop %v + request_timeout %v + %v grace + %v drain = %v",
			grace, preStop, timeout, deployShutdownMargin, deployShutdownMargin, need)
	}
}

func deployPreStop(ct *corev1.Container) *corev1.LifecycleHandler {
	if ct.Lifecycle == nil {
		return nil
	}
	return ct.Lifecycle.PreStop
}

// checkResources: requests and limits for CPU and memory, the memory request above the
// measured peak.
func (c *deployTree) checkResources(what string, ct *corev1.Container) {
	t := c.t
	r := ct.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := r.Requests[name]
		lim, okLim := r.Limits[name]
		if !okReq || !okLim {
			t.Errorf("%s: container %s: want requests and limits for %s", what, ct.Name, name)
			continue
		}
		if lim.Cmp(req) < 0 {
			t.Errorf("%s: container %s: %s limit %s below its request %s", what, ct.Name, name, lim.String(), req.String())
		}
	}
	if req, ok := r.Requests[corev1.ResourceMemory]; ok && req.Cmp(resource.MustParse(deployMeasuredRSS)) < 0 {
		t.Errorf("%s: container %s: memory request %s below the measured peak %s", what, ct.Name, req.String(), deployMeasuredRSS)
	}
}

// checkJob: `uniter index` over a mounted folder, workers sharing the database's work list.
func (c *deployTree) checkJob(job *batchv1.Job) {
	t := c.t
	ct := deployContainer(t, &job.Spec.Template.Spec, "the Job")
	img := c.images[ct.Image]
	if img == nil {
		return
	}
	if len(ct.Command) == 0 || ct.Command[0] != img.entrypoint[0] {
		t.Errorf("Job: command %v, want the image's binary %s", ct.Command, img.entrypoint[0])
	}
	cmd := append(slices.Clone(ct.Command[1:]), ct.Args...)
	if len(cmd) < 2 || cmd[0] != "index" {
		t.Fatalf("Job: runs %v, want `uniter index DIR`", cmd)
	}
	dir := cmd[len(cmd)-1]
	mounted := false
	for _, m := range ct.VolumeMounts {
		mounted = mounted || m.MountPath == dir || strings.HasPrefix(dir, strings.TrimSuffix(m.MountPath, "/")+"/")
	}
	if !mounted {
		t.Errorf("Job: indexes %s, which no volume is mounted on", dir)
	}
	if p := job.Spec.Parallelism; p == nil || *p < 2 {
		t.Errorf("Job: parallelism %v, want 2 workers on the shared work list", p)
	}
	indexed := job.Spec.CompletionMode != nil && *job.Spec.CompletionMode == batchv1.IndexedCompletion
	if job.Spec.Completions != nil && !indexed {
		t.Errorf("Job: completions %d: a work-queue Job leaves it unset (the workers stop when the list is empty)", *job.Spec.Completions)
	}
	if b := deployEnvValue(ct, img, "UNITER_GALLERY_BACKEND"); b != "postgres" {
		t.Errorf("Job: gallery.backend %q: parallel indexing needs the postgres gallery", b)
	}
	if rp := job.Spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever {
		t.Errorf("Job: restartPolicy %q", rp)
	}
	if job.Spec.Suspend == nil || !*job.Spec.Suspend {
		t.Error("Job: want it created suspended, so that `kubectl apply -k` does not start indexing")
	}
	c.checkResources("Job", ct)
}

// deployContainer is the pod's one container.
func deployContainer(t *testing.T, spec *corev1.PodSpec, what string) *corev1.Container {
	t.Helper()
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", what, len(spec.Containers))
	}
	return &spec.Containers[0]
}

func deployPort(ct *corev1.Container, name string) *corev1.ContainerPort {
	for i := range ct.Ports {
		if ct.Ports[i].Name == name {
			return &ct.Ports[i]
		}
	}
	return nil
}

func deployResolvePort(ct *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	if cp := deployPort(ct, p.StrVal); cp != nil {
		return cp.ContainerPort
	}
	return -1
}

// deployEnvValue is a variable's literal value in the container, else the image's.
func deployEnvValue(ct *corev1.Container, img *deployImage, name string) string {
	for _, e := range ct.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return img.env[name]
}

func deploySecretKeys(s *corev1.Secret) map[string]bool {
	keys := map[string]bool{}
	for k := range s.Data {
		keys[k] = true
	}
	for k := range s.StringData {
		keys[k] = true
	}
	return keys
}
