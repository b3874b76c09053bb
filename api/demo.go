package api

import (
	"sync"

	"github.com/gin-gonic/gin"
)

// Demo fill states (DemoStatus.State).
const (
	DemoGenerating = "generating" // the Shapes World split is being written to disk
	DemoIndexing   = "indexing"   // its images are going through the detector into the gallery
	DemoTexts      = "texts"      // its captions are being stored
	DemoReady      = "ready"
	DemoFailed     = "failed"
)

// DemoStatus is the demo gallery's fill (gallery.demo) as GET /v1/gallery reports it.
type DemoStatus struct {
	State  string `json:"state"`
	Split  string `json:"split"`
	Images int    `json:"images"` // indexed so far
	Total  int    `json:"total"`  // to index
	Error  string `json:"error,omitempty"`
}

// DemoProgress is shared by the demo filler, its only writer, and the handlers that read it.
type DemoProgress struct {
	mu      sync.Mutex
	st      DemoStatus
	started bool // false while no fill runs (the gallery was not empty, or it has not begun)
}

// Set records the fill's status.
func (p *DemoProgress) Set(st DemoStatus) {
	p.mu.Lock()
	p.st, p.started = st, true
	p.mu.Unlock()
}

// Get returns the fill's status; false when no fill has started.
func (p *DemoProgress) Get() (DemoStatus, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st, p.started
}

// SetDemo reports p's progress in GET /v1/gallery; call it before Handler, when a demo fill
// runs (a server without one reports no demo).
func (s *Server) SetDemo(p *DemoProgress) { s.demo = p }

// GalleryStatus is GET /v1/gallery: what the gallery holds, and the demo fill while there is one.
type GalleryStatus struct {
	Images int         `json:"images"`
	Texts  int         `json:"texts"`
	Demo   *DemoStatus `json:"demo,omitempty"`
}

func (s *Server) galleryStatus(c *gin.Context) (any, error) {
	st, err := s.gallery.Store().Stats(c.Request.Context())
	if err != nil {
		return nil, err
	}
	out := GalleryStatus{Images: st.Images, Texts: st.Texts}
	if s.demo != nil {
		if d, ok := s.demo.Get(); ok {
			out.Demo = &d
		}
	}
	return out, nil
}
