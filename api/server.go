// Package api is the HTTP face of the service: wire types, thin gin handlers that decode,
// call the model and encode, and the one mapping from errors to statuses (statusOf).
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/pipeline"
)

// Model is what the handlers need from a loaded bundle.
type Model interface {
	Match(ctx context.Context, in pipeline.Input, texts []string) (*pipeline.MatchOutput, error)
	Align(ctx context.Context, in pipeline.Input, text string, opts pipeline.AlignOptions) (*pipeline.Alignment, error)
	Detect(ctx context.Context, image []byte) (*detector.Detection, bool, error)
	FillMask(ctx context.Context, in pipeline.Input, text string, opts pipeline.FillMaskOptions) (*pipeline.FillMaskOutput, error)
	RegionClasses(ctx context.Context, regions *detector.Prepared, text string) (*pipeline.RegionClassesOutput, error)
	VQA(ctx context.Context, in pipeline.Input, question string, topK int) (*pipeline.VQAOutput, error)
	Entail(ctx context.Context, in pipeline.Input, hypothesis string) (*pipeline.EntailmentOutput, error)
	NLVR2(ctx context.Context, in [2]pipeline.Input, statement string) (*pipeline.NLVR2Output, error)
	Refer(ctx context.Context, in pipeline.Input, expression string, topK int) (*pipeline.ReferOutput, error)
	CacheStats() pipeline.CacheStats
	GraphWaiting() int
	Observe(o pipeline.Observer) // called once, by New or AddModel
}

// Config holds the HTTP limits.
type Config struct {
	MaxBodyBytes   int64         // request bodies above this get 413
	IndexHTML      []byte        // the page served at /; none when empty
	Assets         fs.FS         // the page's files, served under /static/; none when nil
	RequestTimeout time.Duration // per-request deadline for model work; 0: none
	// MaxInFlight is the most model requests (match, align, regions, fill-mask, image
	// uploads, searches) in the server at once, running or waiting; one more gets 503 before
	// its body is read. 0 means 65.
	MaxInFlight int
	Access      Access // keys, hosts and origins
}

// served is one loaded bundle the server answers for.
type served struct {
	model  Model
	info   ModelInfo
	labels Labels
}

// Server routes requests to its models: the first is the default, a request's "model" field
// picks another. Each model has its own graph queue (its bundle's scheduler); admission is
// shared.
type Server struct {
	cfg     Config
	models  []*served // the default first
	log     *slog.Logger
	ready   atomic.Bool
	admit   *admission
	metrics *metrics
	active  sync.WaitGroup // requests in a handler
	// gallery serves /v1/images, /v1/texts and /v1/search (api/gallery.go); nil: none.
	gallery Gallery
	// demo is the demo gallery fill's progress (GET /v1/gallery); nil: none runs.
	demo *DemoProgress
}

// New makes a server for model, described by info in GET /v1/pipeline. It is not ready until
// SetReady(true) (after warm-up).
func New(cfg Config, model Model, info ModelInfo, labels Labels, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 65
	}
	s := &Server{cfg: cfg, models: []*served{{model: model, info: info, labels: labels}}, log: log, admit: newAdmission(cfg.MaxInFlight)}
	s.metrics = newMetrics(s)
	model.Observe(s.metrics)
	return s
}

// AddModel serves one more model, named by info.Name in requests' "model" field. Call it
// before Handler; names must differ.
func (s *Server) AddModel(model Model, info ModelInfo, labels Labels) error {
	for _, m := range s.models {
		if m.info.Name == info.Name {
			return fmt.Errorf("two models are named %q: each served model needs its own name", info.Name)
		}
	}
	s.models = append(s.models, &served{model: model, info: info, labels: labels})
	model.Observe(s.metrics)
	return nil
}

// def is the default model (the first).
func (s *Server) def() *served { return s.models[0] }

