package tests

// Every answer these tests get over HTTP through `client` is validated against the OpenAPI
// document (api/openapi.yaml) by openapitest's RoundTripper: its status must be one the
// operation lists, with the headers and the body schema listed for it. An answer that does not
// match fails the test whose request it was (server.do passes its t along), or, for requests
// sent without one, the whole run at the end of TestMain, with the list.
//
// TestDocExamples runs the examples of README.md and docs/api.md against a server of the
// default model (and the fine-tuned fixtures beside it): every curl command of a ```sh block, and every ```json block as its marker
// comment says (<!-- example: … -->, the line before the block):
//
//	request METHOD PATH   the body of a request, sent; the answer must be 2xx
//	answer                the (trimmed) answer of the command or request before it: every field it
//	                      shows is in the live answer with the same value (numbers within 1%,
//	                      timings aside, strings cut with … as prefixes)
//	schema NAME           valid against components/schemas/NAME
//	sketch                not JSON (placeholders); not run

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/internal/openapitest"
)

// specFailures are the answers that did not match the document, from requests without a test.
var specFailures struct {
	sync.Mutex
	list []string
}

type specTestKey struct{}

// withSpecTest makes a mismatch of req's answer fail t.
func withSpecTest(req *http.Request, t testing.TB) *http.Request {
	return req.WithContext(context.WithValue(req.Context(), specTestKey{}, t))
}

func reportSpec(req *http.Request, err error) {
	if t, ok := req.Context().Value(specTestKey{}).(testing.TB); ok {
		t.Errorf("the answer does not match api/openapi.yaml: %v", err)
		return
	}
	specFailures.Lock()
	defer specFailures.Unlock()
	specFailures.list = append(specFailures.list, err.Error())
}

// specTransport is the validating transport of `client`.
func specTransport() http.RoundTripper {
	v, err := openapitest.Load()
	if err != nil {
		specFailures.list = append(specFailures.list, "loading api/openapi.yaml: "+err.Error())
		return http.DefaultTransport
	}
	checked := v.Transport(http.DefaultTransport, reportSpec)
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := checked.RoundTrip(req)
		if err == nil {
			specChecked.Lock()
			specChecked.byStatus[resp.StatusCode]++
			specChecked.Unlock()
		}
		return resp, err
	})
}

// specChecked counts the answers checked, by status, for the summary of a -v run.
var specChecked = struct {
	sync.Mutex
	byStatus map[int]int
}{byStatus: map[int]int{}}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// runTests runs the tests, then fails the run if an answer without a test did not match.
func runTests(m *testing.M) int {
	code := m.Run()
	if testing.Verbose() {
		specChecked.Lock()
		var parts []string
		for _, st := range slices.Sorted(maps.Keys(specChecked.byStatus)) {
			parts = append(parts, fmt.Sprintf("%d×%d", specChecked.byStatus[st], st))
		}
		specChecked.Unlock()
		fmt.Fprintf(os.Stderr, "tests: answers checked against api/openapi.yaml, by status: %s\n", strings.Join(parts, " "))
	}
	specFailures.Lock()
	defer specFailures.Unlock()
	if n := len(specFailures.list); n > 0 {
		fmt.Fprintf(os.Stderr, "tests: %d answers do not match api/openapi.yaml:\n", n)
		for _, f := range specFailures.list {
			fmt.Fprintf(os.Stderr, "  %s\n", strings.ReplaceAll(f, "\n", "\n    "))
		}
		if code == 0 {
			code = 1
		}
	}
	return code
}

// ---- The docs' examples ------------------------------------------------------------------

// exampleFiles are run in order, on one server: README.md's gallery fills the gallery that
// docs/api.md's searches search.
var exampleFiles = []string{"README.md", "docs/api.md"}

