package api

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// requestIDHeader carries a request's id both ways: a client's well-formed id is kept,
// otherwise the server makes one; every answer and every log line of the request carry it.
const requestIDHeader = "X-Request-ID"

// loggerContext is where observe leaves the request's logger.
const loggerContext = "uniter.log"

// validRequestID accepts 1 to 128 characters of [A-Za-z0-9._:-], so that an id is safe to
// log and to echo.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// observe is the first middleware: it gives the request its id and logger, then writes the
// access log line and the request metrics once the answer is written.
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	id := c.GetHeader(requestIDHeader)
	if !validRequestID(id) {
		id = newRequestID()
	}
	c.Header(requestIDHeader, id)
	log := s.log.With("request_id", id)
	c.Set(loggerContext, log)

	c.Next()

	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	method := metricMethod(c.Request.Method)
	status := c.Writer.Status()
	took := time.Since(start)
	s.metrics.request(method, route, status, took)
	attrs := []any{"method", method, "route", route, "status", status, "bytes", max(c.Writer.Size(), 0),
		"latency_ms", float64(took.Microseconds()) / 1000, "remote", c.ClientIP()}
	if key, ok := c.Get(keyNameContext); ok {
		attrs = append(attrs, "key", key)
	}
	level := slog.LevelInfo
	switch {
	case status >= 500 && status != http.StatusServiceUnavailable:
		level = slog.LevelWarn
	case route == "/healthz" || route == "/readyz" || route == "/metrics":
		level = slog.LevelDebug // probes and scrapes every few seconds would drown the rest
	}
	log.Log(c.Request.Context(), level, "request", attrs...)
}

// logger is the request's logger (the server's outside a request).
func (s *Server) logger(c *gin.Context) *slog.Logger {
	if l, ok := c.Get(loggerContext); ok {
		return l.(*slog.Logger)
	}
	return s.log
}

// metricMethod bounds the method label to the methods the API has.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete, http.MethodOptions, http.MethodPut, http.MethodPatch:
		return m
	}
	return "OTHER"
}