// pick is the model a request names; "" is the default.
func (s *Server) pick(name string) (*served, error) {
	if name == "" {
		return s.def(), nil
	}
	var names []string
	for _, m := range s.models {
		if m.info.Name == name {
			return m, nil
		}
		names = append(names, strconv.Quote(m.info.Name))
	}
	return nil, &requestError{status: http.StatusNotFound, code: "unknown_model",
		message: fmt.Sprintf("model %s is not served here; served: %s (GET /v1/models)", quoteInput(name), strings.Join(names, ", "))}
}

// SetReady marks the models loaded and warmed up (GET /readyz).
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Handler is the gin engine with every route.
func (s *Server) Handler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	_ = r.SetTrustedProxies(nil)
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false // a 301 to another path is no answer for an API client: 404
	r.Use(func(c *gin.Context) {
		s.active.Add(1)
		defer s.active.Done()
		c.Next()
	}, s.observe)
	r.Use(gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, rec any) {
		s.logger(c).Error("panic in handler", "panic", rec, "route", c.FullPath())
		s.writeError(c, fmt.Errorf("panic: %v", rec))
	}))
	r.Use(s.checkHost, s.crossOrigin, s.limitBody)
	r.NoRoute(func(c *gin.Context) {
		s.writeError(c, &requestError{status: http.StatusNotFound, code: "not_found", message: "no route " + c.Request.URL.Path})
	})
	r.NoMethod(func(c *gin.Context) {
		s.writeError(c, &requestError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			message: c.Request.Method + " is not allowed on " + c.Request.URL.Path})
	})
	if len(s.cfg.IndexHTML) > 0 {
		// c.Data, not FileFromFS: gin's FileFromFS redirects index.html forever.
		get(r, "/", func(c *gin.Context) { c.Data(http.StatusOK, "text/html; charset=utf-8", s.cfg.IndexHTML) })
	}
	if s.cfg.Assets != nil {
		get(r, "/static/*path", s.static)
	}
	get(r, "/metrics", s.serveMetrics)
	get(r, "/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	get(r, "/openapi.json", s.openAPI)
	get(r, "/readyz", func(c *gin.Context) {
		if !s.ready.Load() {
			s.writeError(c, &requestError{status: http.StatusServiceUnavailable, code: "not_ready", message: "models are loading"})
			return
		}
		if err := s.pingGallery(c.Request.Context()); err != nil {
			s.logger(c).Warn("not ready: the gallery cannot be reached", "err", err)
			s.writeError(c, &requestError{status: http.StatusServiceUnavailable, code: "not_ready", message: "the gallery's database cannot be reached"})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
	})
	read := s.authorize(ScopeRead)
	get(r, "/v1/models", read, s.handle(func(c *gin.Context) (any, error) {
		var resp ModelsResponse
		for _, m := range s.models {
			info := m.info
			st := m.model.CacheStats()
			info.DetectorCache = &CacheInfo{Hits: st.Hits, Misses: st.Misses, Entries: st.Entries, Bytes: st.Bytes, MaxBytes: st.MaxBytes}
			resp.Models = append(resp.Models, info)
		}
		return resp, nil
	}))
	admit := s.admit.middleware(s)
	r.POST("/v1/match", read, admit, s.handle(s.match))
	r.POST("/v1/align", read, admit, s.handle(s.align))
	r.POST("/v1/regions", read, admit, s.handle(s.regions))
	r.POST("/v1/fill-mask", read, admit, s.handle(s.fillMask))
	r.POST("/v1/vqa", read, admit, s.handle(s.vqa))
	r.POST("/v1/entailment", read, admit, s.handle(s.entailment))
	r.POST("/v1/nlvr2", read, admit, s.handle(s.nlvr2))
	r.POST("/v1/refer", read, admit, s.handle(s.refer))
	s.galleryRoutes(r)
	return r
}

// Wait returns once no request is in a handler any more, or with ctx's error. Call it after
// the HTTP server stopped taking requests (http.Server.Shutdown or Close), before closing
// what the handlers use.
func (s *Server) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.active.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// get serves a GET route and its HEAD (net/http drops the body of a HEAD answer).
func get(r gin.IRoutes, path string, h ...gin.HandlerFunc) {
	r.GET(path, h...)
	r.HEAD(path, h...)
}

// limitBody caps every request body; reading past the cap fails with *http.MaxBytesError.
func (s *Server) limitBody(c *gin.Context) {
	if s.cfg.MaxBodyBytes > 0 {
		if c.Request.ContentLength > s.cfg.MaxBodyBytes {
			s.writeError(c, tooLarge(s.cfg.MaxBodyBytes))
			c.Abort()
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	}
	c.Next()
}

func tooLarge(limit int64) error {
	return &requestError{status: http.StatusRequestEntityTooLarge, code: "body_too_large",
		message: fmt.Sprintf("request body exceeds the limit of %d bytes", limit)}
}

// handle adapts a handler that returns a result or an error.
func (s *Server) handle(h func(c *gin.Context) (any, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		res, err := h(c)
		if err != nil {
			s.writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, res)
	}
}

func (s *Server) writeError(c *gin.Context, err error) {
	status, detail := statusOf(err, s.logger(c))
	c.AbortWithStatusJSON(status, ErrorBody{Error: detail})
}

// context gives model work the request's context plus the configured deadline.
func (s *Server) context(c *gin.Context) (context.Context, context.CancelFunc) {
	if s.cfg.RequestTimeout > 0 {
		return context.WithTimeout(c.Request.Context(), s.cfg.RequestTimeout)
	}
	return context.WithCancel(c.Request.Context())
}

// decodeJSON reads exactly one JSON object into dst, rejecting unknown fields. orMultipart
// says whether the endpoint also takes multipart/form-data (read by its caller), for the
// message about another content type.
func (s *Server) decodeJSON(c *gin.Context, dst any, orMultipart bool) error {
	if ct := c.ContentType(); ct != "" && ct != "application/json" {
		want := "application/json"
		if orMultipart {
			want += " or multipart/form-data"
		}
		return &requestError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
			message: fmt.Sprintf("content type %s: send %s", quoteInput(ct), want)}
	}
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err == nil {
		return nil
	}
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return tooLarge(maxErr.Limit)
	case errors.Is(err, io.EOF):
		return badRequest("malformed_json", "request body is empty: send a JSON object")
	case errors.As(err, &syntaxErr):
		return badRequest("malformed_json", "malformed JSON at byte %d: %v", syntaxErr.Offset, err)
	case errors.As(err, &typeErr):
		return badRequest("malformed_json", "%s: got JSON %s, want %s", jsonPath(typeErr.Field), cut(typeErr.Value), jsonType(typeErr.Type))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return badRequest("unknown_field", "unknown field %s", quoteInput(name))
	}
	return badRequest("malformed_json", "malformed JSON: %v", err)
}