func TestDocExamples(t *testing.T) {
	t.Parallel()
	root := repoRoot()
	addr := freeAddr(t)
	// The task examples of docs/api.md ask the fine-tuned fixtures, the README's the Shapes World
	// task models, served beside the default model as `make run` serves them.
	s := startServeAt(t, addr, uniterEnv(t), "serve", "--addr", addr, "--bundle", filepath.Join(root, defaultBundle),
		"--model", filepath.Join(root, "testdata", "bundles"), "--model", filepath.Join(root, taskBundles), "--data-dir", t.TempDir())

	// The running binary serves the document the tests validate with.
	status, raw := s.do(t, http.MethodGet, "/openapi.json", "", nil)
	want, _ := api.OpenAPIJSON()
	if status != http.StatusOK || !bytes.Equal(raw, want) {
		t.Errorf("GET /openapi.json: %d, %d bytes; want 200 and api.OpenAPIJSON() (%d bytes)", status, len(raw), len(want))
	}

	v, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, file := range exampleFiles {
		src, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		var last any // the previous command's answer, for "answer" examples
		for _, b := range codeBlocks(string(src)) {
			where := fmt.Sprintf("%s:%d", file, b.line)
			switch {
			case b.lang == "sh" && strings.Contains(b.text, "curl "):
				cmds, err := parseShell(b.text, root)
				if err != nil {
					t.Errorf("%s: cannot run this example: %v", where, err)
					continue
				}
				for _, c := range cmds {
					last = runCurl(t, s, where, c)
					ran++
				}
			case b.lang == "json":
				kind, arg, _ := strings.Cut(b.marker, " ")
				switch kind {
				case "":
					t.Errorf("%s: a JSON block without a marker: write <!-- example: request METHOD PATH | answer | schema NAME | sketch --> on the line before it", where)
				case "sketch":
				case "schema":
					var value any
					if err := json.Unmarshal([]byte(b.text), &value); err != nil {
						t.Errorf("%s: not JSON: %v", where, err)
					} else if err := v.CheckValue(arg, value); err != nil {
						t.Errorf("%s: not a %s: %v", where, arg, err)
					}
					ran++
				case "request":
					method, path, _ := strings.Cut(arg, " ")
					status, raw := s.do(t, method, path, "application/json", []byte(b.text))
					if status < 200 || status > 299 {
						t.Errorf("%s: %s %s: %d %s, want 2xx", where, method, path, status, raw)
					}
					last = decodeAny(t, where, raw)
					ran++
				case "answer":
					var example any
					if err := json.Unmarshal([]byte(b.text), &example); err != nil {
						t.Errorf("%s: not JSON: %v", where, err)
					} else if last == nil {
						t.Errorf("%s: an answer with no request before it", where)
					} else {
						for _, d := range answerDiffs(example, last, "") {
							t.Errorf("%s: the example differs from the live answer: %s", where, d)
						}
					}
					ran++
				default:
					t.Errorf("%s: unknown example marker %q", where, b.marker)
				}
			}
		}
	}
	t.Logf("%d examples ran", ran)
	if ran < 5 {
		t.Errorf("only %d examples ran: the docs' examples were not found", ran)
	}
}

// codeBlock is a fenced block of a Markdown file.
type codeBlock struct {
	line   int    // of the opening fence
	lang   string // the info string
	text   string
	marker string // <!-- example: MARKER --> on the line before the fence (blank lines skipped)
}

var exampleMarkerRe = regexp.MustCompile(`^<!--\s*example:\s*(.*?)\s*-->$`)

func codeBlocks(src string) []codeBlock {
	lines := strings.Split(src, "\n")
	var out []codeBlock
	for i := 0; i < len(lines); i++ {
		fence := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(fence, "```") {
			continue
		}
		b := codeBlock{line: i + 1, lang: strings.TrimSpace(strings.TrimPrefix(fence, "```"))}
		for j := i - 1; j >= 0; j-- {
			prev := strings.TrimSpace(lines[j])
			if prev == "" {
				continue
			}
			if m := exampleMarkerRe.FindStringSubmatch(prev); m != nil {
				b.marker = m[1]
			}
			break
		}
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, lines[i])
		}
		b.text = strings.Join(body, "\n")
		out = append(out, b)
	}
	return out
}

