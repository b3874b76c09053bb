package api

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
)

// admission decides, once per request and before its body is read, whether the server takes
// it: at most `capacity` model requests are in the server at once (running or waiting for a
// graph); one more is refused at once with 503 and a Retry-After, having cost nothing. Past
// admission a request is never refused for load, only for its own deadline.
type admission struct {
	capacity int64
	inFlight atomic.Int64

	mu   sync.Mutex
	ewma float64 // seconds an admitted request took, smoothed
}

func newAdmission(capacity int) *admission { return &admission{capacity: int64(capacity)} }

// middleware admits the request or answers 503 busy.
func (a *admission) middleware(s *Server) gin.HandlerFunc {
	return func(c *gin.Context) {
		if a.inFlight.Add(1) > a.capacity {
			a.inFlight.Add(-1)
			s.metrics.rejected.Inc()
			c.Header("Retry-After", strconv.Itoa(a.retryAfter()))
			s.writeError(c, errBusy)
			return
		}
		s.metrics.admitted.Inc()
		start := time.Now()
		defer func() {
			a.inFlight.Add(-1)
			a.observe(time.Since(start))
		}()
		c.Next()
	}
}

// observe folds an admitted request's latency into the estimate.
func (a *admission) observe(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	const alpha = 0.1
	if a.ewma == 0 {
		a.ewma = d.Seconds()
	} else {
		a.ewma += alpha * (d.Seconds() - a.ewma)
	}
}

// retryAfter is the whole seconds a refused client should wait: about the time an admitted
// request takes now (a full queue's wait), between 1 and 30.
func (a *admission) retryAfter() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int(min(max(math.Ceil(a.ewma), 1), 30))
}

// errBusy is the answer past capacity.
var errBusy = &requestError{status: http.StatusServiceUnavailable, code: "busy",
	message: "the server is at capacity; retry after the time in the Retry-After header"}
