// Package openapitest checks HTTP answers against the service's OpenAPI document
// (api/openapi.yaml, as api.OpenAPIJSON serves it) with kin-openapi, for the tests: the api
// package's handler tests and the end-to-end tests in tests/, which validate every answer they
// get through Validator.Transport.
package openapitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/uniter-serve/uniter/api"
)

// Validator holds the loaded document and its router.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
	// unrouted answers the requests no operation matches: an unknown path (404), a method the
	// path does not have (405), a CORS preflight (204).
	unrouted *openapi3.Operation
}

var (
	loadOnce sync.Once
	loaded   *Validator
	loadErr  error
)

// Load parses and validates the document (once per process) and returns its validator.
func Load() (*Validator, error) {
	loadOnce.Do(func() { loaded, loadErr = load() })
	return loaded, loadErr
}

func load() (*Validator, error) {
	raw, err := api.OpenAPIJSON()
	if err != nil {
		return nil, err
	}
	doc, err := LoadDocument(raw)
	if err != nil {
		return nil, err
	}
	// The router matches paths only: the tests' servers listen on other ports than servers[0].
	routed := *doc
	routed.Servers = nil
	router, err := gorillamux.NewRouter(&routed)
	if err != nil {
		return nil, fmt.Errorf("openapi: router: %w", err)
	}
	registerDecoders()
	resp := func(name string) *openapi3.ResponseRef {
		return &openapi3.ResponseRef{Ref: "#/components/responses/" + name, Value: doc.Components.Responses[name].Value}
	}
	requestID := doc.Components.Headers["X-Request-ID"]
	preflight := openapi3.NewResponse().WithDescription("A CORS preflight from a listed origin.")
	preflight.Headers = openapi3.Headers{
		"X-Request-ID": requestID,
		"Access-Control-Allow-Origin": &openapi3.HeaderRef{Value: &openapi3.Header{Parameter: openapi3.Parameter{
			Required: true, Schema: openapi3.NewStringSchema().WithMinLength(1).NewRef()}}},
	}
	unrouted := &openapi3.Operation{Responses: openapi3.NewResponses(
		openapi3.WithStatus(204, &openapi3.ResponseRef{Value: preflight}),
		openapi3.WithStatus(404, resp("NotFound")),
		openapi3.WithStatus(405, resp("MethodNotAllowed")),
		openapi3.WithStatus(421, resp("UnknownHost")),
		openapi3.WithStatus(500, resp("Internal")),
	)}
	return &Validator{doc: doc, router: router, unrouted: unrouted}, nil
}

// LoadDocument loads an OpenAPI document and validates it (its examples included).
func LoadDocument(raw []byte) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(raw)
	if err != nil {
		return nil, fmt.Errorf("openapi: loading: %w", err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("openapi: the document is not valid: %w", err)
	}
	return doc, nil
}

var decodersOnce sync.Once

// registerDecoders teaches openapi3filter the media types of the answers that are not JSON.
func registerDecoders() {
	decodersOnce.Do(func() {
		asString := func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
			raw, err := io.ReadAll(body)
			return string(raw), err
		}
		for _, ct := range []string{"text/html", "image/jpeg", "application/openmetrics-text"} {
			openapi3filter.RegisterBodyDecoder(ct, asString)
		}
	})
}

// Doc is the loaded document.
func (v *Validator) Doc() *openapi3.T { return v.doc }

// Schema is a component schema by name, or nil.
func (v *Validator) Schema(name string) *openapi3.Schema {
	if ref := v.doc.Components.Schemas[name]; ref != nil {
		return ref.Value
	}
	return nil
}

// CheckValue validates a decoded JSON value (encoding/json's any) against a component schema.
func (v *Validator) CheckValue(schema string, value any) error {
	s := v.Schema(schema)
	if s == nil {
		return fmt.Errorf("openapi: no schema %q", schema)
	}
	return s.VisitJSON(value, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse())
}

// Operation is the operation that answers method and path (a path as sent, no query), or an
// error saying why none does.
func (v *Validator) Operation(method, path string) (*routers.Route, map[string]string, error) {
	req, err := http.NewRequest(method, "http://localhost"+routedPath(path), nil)
	if err != nil {
		return nil, nil, err
	}
	return v.router.FindRoute(req)
}

// routedPath maps /static/<any/path> onto /static/{path}, which the router matches as one
// segment only.
func routedPath(p string) string {
	if rest, ok := strings.CutPrefix(p, "/static/"); ok && rest != "" {
		return "/static/file"
	}
	return p
}

// Check validates one answer to req: its status must be documented for the operation, with
// the headers and the body schema the document gives it. Requests no operation matches must
// be answered 404 (unknown path) or 405 (a method the path does not have) with the error body.
func (v *Validator) Check(req *http.Request, status int, header http.Header, body []byte) error {
	ctx := context.Background()
	route, params, err := v.router.FindRoute(routedRequest(req))
	switch {
	case errors.Is(err, routers.ErrPathNotFound) || errors.Is(err, routers.ErrMethodNotAllowed):
		want := http.StatusNotFound
		if errors.Is(err, routers.ErrMethodNotAllowed) {
			want = http.StatusMethodNotAllowed
		}
		switch {
		case req.Method == http.MethodOptions && status == http.StatusNoContent:
		case status == want, status == http.StatusMisdirectedRequest, status == http.StatusInternalServerError:
		default:
			return fmt.Errorf("%s %s matches no operation of the document (%v): status %d, want %d", req.Method, req.URL.Path, err, status, want)
		}
		route = &routers.Route{Spec: v.doc, Path: req.URL.Path, Method: req.Method, Operation: v.unrouted}
	case err != nil:
		return fmt.Errorf("%s %s: finding the operation: %w", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if req.Method == http.MethodHead {
		// ValidateResponse skips HEAD answers: check the status and headers as a GET's, against
		// the HEAD operation, and that there is no body.
		if len(body) > 0 {
			return fmt.Errorf("HEAD %s: a body of %d bytes", req.URL.Path, len(body))
		}
		get := req.Clone(ctx)
		get.Method = http.MethodGet
		in.RequestValidationInput.Request = get
		in.Options.ExcludeResponseBody = true
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
		return fmt.Errorf("%s %s → %d: %w\nbody: %s", req.Method, req.URL.Path, status, err, cut(body))
	}
	return nil
}

// routedRequest is req as the router should see it.
func routedRequest(req *http.Request) *http.Request {
	if p := routedPath(req.URL.Path); p != req.URL.Path {
		r := req.Clone(context.Background())
		r.URL.Path, r.URL.RawPath = p, ""
		return r
	}
	return req
}

func cut(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + fmt.Sprintf("… (%d bytes)", len(b))
	}
	return string(b)
}

// Transport wraps next: every answer's body is read in full, checked with Check and handed on
// unchanged; a failed check goes to report. Answers whose body could not be read in full (a
// canceled request, a dropped connection) are passed on unchecked, their read error intact.
func (v *Validator) Transport(next http.RoundTripper, report func(req *http.Request, err error)) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(req)
		if err != nil {
			return resp, err
		}
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr != nil {
			resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{rerr}))
			return resp, nil
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err := v.Check(req, resp.StatusCode, resp.Header, body); err != nil {
			report(req, err)
		}
		return resp, nil
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