// curlCmd is one curl command of an example, its options read.
type curlCmd struct {
	args    []string
	method  string
	url     string
	headers http.Header
	data    *string
	form    [][2]string // name, value; a value starting with @ is a file
}

// parseShell reads the little shell the examples use: commands on lines (backslash
// continuations), separated by ; or newlines, quoted with '…' or "…", and
// `for VAR in GLOB…; do …; done` loops. Commands are curl and echo; anything else is an error.
func parseShell(src, dir string) ([]curlCmd, error) {
	src = strings.ReplaceAll(src, "\\\n", " ")
	var out []curlCmd
	for _, line := range strings.Split(src, "\n") {
		words, err := shellWords(line)
		if err != nil {
			return nil, err
		}
		cmds, err := shellRun(words, map[string]string{}, dir)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", strings.TrimSpace(line), err)
		}
		out = append(out, cmds...)
	}
	return out, nil
}

// shellWord is a word, with whether any of it was quoted (quoted words are not globbed).
type shellWord struct {
	text   string
	quoted bool
	op     bool // ";"
}

func shellWords(line string) ([]shellWord, error) {
	var out []shellWord
	var cur strings.Builder
	in, quoted := false, false
	flush := func() {
		if in {
			out = append(out, shellWord{text: cur.String(), quoted: quoted})
		}
		cur.Reset()
		in, quoted = false, false
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '#' && !in:
			flush()
			return out, nil
		case c == ' ' || c == '\t':
			flush()
		case c == ';':
			flush()
			out = append(out, shellWord{text: ";", op: true})
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unclosed '")
			}
			cur.WriteString(line[i+1 : i+1+end])
			i += 1 + end
			in, quoted = true, true
		case c == '"':
			j := i + 1
			for ; j < len(line) && line[j] != '"'; j++ {
				if line[j] == '\\' && j+1 < len(line) && strings.IndexByte(`"\$`, line[j+1]) >= 0 {
					j++
				} else if line[j] == '$' {
					return nil, fmt.Errorf("variables inside \"…\" are not run here")
				}
				cur.WriteByte(line[j])
			}
			if j >= len(line) {
				return nil, fmt.Errorf("unclosed \"")
			}
			i = j
			in, quoted = true, true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			in = true
		case strings.IndexByte("|&<>`()", c) >= 0:
			return nil, fmt.Errorf("%q is not run here", c)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	flush()
	return out, nil
}

// shellRun runs a list of words: commands separated by ;, and for loops.
func shellRun(words []shellWord, vars map[string]string, dir string) ([]curlCmd, error) {
	var out []curlCmd
	for len(words) > 0 {
		if words[0].op {
			words = words[1:]
			continue
		}
		if !words[0].quoted && words[0].text == "for" {
			// for VAR in WORDS ; do BODY done
			if len(words) < 4 || words[2].text != "in" {
				return nil, fmt.Errorf("want `for VAR in …; do …; done`")
			}
			name := words[1].text
			rest := words[3:]
			var items []string
			for len(rest) > 0 && !rest[0].op {
				expanded, err := expandWord(rest[0], vars, dir)
				if err != nil {
					return nil, err
				}
				items = append(items, expanded...)
				rest = rest[1:]
			}
			if len(rest) < 2 || rest[1].text != "do" {
				return nil, fmt.Errorf("want `; do` after the loop's words")
			}
			rest = rest[2:]
			end := -1
			for i, w := range rest {
				if !w.quoted && w.text == "done" {
					end = i
					break
				}
			}
			if end < 0 {
				return nil, fmt.Errorf("no `done`")
			}
			if len(items) == 0 {
				return nil, fmt.Errorf("the loop's words match no file")
			}
			for _, it := range items {
				inner := map[string]string{}
				for k, v := range vars {
					inner[k] = v
				}
				inner[name] = it
				cmds, err := shellRun(rest[:end], inner, dir)
				if err != nil {
					return nil, err
				}
				out = append(out, cmds...)
			}
			words = rest[end+1:]
			continue
		}
		end := len(words)
		for i, w := range words {
			if w.op {
				end = i
				break
			}
		}
		var argv []string
		for _, w := range words[:end] {
			expanded, err := expandWord(w, vars, dir)
			if err != nil {
				return nil, err
			}
			argv = append(argv, expanded...)
		}
		words = words[end:]
		switch argv[0] {
		case "echo":
		case "curl":
			c, err := parseCurl(argv[1:], dir)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		default:
			return nil, fmt.Errorf("command %q is not run here (curl and echo are)", argv[0])
		}
	}
	return out, nil
}

