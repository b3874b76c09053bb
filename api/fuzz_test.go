package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/retrieval"
	"github.com/uniter-serve/uniter/pipeline"
)

// FuzzHandler drives the whole HTTP handler, every route, JSON and multipart, with and
// without API keys, through one server (with a gallery) built once per fuzzing process.
//
// The input is
//
//	method  low 3 bits: fhMethods; bit 3: unknown Content-Length (as chunked); bit 4: the body
//	        padded past MaxBodyBytes
//	route   which of fhRoutes (modulo its length), the fuzzed path string appended to it (an
//	        id, "id/thumbnail", "?query", "/"); fhRawPath and above: the path string is the
//	        raw request target
//	path    see route
//	ctype   which of fhContentTypes; fhWrapMultipart builds a multipart form from the body
//	body    the request body (for fhWrapMultipart: fields "name=value" split on fhFieldSep;
//	        "image" and names starting with @ are file parts)
//	hdr     bits 0-2: API key (fhKeyNone...fhBasic); bits 3-4: Origin (none, listed, same,
//	        foreign); bit 5: Access-Control-Request-Method; bits 6-7: Host (3: one the server
//	        refuses)
//
// and every answer must be: not a 500 (gin's recovery answers a panic with one), a documented
// status, a JSON error {"error": {"code", "message"}} with its content type when not 2xx (401:
// with WWW-Authenticate), valid JSON when 2xx JSON, a bounded body (/metrics: a smaller
// bound, its labels must not take values from requests), an X-Request-ID, 2xx on /v1/ only
// with a key of the scope the route needs, never 2xx for a foreign origin's writes, CORS
// headers for the listed origin, and 421 for an unknown host. The gallery persists across
// inputs; fuzzServer.reset keeps it small. Found failures go to testdata/fuzz/FuzzHandler.
func FuzzHandler(f *testing.F) {
	fs := newFuzzServer(f)
	for _, s := range fhSeeds(f, fs.png) {
		f.Add(s.method, s.route, s.path, s.ctype, s.body, s.hdr)
	}
	f.Fuzz(func(t *testing.T, method, route byte, path string, ctype byte, body []byte, hdr byte) {
		fs.check(t, method, route, path, ctype, body, hdr)
	})
}

const (
	fhMaxBody     = 64 << 10
	fhMaxResponse = 4 << 20
	fhMaxMetrics  = 256 << 10
	fhHost        = "uniter.test"
	fhOrigin      = "https://app.example" // listed in CORSOrigins
	fhReadKey     = "read-secret-0123456789"
	fhWriteKey    = "write-secret-0123456789"
	fhImageID     = "img-0" // stored before fuzzing, kept stored
)

var fhMethods = [8]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete, http.MethodOptions,
	http.MethodPut, http.MethodPatch, "PROPFIND"}

// fhRoutes are prefixes of the request target; the fuzzed path string is appended (an id, a
// "?query", a further segment, a trailing slash).
var fhRoutes = []string{
	"/healthz", "/readyz", "/v1/models",
	"/v1/match", "/v1/align", "/v1/regions", "/v1/fill-mask", "/v1/vqa", "/v1/entailment", "/v1/nlvr2", "/v1/refer",
	"/v1/images", "/v1/images/", "/v1/texts", "/v1/texts/",
	"/v1/search/images", "/v1/search/texts",
	"/", "/static/", "/metrics", "/openapi.json",
	"/v1/gallery", // appended last: the corpus's route numbers stay what they were
}

// fhRawPath and larger route bytes send the fuzzed path string as it is.
const fhRawPath = 0xF0

const (
	fhNoType        = iota
	fhJSON          // application/json
	fhJSONCharset   // application/json; charset=utf-8
	fhWrapMultipart // a multipart form made from the body's fields
	fhRawMultipart  // multipart/form-data; boundary=fuzz, the body as it is
	fhNoBoundary    // multipart/form-data without a boundary
	fhText          // text/plain
	fhForm          // application/x-www-form-urlencoded
	fhBadParams     // multipart/form-data with an unparsable parameter list
)

var fhContentTypes = [...]string{
	fhNoType: "", fhJSON: "application/json", fhJSONCharset: "application/json; charset=utf-8",
	fhWrapMultipart: "", fhRawMultipart: "multipart/form-data; boundary=fuzz", fhNoBoundary: "multipart/form-data",
	fhText: "text/plain", fhForm: "application/x-www-form-urlencoded", fhBadParams: `multipart/form-data; boundary="fuzz`,
}

