package api

import (
	"context"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/pipeline"
)

// metrics are the server's Prometheus series, in a registry of its own (served at
// /metrics). Label values come from bounded sets only: route templates, methods, statuses,
// stage and graph names — never a raw path or a text.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	stages    *prometheus.HistogramVec
	graphRun  *prometheus.HistogramVec
	graphWait *prometheus.HistogramVec
	batch     *prometheus.HistogramVec
	admitted  prometheus.Counter
	rejected  prometheus.Counter
}

// latencyBuckets span a cached ITM on the CPU (milliseconds) to a long search (tens of seconds).
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 60}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "uniter_http_requests_total",
		Help: "HTTP requests answered, by method, route template and status."}, []string{"method", "route", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "uniter_http_request_duration_seconds",
		Help: "Time from the request's arrival to its answer, by method and route template.", Buckets: latencyBuckets}, []string{"method", "route"})
	m.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "uniter_stage_duration_seconds",
		Help:    "Time of one pipeline stage of a request: decode, preprocess, detector, selection, encoder, ot; searches: search_detect, search_first_stage, search_scoring, search_evidence.",
		Buckets: latencyBuckets}, []string{"stage"})
	m.graphRun = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "uniter_graph_run_duration_seconds",
		Help: "ONNX Runtime run time of one graph execution, by graph.", Buckets: latencyBuckets}, []string{"graph"})
	m.graphWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "uniter_graph_queue_wait_seconds",
		Help: "Time a graph execution waited for a free slot (limits.max_concurrent), by graph.", Buckets: latencyBuckets}, []string{"graph"})
	m.batch = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "uniter_graph_batch_size",
		Help: "Items in one graph execution's batch, by graph.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}}, []string{"graph"})
	m.admitted = prometheus.NewCounter(prometheus.CounterOpts{Name: "uniter_admission_admitted_total",
		Help: "Model requests admitted."})
	m.rejected = prometheus.NewCounter(prometheus.CounterOpts{Name: "uniter_admission_rejected_total",
		Help: "Model requests refused with 503 busy because the server was at capacity."})
	f(m.requests)
	f(m.latency)
	f(m.stages)
	f(m.graphRun)
	f(m.graphWait)
	f(m.batch)
	f(m.admitted)
	f(m.rejected)
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "uniter_requests_in_flight",
		Help: "Model requests admitted and not yet answered."}, func() float64 { return float64(s.admit.inFlight.Load()) }))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "uniter_admission_capacity",
		Help: "Most model requests admitted at once (limits.max_concurrent + limits.max_queue)."}, func() float64 { return float64(s.admit.capacity) }))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "uniter_graph_queue_waiting",
		Help: "Graph executions waiting for a free slot now."}, func() float64 {
		n := 0
		for _, m := range s.models {
			n += m.model.GraphWaiting()
		}
		return float64(n)
	}))
	cache := func(name, help string, counter bool, v func(pipeline.CacheStats) float64) {
		get := func() float64 { // every model's cache together
			total := 0.0
			for _, m := range s.models {
				total += v(m.model.CacheStats())
			}
			return total
		}
		if counter {
			f(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, get))
		} else {
			f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, get))
		}
	}
	cache("uniter_detector_cache_hits_total", "Detections served from the cache (or shared with a request already running them).", true,
		func(c pipeline.CacheStats) float64 { return float64(c.Hits) })
	cache("uniter_detector_cache_misses_total", "Detections run.", true, func(c pipeline.CacheStats) float64 { return float64(c.Misses) })
	cache("uniter_detector_cache_entries", "Detections held in the cache.", false, func(c pipeline.CacheStats) float64 { return float64(c.Entries) })
	cache("uniter_detector_cache_bytes", "Memory held by the cached detections.", false, func(c pipeline.CacheStats) float64 { return float64(c.Bytes) })
	cache("uniter_detector_cache_max_bytes", "The cache's bound (detector.cache_bytes).", false, func(c pipeline.CacheStats) float64 { return float64(c.MaxBytes) })
	f(newGalleryCollector(s))
	info := s.def().info
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "uniter_build_info",
		Help: "Always 1; the labels describe the build, ONNX Runtime and the model served.",
		ConstLabels: prometheus.Labels{"version": buildVersion(), "onnxruntime_version": info.ONNXRuntime, "model": info.Name,
			"provider": info.Provider, "detector_provider": detectorProvider(info)}}, func() float64 { return 1 }))
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func detectorProvider(info ModelInfo) string {
	if info.Detector == nil {
		return "none"
	}
	return info.Detector.Provider
}