var shellVarRe = regexp.MustCompile(`\$\{?([A-Za-z_]\w*)\}?`)

// expandWord substitutes loop variables and, in unquoted words, expands globs (relative to dir).
func expandWord(w shellWord, vars map[string]string, dir string) ([]string, error) {
	if w.quoted {
		return []string{w.text}, nil
	}
	var err error
	text := shellVarRe.ReplaceAllStringFunc(w.text, func(m string) string {
		name := shellVarRe.FindStringSubmatch(m)[1]
		v, ok := vars[name]
		if !ok {
			err = fmt.Errorf("variable $%s is not set", name)
		}
		return v
	})
	if err != nil {
		return nil, err
	}
	if !strings.ContainsAny(text, "*?[") {
		return []string{text}, nil
	}
	matches, err := filepath.Glob(filepath.Join(dir, text))
	if err != nil || len(matches) == 0 {
		return nil, fmt.Errorf("%s matches no file", text)
	}
	sort.Strings(matches)
	for i, m := range matches {
		matches[i], _ = filepath.Rel(dir, m)
	}
	return matches, nil
}

func parseCurl(args []string, dir string) (curlCmd, error) {
	c := curlCmd{args: args, headers: http.Header{}}
	value := func(i *int, opt string) (string, error) {
		*i++
		if *i >= len(args) {
			return "", fmt.Errorf("curl %s: no value", opt)
		}
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch a {
		case "-s", "--silent", "-S", "--show-error", "-f", "--fail":
		case "-F", "--form":
			v, err := value(&i, a)
			if err != nil {
				return c, err
			}
			name, val, ok := strings.Cut(v, "=")
			if !ok {
				return c, fmt.Errorf("curl -F %q: want name=value", v)
			}
			c.form = append(c.form, [2]string{name, val})
		case "-H", "--header":
			v, err := value(&i, a)
			if err != nil {
				return c, err
			}
			k, val, ok := strings.Cut(v, ":")
			if !ok {
				return c, fmt.Errorf("curl -H %q: want Name: value", v)
			}
			c.headers.Add(strings.TrimSpace(k), strings.TrimSpace(val))
		case "-d", "--data", "--data-raw", "--data-binary":
			v, err := value(&i, a)
			if err != nil {
				return c, err
			}
			if f, ok := strings.CutPrefix(v, "@"); ok && a != "--data-raw" {
				raw, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil {
					return c, err
				}
				v = string(raw)
			}
			c.data = &v
		case "-X", "--request":
			v, err := value(&i, a)
			if err != nil {
				return c, err
			}
			c.method = v
		default:
			if strings.HasPrefix(a, "-") {
				return c, fmt.Errorf("curl option %s is not run here", a)
			}
			if c.url != "" {
				return c, fmt.Errorf("curl: two URLs, %s and %s", c.url, a)
			}
			c.url = a
		}
	}
	switch {
	case c.url == "":
		return c, fmt.Errorf("curl: no URL")
	case c.data != nil && c.form != nil:
		return c, fmt.Errorf("curl: both -d and -F")
	case c.method == "" && (c.data != nil || c.form != nil):
		c.method = http.MethodPost
	case c.method == "":
		c.method = http.MethodGet
	}
	return c, nil
}