// fhFieldSep splits the fields of a body that fhWrapMultipart turns into a form.
var fhFieldSep = []byte("\x00&\x00")

const (
	fhKeyNone = iota
	fhKeyRead
	fhKeyWrite
	fhKeyWrong
	fhBearerRead
	fhBearerWrite
	fhBearerWrong
	fhBasic
)

const (
	fhOriginNone = iota << 3
	fhOriginListed
	fhOriginSame
	fhOriginForeign
)

const (
	fhPreflight = 1 << 5
	fhBadHost   = 3 << 6
)

type fuzzServer struct {
	h   http.Handler
	svc *retrieval.Service
	st  *gallery.Bolt
	png []byte // the stored image fhImageID
	log *fhLog
}

// newFuzzServer serves the fixture bundle with keys, allowed hosts, a CORS origin, the page and
// a gallery holding fhImageID and two texts.
func newFuzzServer(t testing.TB) *fuzzServer {
	log := &fhLog{}
	s := newTestServer(t, serverOptions{
		config: api.Config{MaxBodyBytes: fhMaxBody, RequestTimeout: 10 * time.Second, MaxInFlight: 4,
			IndexHTML: []byte("<!doctype html><title>uniter</title>"),
			Assets:    fstest.MapFS{"app.js": {Data: []byte("let x = 1;")}, "css/style.css": {Data: []byte("body{}")}},
			Access: api.Access{Keys: parseKeys(t, "reader:read:"+fhReadKey, "writer:write:"+fhWriteKey),
				AllowedHosts: []string{fhHost, "localhost"}, CORSOrigins: []string{fhOrigin}}},
		pipeline: &pipeline.Options{MaxRegions: 10, MaxTexts: 4, CacheBytes: 16 << 20,
			Decode: detector.DecodeLimits{MaxBytes: 48 << 10, MaxPixels: 1 << 20}},
		gallery: true, galleryDir: fhTempDir(t),
		search: retrieval.Config{MaxLimit: 20, MaxOffset: 50, Candidates: 4, MaxCandidates: 20},
		log:    slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	fs := &fuzzServer{h: s.Handler(), svc: s.svc, st: s.store, png: fhPNG(t, 0, 40, 32), log: log}
	fhCoversRoutes(t, fs.h)
	fs.reset(t)
	return fs
}

// fhCoversRoutes fails when the server has a route the fuzzer cannot reach: a path whose
// static part (up to its first parameter) is not in fhRoutes, or a method not in fhMethods.
func fhCoversRoutes(t testing.TB, h http.Handler) {
	engine, ok := h.(interface{ Routes() gin.RoutesInfo })
	if !ok {
		t.Logf("the handler (%T) does not list its routes: not checking that fhRoutes has them all", h)
		return
	}
	for _, r := range engine.Routes() {
		static, _, _ := strings.Cut(r.Path, ":")
		static, _, _ = strings.Cut(static, "*")
		if !slices.Contains(fhRoutes, static) || !slices.Contains(fhMethods[:], r.Method) {
			t.Fatalf("route %s %s: add %q to fhRoutes (and %s to fhMethods) so that FuzzHandler reaches it", r.Method, r.Path, static, r.Method)
		}
	}
}

// fhTempDir is a temporary folder in memory where there is one, so that bbolt's sync of every
// commit costs no disk I/O (each gallery write still waits ~10 ms: gallery.Bolt writes through
// bbolt's Batch, whose MaxBatchDelay is 10 ms).
func fhTempDir(t testing.TB) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "uniter-fuzz-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// reset keeps the gallery small (searches score all of it) and its seeds stored: past a few
// images or texts it deletes what the fuzzer added; fhImageID and the texts a and b come back.
func (fs *fuzzServer) reset(t testing.TB) {
	ctx := context.Background()
	stats, err := fs.st.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Images > 8 {
		imgs, _, err := fs.st.ListImages(ctx, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range imgs {
			if img.ID != fhImageID {
				if err := fs.st.DeleteImage(ctx, img.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if stats.Texts > 32 {
		texts, _, err := fs.st.ListTexts(ctx, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, tx := range texts {
			if err := fs.st.DeleteText(ctx, tx.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := fs.st.Image(ctx, fhImageID, 0); err != nil {
		if other, err := fs.st.ImageBySHA256(ctx, sha256hex(fs.png)); err == nil {
			if err := fs.st.DeleteImage(ctx, other); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := fs.svc.AddImage(ctx, fs.png, fhImageID, json.RawMessage(`{"seed": true}`)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"a", "b"} {
		if _, err := fs.st.Text(ctx, id); err != nil {
			if err := fs.st.DeleteText(ctx, id); err != nil && !isNotFound(err) {
				t.Fatal(err)
			}
			text := map[string]string{"a": "a red circle", "b": "two green squares"}[id]
			if _, err := fs.svc.AddTexts(ctx, []*gallery.Text{{ID: id, Text: text}}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// request builds the request an input describes; ok is false for a target no HTTP server
// would pass on (net/http answers those 400 itself).
func fhRequest(method, route byte, path string, ctype byte, body []byte, hdr byte) (req *http.Request, ok bool) {
	target := path
	if route < fhRawPath {
		target = fhRoutes[int(route)%len(fhRoutes)] + path
	}
	if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n") {
		return nil, false
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false
	}
	if method&(1<<4) != 0 {
		body = append(bytes.Clone(body), bytes.Repeat([]byte{' '}, fhMaxBody)...)
	}
	ct := fhContentTypes[int(ctype)%len(fhContentTypes)]
	if int(ctype)%len(fhContentTypes) == fhWrapMultipart {
		ct, body = fhMultipart(body)
	}
	req = httptest.NewRequest(http.MethodGet, "/", bytes.NewReader(body))
	req.Method = fhMethods[method&7]
	req.URL, req.RequestURI, req.Host = u, target, fhHost
	if method&(1<<3) != 0 {
		req.ContentLength = -1
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	switch hdr & 7 {
	case fhKeyRead:
		req.Header.Set("X-API-Key", fhReadKey)
	case fhKeyWrite:
		req.Header.Set("X-API-Key", fhWriteKey)
	case fhKeyWrong:
		req.Header.Set("X-API-Key", "wrong-secret-0123456789")
	case fhBearerRead:
		req.Header.Set("Authorization", "Bearer "+fhReadKey)
	case fhBearerWrite:
		req.Header.Set("Authorization", "Bearer  "+fhWriteKey+" ")
	case fhBearerWrong:
		req.Header.Set("Authorization", "Bearer ")
	case fhBasic:
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("x:"+fhWriteKey)))
	}
	switch hdr & (3 << 3) {
	case fhOriginListed:
		req.Header.Set("Origin", fhOrigin)
	case fhOriginSame:
		req.Header.Set("Origin", "http://"+fhHost)
	case fhOriginForeign:
		req.Header.Set("Origin", "https://evil.example")
	}
	if hdr&fhPreflight != 0 {
		req.Header.Set("Access-Control-Request-Method", http.MethodPost)
	}
	switch hdr >> 6 {
	case 2:
		req.Host = "LOCALHOST:8080"
	case 3:
		req.Host = "evil.example"
	}
	return req, true
}

// fhMultipart makes a form of the body's fields: "name=value" split on fhFieldSep; "image" and
// names starting with @ are file parts.
func fhMultipart(body []byte) (string, []byte) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	_ = w.SetBoundary("fuzz-boundary")
	for _, field := range bytes.Split(body, fhFieldSep) {
		name, value, _ := bytes.Cut(field, []byte("="))
		n := string(name)
		var part io.Writer
		var err error
		if file, ok := strings.CutPrefix(n, "@"); ok || n == "image" {
			if ok {
				n = file
			}
			part, err = w.CreateFormFile(n, "upload.bin")
		} else {
			h := make(textproto.MIMEHeader)
			h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q`, n))
			part, err = w.CreatePart(h)
		}
		if err != nil {
			continue
		}
		part.Write(value)
	}
	w.Close()
	return w.FormDataContentType(), buf.Bytes()
}

// fhStatuses are the statuses the API documents.
var fhStatuses = map[int]bool{200: true, 201: true, 204: true, 400: true, 401: true, 403: true, 404: true, 405: true,
	409: true, 413: true, 415: true, 421: true, 499: true, 503: true, 504: true}

func (fs *fuzzServer) check(t *testing.T, method, route byte, path string, ctype byte, body []byte, hdr byte) {
	req, ok := fhRequest(method, route, path, ctype, body, hdr)
	if !ok {
		return
	}
	what := fmt.Sprintf("%s %q (Content-Type %q, X-API-Key %q, Authorization %q, Origin %q, Host %q, Content-Length %d) body %s",
		req.Method, req.RequestURI, req.Header.Get("Content-Type"), req.Header.Get("X-API-Key"), req.Header.Get("Authorization"),
		req.Header.Get("Origin"), req.Host, req.ContentLength, fhCut(body))
	fs.log.reset()
	rec := httptest.NewRecorder()
	fs.h.ServeHTTP(rec, req)
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf("%s\n→ %d %s\n%s\nserver log: %s", what, rec.Code, fhCut(rec.Body.Bytes()), fmt.Sprintf(format, a...), fs.log.String())
	}
	status := rec.Code
	if status == http.StatusInternalServerError {
		fail("internal error")
	}
	if !fhStatuses[status] {
		fail("undocumented status %d", status)
	}
	if rec.Body.Len() > fhMaxResponse {
		fail("response body of %d bytes", rec.Body.Len())
	}
	if req.URL.Path == "/metrics" && rec.Body.Len() > fhMaxMetrics {
		fail("metrics of %d bytes: a label takes values from requests?", rec.Body.Len())
	}
	if rec.Header().Get("X-Request-ID") == "" {
		fail("no X-Request-ID")
	}
	ok2xx := status >= 200 && status < 300
	if !ok2xx {
		var e api.ErrorBody
		dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil || dec.More() || e.Error.Code == "" || e.Error.Message == "" {
			fail("the body is not a JSON error with a code and a message (%v)", err)
		}
		if e.Error.Code == "internal" {
			fail("code internal")
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			fail("error with Content-Type %q", ct)
		}
		if status == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
			fail("401 without WWW-Authenticate")
		}
	} else if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") && !json.Valid(rec.Body.Bytes()) {
		fail("2xx with invalid JSON")
	}
	// Access: an unknown host is refused before anything; a foreign page writes nothing; /v1/
	// answers only a key with the scope.
	if hdr>>6 == 3 && status != http.StatusMisdirectedRequest {
		fail("host %q: want 421", req.Host)
	}
	if ok2xx && hdr&(3<<3) == fhOriginListed && rec.Header().Get("Access-Control-Allow-Origin") != fhOrigin {
		fail("a listed origin's %d without Access-Control-Allow-Origin", status)
	}
	if ok2xx && hdr&(3<<3) == fhOriginForeign && req.Method != http.MethodGet && req.Method != http.MethodHead {
		fail("a foreign origin's %s succeeded", req.Method)
	}
	if need := fhScope(req.Method, req.URL.Path); ok2xx && need != "" && !(status == http.StatusNoContent && req.Method == http.MethodOptions) {
		var have api.Scope
		switch hdr & 7 {
		case fhKeyRead, fhBearerRead:
			have = api.ScopeRead
		case fhKeyWrite, fhBearerWrite:
			have = api.ScopeWrite
		}
		if have == "" || (need == api.ScopeWrite && have != api.ScopeWrite) {
			fail("answered %d to a request needing scope %s with key scope %q", status, need, have)
		}
	}
	if ok2xx && (req.Method == http.MethodPost || req.Method == http.MethodDelete) {
		fs.reset(t)
	}
}

// fhScope is the scope a route needs: write for gallery changes, read for the rest of /v1/.
func fhScope(method, path string) api.Scope {
	if !strings.HasPrefix(path, "/v1/") {
		return ""
	}
	seg := strings.Split(strings.TrimPrefix(path, "/v1/"), "/")
	if (seg[0] == "images" || seg[0] == "texts") &&
		((method == http.MethodPost && len(seg) == 1) || (method == http.MethodDelete && len(seg) == 2)) {
		return api.ScopeWrite
	}
	return api.ScopeRead
}

func fhCut(b []byte) string {
	if len(b) > 512 {
		return fmt.Sprintf("%q… (%d bytes)", b[:512], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// fhLog keeps what the server logged during one request (bounded).
type fhLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *fhLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() < 8<<10 {
		l.buf.Write(p)
	}
	return len(p), nil
}

func (l *fhLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
}

func (l *fhLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func isNotFound(err error) bool { return errors.Is(err, gallery.ErrNotFound) }

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// fhPNG is a small picture, distinct per seed.
func fhPNG(t testing.TB, seed, w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x*9 + seed*31), uint8(y*7 + seed*17), uint8((x*y + seed) * 3), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), fhFieldSep) {
		t.Fatalf("test image %d holds the field separator", seed)
	}
	return buf.Bytes()
}

type fhSeed struct {
	method, route byte
	path          string
	ctype         byte
	body          []byte
	hdr           byte
}

// fhSeeds is one valid request per route and method, then known nasty ones.
func fhSeeds(t testing.TB, stored []byte) []fhSeed {
	route := func(prefix string) byte {
		for i, r := range fhRoutes {
			if r == prefix {
				return byte(i)
			}
		}
		t.Fatalf("no route %q", prefix)
		return 0
	}
	method := func(m string) byte {
		for i, x := range fhMethods {
			if x == m {
				return byte(i)
			}
		}
		t.Fatalf("no method %q", m)
		return 0
	}
	raw := byte(fhRawPath)
	fresh := fhPNG(t, 1, 36, 28)
	img := map[string]string{"data": base64.StdEncoding.EncodeToString(fresh)}
	regions := fixtureRegions(3)
	form := func(fields ...string) []byte {
		return bytes.Join(func() [][]byte {
			out := make([][]byte, len(fields))
			for i, f := range fields {
				out[i] = []byte(f)
			}
			return out
		}(), fhFieldSep)
	}
	image := "image=" + string(fresh)
	j := func(v any) []byte { raw, _ := json.Marshal(v); return raw }
	get, head, post, del, opts := method(http.MethodGet), method(http.MethodHead), method(http.MethodPost), method(http.MethodDelete), method(http.MethodOptions)
	r, w := byte(fhKeyRead), byte(fhKeyWrite)
	seeds := []fhSeed{
		// Probes and models.
		{get, route("/healthz"), "", fhNoType, nil, fhKeyNone},
		{head, route("/healthz"), "", fhNoType, nil, fhKeyNone},
		{get, route("/readyz"), "", fhNoType, nil, fhKeyNone},
		{get, route("/v1/models"), "", fhNoType, nil, r},
		{get, route("/v1/models"), "", fhNoType, nil, fhKeyNone},
		{get, route("/v1/models"), "", fhNoType, nil, fhKeyWrong},
		{get, route("/v1/models"), "", fhNoType, nil, fhBearerRead},
		{get, route("/"), "", fhNoType, nil, fhKeyNone},
		{get, route("/static/"), "app.js", fhNoType, nil, fhKeyNone},
		{get, route("/static/"), "../go.mod", fhNoType, nil, fhKeyNone},
		{get, route("/metrics"), "", fhNoType, nil, fhKeyNone},
		{get, route("/openapi.json"), "", fhNoType, nil, fhKeyNone},
		// Inference, JSON.
		{post, route("/v1/match"), "", fhJSON, j(map[string]any{"regions": regions, "texts": []string{"a red square", "two dogs"}}), r},
		{post, route("/v1/match"), "", fhJSON, j(map[string]any{"image": img, "texts": []string{"a red square"}}), w},
		{post, route("/v1/align"), "", fhJSONCharset, j(map[string]any{"regions": regions, "text": "two playing dogs", "top_regions": 2, "attention": true}), r},
		{post, route("/v1/regions"), "", fhJSON, j(map[string]any{"image": img, "top_labels": 2, "features": true, "text": "a circle"}), r},
		{post, route("/v1/fill-mask"), "", fhNoType, j(map[string]any{"regions": regions, "text": "a red [MASK]", "top_k": 3, "without_image": true}), r},
		// Inference, multipart.
		{post, route("/v1/match"), "", fhWrapMultipart, form(image, "text=a red square", "text=a blue star"), r},
		{post, route("/v1/align"), "", fhWrapMultipart, form(image, "text=a red square", "top_regions=2", "attention=true"), r},
		{post, route("/v1/regions"), "", fhWrapMultipart, form(image, "top_labels=2", "features=1", "text=a star"), r},
		{post, route("/v1/fill-mask"), "", fhWrapMultipart, form(image, "text=a [MASK] star", "top_k=2", "without_image=false"), r},
		// Gallery.
		{post, route("/v1/images"), "", fhJSON, j(map[string]any{"image": img, "id": "new-1", "metadata": map[string]any{"k": 1}}), w},
		{post, route("/v1/images"), "", fhJSON, j(map[string]any{"image": map[string]string{"data": base64.StdEncoding.EncodeToString(stored)}}), w},
		{post, route("/v1/images"), "", fhWrapMultipart, form(image, "id=new-2", `metadata={"caption": "x"}`), w},
		{post, route("/v1/images"), "", fhJSON, j(map[string]any{"image": img}), r},
		{get, route("/v1/images"), "?limit=1", fhNoType, nil, r},
		{get, route("/v1/images"), "?cursor=aW1nLTA&limit=2", fhNoType, nil, r},
		{get, route("/v1/images/"), fhImageID, fhNoType, nil, r},
		{get, route("/v1/images/"), fhImageID + "?features=true", fhNoType, nil, r},
		{get, route("/v1/images/"), fhImageID + "/thumbnail", fhNoType, nil, r},
		{head, route("/v1/images/"), fhImageID + "/thumbnail", fhNoType, nil, r},
		{get, route("/v1/images/"), "%00%ff..", fhNoType, nil, r},
		{del, route("/v1/images/"), "new-1", fhNoType, nil, w},
		{del, route("/v1/images/"), fhImageID, fhNoType, nil, r},
		{post, route("/v1/texts"), "", fhJSON, j(map[string]any{"texts": []map[string]any{{"id": "c", "text": "a blue star", "metadata": map[string]int{"n": 1}}, {"text": "an orange cat"}}}), w},
		{get, route("/v1/texts"), "?limit=1", fhNoType, nil, r},
		{get, route("/v1/texts/"), "a", fhNoType, nil, r},
		{del, route("/v1/texts/"), "c", fhNoType, nil, w},
		{post, route("/v1/search/images"), "", fhJSON, j(map[string]any{"text": "a red circle", "limit": 2, "evidence": true}), r},
		{post, route("/v1/search/images"), "", fhJSON, j(map[string]any{"text": "a red circle", "mode": "two_stage", "candidates": 2, "limit": 1, "evidence": true, "evidence_by": "ot"}), r},
		{post, route("/v1/search/texts"), "", fhJSON, j(map[string]any{"image_id": fhImageID, "limit": 2, "offset": 1, "evidence": true}), r},
		{post, route("/v1/search/texts"), "", fhJSON, j(map[string]any{"image": img, "mode": "two_stage"}), r},
		// Access and CORS.
		{opts, route("/v1/match"), "", fhNoType, nil, fhOriginListed | fhPreflight},
		{opts, route("/v1/match"), "", fhNoType, nil, fhOriginForeign | fhPreflight},
		{post, route("/v1/match"), "", fhJSON, j(map[string]any{"regions": regions, "texts": []string{"a"}}), fhKeyRead | fhOriginForeign},
		{post, route("/v1/match"), "", fhJSON, j(map[string]any{"regions": regions, "texts": []string{"a"}}), fhBearerWrite | fhOriginSame},
		{get, route("/v1/models"), "", fhNoType, nil, fhKeyRead | fhBadHost},
		{get, route("/healthz"), "", fhNoType, nil, 2 << 6},
		{post, route("/v1/texts"), "", fhJSON, j(map[string]any{"texts": []map[string]string{{"text": "x"}}}), fhBasic},
		{post, route("/v1/texts"), "", fhJSON, j(map[string]any{"texts": []map[string]string{{"text": "x"}}}), fhBearerWrong},
		// Unknown routes and methods.
		{get, raw, "/v1/nothing", fhNoType, nil, r},
		{method(http.MethodPut), route("/v1/match"), "", fhJSON, []byte("{}"), r},
		{method("PROPFIND"), raw, "/v1/images/x/y/z?q=%zz", fhNoType, nil, r},
		{get, route("/v1/images/"), "", fhNoType, nil, r},
		// Nasty bodies.
		{post, route("/v1/regions"), "", fhJSON, []byte(`{"image": {"data": "iVBORw0KGgo="}, "top_labels": 1000000000}`), r},
		{post, route("/v1/regions"), "", fhJSON, []byte(`{"image": {"data": "iVBORw0KGgo="}, "top_labels": 1e18}`), r},
		{post, route("/v1/fill-mask"), "", fhJSON, []byte(`{"regions": null, "text": "[MASK]", "top_k": -9223372036854775808}`), r},
		{post, route("/v1/align"), "", fhJSON, []byte(`{"text": "a", "top_regions": 99999999999999999999999}`), r},
		{post, route("/v1/match"), "", fhJSON, append(bytes.Repeat([]byte("["), 10000), bytes.Repeat([]byte("]"), 10000)...), r},
		{post, route("/v1/match"), "", fhJSON, []byte(`{"texts": ` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`), r},
		{post, route("/v1/match"), "", fhJSON, []byte(`{"regions": {"width": -1}}`), r},
		{post, route("/v1/align"), "", fhJSON, j(map[string]any{"regions": fixtureRegions(2), "texts": []string{"a dog", "\x00\u00ad"}}), r},
		{post, route("/v1/match"), "", fhJSON, j(map[string]any{"regions": fixtureRegions(2), "texts": []string{"a dog", "\x00\u00ad"}}), r},
		{post, route("/v1/search/images"), "", fhJSON, []byte(`{"text": "a red circle", "limit": 3, "mode": "two_stage", "candidates": 5, "evidence": true}`), r},
		{post, route("/v1/search/texts"), "", fhJSON, []byte(`{"image_id": "img-0", "offset": 1}`), r},
		{post, route("/v1/match"), "", fhJSON, []byte("{\"texts\": [\"\xff\xfe\xc0\xaf\", \"\x00\u00ad\"], \"regions\": {\"width\": -1}}"), r},
		{post, route("/v1/match"), "", fhJSON, []byte(`{"texts": ["a"], "regions": {"width": 10, "height": 10, "boxes": [[0,0,5,5]], "features": [[1]]}}`), r},
		{post, route("/v1/match"), "", fhJSON, []byte(`{"texts": [null], "regions": null}`), r},
		{post, route("/v1/search/images"), "", fhJSON, []byte(`{"text": "\u0000\u00ad", "limit": 1e3, "offset": -0}`), r},
		{post, route("/v1/search/texts"), "", fhJSON, []byte(`{"image_id": "img-0", "offset": 1, "candidates": 1e400}`), r},
		{post, route("/v1/images"), "", fhJSON, []byte(`{"image": {"data": "iVBORw0KGgo="}, "id": "a:b", "metadata": null}`), w},
		{post, route("/v1/texts"), "", fhJSON, []byte(`{"texts": [{"id": "x", "text": "two stars", "metadata": {"k": [1, 2]}}]}`), w},
		{post, route("/v1/match"), "", fhNoBoundary, []byte("--x\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\na\r\n--x--\r\n"), r},
		{post, route("/v1/regions"), "", fhRawMultipart, []byte("--fuzz\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a\"\r\n\r\n\x89PNG\r\n--fuzz"), r},
		{post, route("/v1/images"), "", fhBadParams, []byte("--fuzz--\r\n"), w},
		{post, route("/v1/images"), "", fhWrapMultipart, form("id=x", "image=", "@image=abc"), w},
		{post, route("/v1/fill-mask"), "", fhText, []byte(`{"text": "[MASK]"}`), r},
		{post | 1<<3, route("/v1/match"), "", fhJSON, j(map[string]any{"regions": regions, "texts": []string{"a"}}), r},
		{post | 1<<4, route("/v1/align"), "", fhWrapMultipart, form(image, "text=a"), r},
		{post | 1<<3 | 1<<4, route("/v1/texts"), "", fhJSON, []byte(`{"texts": [{"text": "padded"}]}`), w},
		{post | 1<<3 | 1<<4, route("/v1/regions"), "", fhWrapMultipart, form(image, "features=true"), r},
		{post | 1<<3 | 1<<4, route("/v1/images"), "", fhWrapMultipart, form(image, "id=padded"), w},
		{post, route("/v1/match"), "", fhRawMultipart, []byte("--fuzz\r\nno colon here\r\n\r\nx\r\n--fuzz--\r\n"), r},
		{post, route("/v1/images"), "", fhRawMultipart, []byte("--fuzz\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\nx"), w},
	}
	return seeds
}