// buildVersion is the module version, or the VCS revision the binary was built from.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	return "devel"
}

func (m *metrics) request(method, route string, status int, took time.Duration) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(method, route).Observe(took.Seconds())
}

// GraphRun records one graph execution (pipeline.Observer).
func (m *metrics) GraphRun(role string, batch int, wait, run time.Duration) {
	m.graphRun.WithLabelValues(role).Observe(run.Seconds())
	m.graphWait.WithLabelValues(role).Observe(wait.Seconds())
	m.batch.WithLabelValues(role).Observe(float64(batch))
}

// timing records a model answer's stages; stages that did not run (zero) are skipped.
func (m *metrics) timing(t pipeline.Timing) {
	for stage, d := range map[string]time.Duration{"decode": t.Decode, "preprocess": t.Preprocess, "detector": t.Detector,
		"selection": t.Selection, "encoder": t.Encoder, "ot": t.OT} {
		if d > 0 {
			m.stages.WithLabelValues(stage).Observe(d.Seconds())
		}
	}
}

func (m *metrics) stage(name string, d time.Duration) {
	if d > 0 {
		m.stages.WithLabelValues(name).Observe(d.Seconds())
	}
}

func (s *Server) serveMetrics(c *gin.Context) {
	promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: nil}).ServeHTTP(c.Writer, c.Request)
}

// galleryCollector reports the gallery at each scrape: whether its store answers, its size,
// and, for a server-backed store (PostgreSQL), its connection pool.
type galleryCollector struct {
	s                                                 *Server
	up, images, texts                                 *prometheus.Desc
	conns, maxConns, acquires, waited, canceled, wait *prometheus.Desc
	opened                                            *prometheus.Desc
}

// poolReporter is a store with a connection pool (gallery.Postgres).
type poolReporter interface{ PoolStats() gallery.PoolStats }

func newGalleryCollector(s *Server) *galleryCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &galleryCollector{s: s,
		up:       d("uniter_gallery_up", "1 if the gallery's store answered this scrape, 0 if it could not be reached."),
		images:   d("uniter_gallery_images", "Images stored in the gallery."),
		texts:    d("uniter_gallery_texts", "Texts stored in the gallery."),
		conns:    d("uniter_gallery_db_connections", "Database connections of this process, by state (acquired, idle, constructing).", "state"),
		maxConns: d("uniter_gallery_db_max_connections", "The connection pool's bound."),
		acquires: d("uniter_gallery_db_acquires_total", "Connections handed out of the pool."),
		waited:   d("uniter_gallery_db_acquires_waited_total", "Connections that a request had to wait for (the pool was exhausted)."),
		canceled: d("uniter_gallery_db_acquires_canceled_total", "Waits for a connection given up because the request ended."),
		wait:     d("uniter_gallery_db_acquire_wait_seconds_total", "Time spent waiting for connections."),
		opened:   d("uniter_gallery_db_connections_opened_total", "Connections opened to the database.")}
}

func (g *galleryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.up, g.images, g.texts, g.conns, g.maxConns, g.acquires, g.waited, g.canceled, g.wait, g.opened} {
		ch <- d
	}
}

func (g *galleryCollector) Collect(ch chan<- prometheus.Metric) {
	if g.s.gallery == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	store := g.s.gallery.Store()
	if p, ok := store.(poolReporter); ok {
		st := p.PoolStats()
		gauge(g.conns, float64(st.Acquired), "acquired")
		gauge(g.conns, float64(st.Idle), "idle")
		gauge(g.conns, float64(st.Constructing), "constructing")
		gauge(g.maxConns, float64(st.Max))
		counter(g.acquires, float64(st.Acquires))
		counter(g.waited, float64(st.WaitedAcquires))
		counter(g.canceled, float64(st.CanceledAcquires))
		counter(g.wait, st.AcquireWait.Seconds())
		counter(g.opened, float64(st.NewConnections))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := store.Stats(ctx)
	if err != nil {
		gauge(g.up, 0)
		return
	}
	gauge(g.up, 1)
	gauge(g.images, float64(st.Images))
	gauge(g.texts, float64(st.Texts))
}