func since(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// modelCall is the work of a model endpoint once its request is read: it returns the answer,
// the model's timing (for the stage metrics) and where the answer's total time goes.
type modelCall func(ctx context.Context, m *served, req request) (resp any, t pipeline.Timing, total *float64, err error)

// serveModel is every model endpoint: it reads the request (JSON through fromJSON, or
// multipart with fields), picks the model it names, runs call under the request's context and
// deadline, and records the timings.
func (s *Server) serveModel(c *gin.Context, body any, fromJSON func() (request, error), fields map[string]bool, call modelCall) (any, error) {
	start := time.Now()
	req, err := s.readRequest(c, body, fromJSON, fields)
	if err != nil {
		return nil, err
	}
	m, err := s.pick(req.model)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.context(c)
	defer cancel()
	resp, t, total, err := call(ctx, m, req)
	if err != nil {
		return nil, err
	}
	s.metrics.timing(t)
	*total = since(start)
	return resp, nil
}

func (s *Server) match(c *gin.Context) (any, error) {
	var body MatchRequest
	return s.serveModel(c, &body, func() (request, error) {
		in, err := toInput(body.Image, body.Regions, false)
		return request{input: in, texts: body.Texts, model: body.Model}, err
	}, map[string]bool{"text": true}, func(ctx context.Context, m *served, req request) (any, pipeline.Timing, *float64, error) {
		out, err := m.model.Match(ctx, req.input, req.texts)
		if err != nil {
			return nil, pipeline.Timing{}, nil, err
		}
		resp := NewMatchResponse(out, m.info.Name)
		return &resp, out.Timing, &resp.Timings.Total, nil
	})
}

func (s *Server) align(c *gin.Context) (any, error) {
	var body AlignRequest
	return s.serveModel(c, &body, func() (request, error) {
		in, err := toInput(body.Image, body.Regions, false)
		return request{input: in, text: body.Text, topRegions: body.TopRegions, attention: body.Attention, model: body.Model}, err
	}, map[string]bool{"text": true, "top_regions": true, "attention": true}, func(ctx context.Context, m *served, req request) (any, pipeline.Timing, *float64, error) {
		top, err := fieldTopRegions.resolve(req.topRegions)
		if err != nil {
			return nil, pipeline.Timing{}, nil, err
		}
		if len(req.texts) > 1 {
			return nil, pipeline.Timing{}, nil, badRequest("invalid_input", "text: one text per alignment, got %d", len(req.texts))
		}
		a, err := m.model.Align(ctx, req.input, req.text, pipeline.AlignOptions{TopRegions: top, Attention: req.attention})
		if err != nil {
			return nil, pipeline.Timing{}, nil, err
		}
		resp := NewAlignResponse(a, m.labels, m.info.Name)
		return &resp, a.Timing, &resp.Timings.Total, nil
	})
}

func (s *Server) regions(c *gin.Context) (any, error) {
	var body RegionsRequest
	return s.serveModel(c, &body, func() (request, error) {
		in, err := toInput(body.Image, nil, true)
		return request{input: in, features: body.Features, featureDType: body.FeatureDType, topLabels: body.TopLabels, text: body.Text, model: body.Model}, err
	}, map[string]bool{"features": true, "feature_dtype": true, "top_labels": true, "text": true}, func(ctx context.Context, m *served, req request) (any, pipeline.Timing, *float64, error) {
		top, err := fieldTopLabels.resolve(req.topLabels)
		if err != nil {
			return nil, pipeline.Timing{}, nil, err
		}
		features, err := resolveFeatureDType(req.features, req.featureDType)
		if err != nil {
			return nil, pipeline.Timing{}, nil, err
		}
		det, hit, err := m.model.Detect(ctx, req.input.Image)
		if err != nil {
			return nil, pipeline.Timing{}, nil, err
		}
		var t pipeline.Timing // a cache hit did no detector work
		if !hit {
			t.Timing = det.Timing
		}
		resp := NewRegionsResponse(det, hit, m.labels, top, features, m.info.Name)
		if req.text != "" {
			classes, err := m.model.RegionClasses(ctx, det.Prepared, req.text)
			if err != nil {
				return nil, pipeline.Timing{}, nil, err
			}
			resp.addClassesGivenText(classes, m.labels, top)
		}
		return &resp, t, &resp.Timings.Total, nil
	})
}

func (s *Server) fillMask(c *gin.Context) (any, error) {
	var body FillMaskRequest
	return s.serveModel(c, &body, func() (request, error) {
		in, err := toInput(body.Image, body.Regions, false)
		return request{input: in, text: body.Text, texts: []string{body.Text}, topK: body.TopK, withoutImage: body.WithoutImage, model: body.Model}, err
	}, map[string]bool{"text": true, "top_k": true, "without_image": true}, func(ctx context.Context, m *served, req request) (any, pipeline.Timing, *float64, error) {
		if len(req.texts) != 1 {
			return nil, pipeline.Timing{}, nil, badRequest("invalid_input", "text: exactly one text with [MASK] tokens is needed, got %d", len(req.texts))
		}
		top, err := fieldTopK.resolve(req.topK)
		if err != nil {
			return nil, pipeline.Timing{}, nil, err
		}
		out, err := m.model.FillMask(ctx, req.input, req.text, pipeline.FillMaskOptions{TopK: top, WithoutImage: req.withoutImage})
		if err != nil {
			return nil, pipeline.Timing{}, nil, err
		}
		resp := NewFillMaskResponse(out, m.info.Name)
		return &resp, out.Timing, &resp.Timings.Total, nil
	})
}