// curlPathRe is the path of an example's URL, written for `make run` (localhost:8080).
var curlPathRe = regexp.MustCompile(`^(?:https?://)?(?:localhost|127\.0\.0\.1):8080(/.*)$`)

// curlRequest builds the command's request to the server at base ("http://host:port"): the
// URL's path (an example's URL is written for `make run`, localhost:8080), -d or -F bodies as
// curl sends them (files after @ read from fileDir) and -H headers.
func curlRequest(c curlCmd, base, fileDir string) (*http.Request, error) {
	m := curlPathRe.FindStringSubmatch(c.url)
	if m == nil {
		return nil, fmt.Errorf("curl %s: the example should call the server of `make run` (localhost:8080)", c.url)
	}
	var body io.Reader
	ctype := ""
	switch {
	case c.data != nil:
		body, ctype = strings.NewReader(*c.data), "application/x-www-form-urlencoded" // curl's default
	case c.form != nil:
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		for _, f := range c.form {
			name, val := f[0], f[1]
			file, ok := strings.CutPrefix(val, "@")
			if !ok {
				if err := w.WriteField(name, val); err != nil {
					return nil, err
				}
				continue
			}
			raw, err := os.ReadFile(filepath.Join(fileDir, file))
			if err != nil {
				return nil, fmt.Errorf("curl -F %s: %w", val, err)
			}
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, name, filepath.Base(file)))
			h.Set("Content-Type", http.DetectContentType(raw))
			part, err := w.CreatePart(h)
			if err != nil {
				return nil, err
			}
			if _, err := part.Write(raw); err != nil {
				return nil, err
			}
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		body, ctype = &buf, w.FormDataContentType()
	}
	req, err := http.NewRequest(c.method, base+m[1], body)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, vs := range c.headers {
		req.Header[k] = vs
	}
	return req, nil
}

// runCurl sends the command's request to s, wants a 2xx, and returns the decoded answer.
func runCurl(t *testing.T, s *server, where string, c curlCmd) any {
	t.Helper()
	req, err := curlRequest(c, s.url, repoRoot())
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return nil
	}
	resp, err := client.Do(withSpecTest(req, t))
	if err != nil {
		t.Errorf("%s: curl %s: %v", where, strings.Join(c.args, " "), err)
		return nil
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		t.Errorf("%s: curl %s: %d %s, want 2xx", where, strings.Join(c.args, " "), resp.StatusCode, raw)
	}
	return decodeAny(t, where, raw)
}

func decodeAny(t *testing.T, where string, raw []byte) any {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Errorf("%s: the answer is not JSON: %v", where, err)
		return nil
	}
	return v
}

// answerDiffs lists where a documented answer is not part of the live one.
func answerDiffs(example, live any, path string) []string {
	if strings.HasSuffix(path, "timings_ms") || strings.Contains(path, "timings_ms.") {
		return nil // measured
	}
	diff := func(format string, a ...any) []string {
		return []string{fmt.Sprintf("%s: ", strings.TrimPrefix(path, ".")) + fmt.Sprintf(format, a...)}
	}
	switch e := example.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			return diff("an object in the example, %T live", live)
		}
		var out []string
		for _, k := range sortedMapKeys(e) {
			lv, ok := l[k]
			if !ok {
				out = append(out, diff("field %q is not in the live answer", k)...)
				continue
			}
			out = append(out, answerDiffs(e[k], lv, path+"."+k)...)
		}
		return out
	case []any:
		l, ok := live.([]any)
		if !ok || len(l) != len(e) {
			return diff("%d items in the example, live %v", len(e), live)
		}
		var out []string
		for i := range e {
			out = append(out, answerDiffs(e[i], l[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	case string:
		l, ok := live.(string)
		if prefix, cut := strings.CutSuffix(e, "…"); cut && ok && strings.HasPrefix(l, prefix) {
			return nil
		}
		if !ok || l != e {
			return diff("%q in the example, live %v", e, live)
		}
	case float64:
		l, ok := live.(float64)
		if !ok || math.Abs(l-e) > 0.01*math.Max(math.Abs(e), 0.01) {
			return diff("%v in the example, live %v", e, live)
		}
	default:
		if fmt.Sprint(example) != fmt.Sprint(live) {
			return diff("%v in the example, live %v", example, live)
		}
	}
	return nil
}

func sortedMapKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestDocExampleTools: the shell reader and the answer comparison of TestDocExamples.
func TestDocExampleTools(t *testing.T) {
	t.Parallel()
	root := repoRoot()
	cmds, err := parseShell("for f in web/samples/*.png; do curl -s -F image=@$f localhost:8080/v1/images; echo; done\n"+
		"curl -s localhost:8080/v1/search/images -H 'content-type: application/json' \\\n  -d '{\"text\": \"a b\"}'", root)
	if err != nil {
		t.Fatal(err)
	}
	samples, _ := filepath.Glob(filepath.Join(root, "web", "samples", "*.png"))
	if len(cmds) != len(samples)+1 || len(samples) == 0 {
		t.Fatalf("%d commands, want %d", len(cmds), len(samples)+1)
	}
	if c := cmds[0]; c.method != "POST" || c.form[0][0] != "image" || !strings.HasPrefix(c.form[0][1], "@web/samples/") {
		t.Errorf("the loop's first command: %+v", c)
	}
	if c := cmds[len(cmds)-1]; c.method != "POST" || c.headers.Get("Content-Type") != "application/json" || *c.data != `{"text": "a b"}` {
		t.Errorf("the search: %+v", c)
	}
	for _, bad := range []string{"rm -rf x", "curl x | jq .", "curl --unknown x", "echo \"$HOME\""} {
		if _, err := parseShell(bad, root); err == nil {
			t.Errorf("%q was read", bad)
		}
	}
	live := map[string]any{"a": []any{map[string]any{"s": 0.5, "t": "x"}}, "sha": "abcdef", "timings_ms": map[string]any{"total": 3.0}}
	for example, ok := range map[string]bool{
		`{"a": [{"s": 0.501}], "sha": "abc…", "timings_ms": {"total": 1}}`: true,
		`{"a": [{"s": 0.6}]}`:     false,
		`{"a": [{"t": "y"}]}`:     false,
		`{"b": 1}`:                false,
		`{"a": [{"s": 0.5}, {}]}`: false,
	} {
		var e any
		if err := json.Unmarshal([]byte(example), &e); err != nil {
			t.Fatal(err)
		}
		if d := answerDiffs(e, live, ""); (len(d) == 0) != ok {
			t.Errorf("%s: differences %q, want ok=%v", example, d, ok)
		}
	}
}

// TestSpecTransport: `client` checks answers: a wrong one is reported, a right one is not, and
// both reach the caller intact.
func TestSpecTransport(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-ID", "r1")
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("bad") != "" {
			io.WriteString(w, `{"status": "nope"}`)
			return
		}
		io.WriteString(w, `{"status": "ok"}`)
	}))
	defer srv.Close()
	count := func() int {
		specFailures.Lock()
		defer specFailures.Unlock()
		n := 0
		for _, f := range specFailures.list {
			if strings.Contains(f, "nope") {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		query string
		want  string
		fails int
	}{{"", `{"status": "ok"}`, 0}, {"?bad=1", `{"status": "nope"}`, 1}} {
		before := count()
		resp, err := client.Get(srv.URL + "/healthz" + c.query)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(raw) != c.want {
			t.Errorf("GET /healthz%s: body %q, want %q", c.query, raw, c.want)
		}
		if got := count() - before; got != c.fails {
			t.Errorf("GET /healthz%s: %d failures reported, want %d", c.query, got, c.fails)
		}
	}
	// The failure was this test's doing: take it off the run's list.
	specFailures.Lock()
	defer specFailures.Unlock()
	kept := specFailures.list[:0]
	for _, f := range specFailures.list {
		if !strings.Contains(f, "nope") {
			kept = append(kept, f)
		}
	}
	specFailures.list = kept
}
