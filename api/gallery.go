package api

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/x448/float16"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/retrieval"
)

// Gallery is what the gallery handlers need: ingest and search (retrieval.Service) and the
// store behind it, of whatever kind (gallery.Store).
type Gallery interface {
	AddImage(ctx context.Context, data []byte, id string, metadata json.RawMessage) (*retrieval.Added, error)
	AddTexts(ctx context.Context, texts []*gallery.Text) ([]gallery.PutResult, error)
	SearchImages(ctx context.Context, q retrieval.Query) (*retrieval.Results, error)
	SearchTexts(ctx context.Context, q retrieval.Query) (*retrieval.Results, error)
	Store() gallery.Store
}

// pinger is a store that can say whether its server is reachable (a database-backed one).
type pinger interface {
	Ping(ctx context.Context) error
}

// pingGallery checks a database-backed gallery within a second; nil without one.
func (s *Server) pingGallery(ctx context.Context) error {
	if s.gallery == nil {
		return nil
	}
	p, ok := s.gallery.Store().(pinger)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return p.Ping(ctx)
}

// SetGallery serves g under /v1/images, /v1/texts and /v1/search; without one those routes
// answer 503. Call it before Handler.
func (s *Server) SetGallery(g Gallery) { s.gallery = g }

func (s *Server) galleryRoutes(r *gin.Engine) {
	// Like handle, plus: no gallery → 503, the store's errors → their statuses, created →
	// 201, and handlers that wrote the answer themselves (errWritten).
	h := func(fn func(c *gin.Context) (any, error)) gin.HandlerFunc {
		return func(c *gin.Context) {
			if s.gallery == nil {
				s.writeError(c, &requestError{status: http.StatusServiceUnavailable, code: "no_gallery", message: "this server has no gallery"})
				return
			}
			res, err := fn(c)
			switch {
			case errors.Is(err, errWritten):
				return
			case err != nil:
				s.writeError(c, galleryErr(err))
				return
			}
			if cr, ok := res.(created); ok {
				c.JSON(http.StatusCreated, cr.body)
				return
			}
			c.JSON(http.StatusOK, res)
		}
	}
	admit := s.admit.middleware(s)
	read, write := s.authorize(ScopeRead), s.authorize(ScopeWrite)
	r.POST("/v1/images", write, admit, h(s.addImage))
	get(r, "/v1/gallery", read, h(s.galleryStatus))
	get(r, "/v1/images", read, h(s.listImages))
	get(r, "/v1/images/:id", read, h(s.getImage))
	get(r, "/v1/images/:id/thumbnail", read, h(s.thumbnail))
	r.DELETE("/v1/images/:id", write, h(s.deleteImage))
	r.POST("/v1/texts", write, h(s.addTexts))
	get(r, "/v1/texts", read, h(s.listTexts))
	get(r, "/v1/texts/:id", read, h(s.getText))
	r.DELETE("/v1/texts/:id", write, h(s.deleteText))
	r.POST("/v1/search/images", read, admit, h(s.searchImages))
	r.POST("/v1/search/texts", read, admit, h(s.searchTexts))
}

// galleryErr gives the store's errors their statuses (requestError is what statusOf maps).
func galleryErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gallery.ErrNotFound):
		return &requestError{status: http.StatusNotFound, code: "not_found", message: err.Error()}
	case errors.Is(err, gallery.ErrConflict):
		return &requestError{status: http.StatusConflict, code: "conflict", message: err.Error()}
	case errors.Is(err, gallery.ErrInvalid):
		return badRequest("invalid_record", "%s", err.Error())
	case errors.Is(err, gallery.ErrUnavailable):
		return &requestError{status: http.StatusServiceUnavailable, code: "gallery_unavailable",
			message: "the gallery's database cannot be reached now; retry later"}
	}
	return err
}

// ImageUploadRequest is the JSON body of POST /v1/images (multipart: a file field "image" and
// text fields "id" and "metadata", the latter a JSON object).
type ImageUploadRequest struct {
	Image    *ImageJSON      `json:"image"`
	ID       string          `json:"id,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// ImageUploadResponse answers POST /v1/images: 201 when stored, 200 with duplicate: true when
// the same bytes were already stored (id is then the stored image's).
type ImageUploadResponse struct {
	ID        string      `json:"id"`
	Duplicate bool        `json:"duplicate"`
	SHA256    string      `json:"sha256"`
	Regions   int         `json:"regions"`
	Width     int         `json:"width"`
	Height    int         `json:"height"`
	Timings   TotalTiming `json:"timings_ms"`
}

func (s *Server) addImage(c *gin.Context) (any, error) {
	start := time.Now()
	var data []byte
	var id string
	var meta json.RawMessage
	if c.ContentType() == "multipart/form-data" {
		var err error
		if data, id, meta, err = readUploadMultipart(c); err != nil {
			return nil, err
		}
	} else {
		var body ImageUploadRequest
		if err := s.decodeJSON(c, &body, true); err != nil {
			return nil, err
		}
		in, err := toInput(body.Image, nil, true)
		if err != nil {
			return nil, err
		}
		data, id, meta = in.Image, body.ID, body.Metadata
	}
	ctx, cancel := s.context(c)
	defer cancel()
	a, err := s.gallery.AddImage(ctx, data, id, meta)
	if err != nil {
		return nil, err
	}
	resp := ImageUploadResponse{ID: a.ID, Duplicate: a.Duplicate, SHA256: a.SHA256, Regions: a.Regions,
		Width: a.Width, Height: a.Height, Timings: TotalTiming{Total: since(start)}}
	if a.Duplicate {
		return resp, nil
	}
	return created{resp}, nil
}

// created is a result answered with 201 Created.
type created struct{ body any }

func readUploadMultipart(c *gin.Context) (data []byte, id string, meta json.RawMessage, err error) {
	err = eachPart(c, func(name string, raw []byte) error {
		switch name {
		case "image":
			if err := imagePart(data, raw); err != nil {
				return err
			}
			data = raw
		case "id":
			id = strings.TrimSpace(string(raw))
		case "metadata":
			meta = raw
		default:
			return badRequest("unknown_field", "multipart: unknown field %s (want image, id, metadata)", quoteInput(name))
		}
		return nil
	})
	if err != nil {
		return nil, "", nil, err
	}
	if data == nil {
		return nil, "", nil, badRequest("missing_image", "multipart: an image file field named \"image\" is required")
	}
	return data, id, meta, nil
}

// GalleryImage is a stored image in GET /v1/images (summary) and GET /v1/images/{id} (with
// its regions, and with ?features=true their float16 features).
type GalleryImage struct {
	ID         string          `json:"id"`
	SHA256     string          `json:"sha256"`
	Source     string          `json:"source"`
	Format     string          `json:"format,omitempty"`
	Width      int             `json:"width"`
	Height     int             `json:"height"`
	NumRegions int             `json:"num_regions"`
	Thumbnail  bool            `json:"thumbnail"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	Created    time.Time       `json:"created"`
	Regions    []Region        `json:"regions,omitempty"`
	Features   *FeatureBlock   `json:"features,omitempty"`
}

// ImageListResponse answers GET /v1/images; pass next_cursor as ?cursor= for the next page.
type ImageListResponse struct {
	Images     []GalleryImage `json:"images"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

func galleryImage(img *gallery.Image) GalleryImage {
	return GalleryImage{ID: img.ID, SHA256: img.SHA256, Source: img.Source, Format: img.Format, Width: img.Width,
		Height: img.Height, NumRegions: img.NumRegions, Thumbnail: img.HasThumbnail, Metadata: img.Metadata, Created: img.Created}
}

// listParams reads ?limit= and ?cursor= (an opaque token: the last ID of the previous page).
func listParams(c *gin.Context) (after string, limit int, err error) {
	limit = fieldListLimit.def
	if v, ok := c.GetQuery("limit"); ok {
		if limit, err = fieldListLimit.parse(v); err != nil {
			return "", 0, err
		}
	}
	if v := c.Query("cursor"); v != "" {
		raw, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || gallery.ValidID(string(raw)) != nil {
			return "", 0, badRequest("invalid_cursor", "cursor: %s is not a cursor this server issued", quoteInput(v))
		}
		after = string(raw)
	}
	return after, limit, nil
}

func cursor(next string) string {
	if next == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(next))
}

func (s *Server) listImages(c *gin.Context) (any, error) {
	after, limit, err := listParams(c)
	if err != nil {
		return nil, err
	}
	imgs, next, err := s.gallery.Store().ListImages(c.Request.Context(), after, limit)
	if err != nil {
		return nil, err
	}
	resp := ImageListResponse{Images: make([]GalleryImage, len(imgs)), NextCursor: cursor(next)}
	for i, img := range imgs {
		resp.Images[i] = galleryImage(img)
	}
	return resp, nil
}

func (s *Server) getImage(c *gin.Context) (any, error) {
	features := false
	if v, ok := c.GetQuery("features"); ok {
		var err error
		if features, err = strconv.ParseBool(v); err != nil {
			return nil, badRequest("invalid_features", "features: %s is not a boolean", quoteInput(v))
		}
	}
	img, err := s.gallery.Store().Image(c.Request.Context(), c.Param("id"), gallery.PartRegions)
	if err != nil {
		return nil, err
	}
	resp := galleryImage(img)
	resp.Regions = s.def().labels.regions(detectedOf(img), 3)
	if features {
		r := img.Regions
		buf := make([]byte, 2*len(r.Features))
		for i, v := range r.Features {
			binary.LittleEndian.PutUint16(buf[2*i:], float16.Fromfloat32(v).Bits())
		}
		resp.Features = &FeatureBlock{DType: "float16", Shape: []int{r.Len(), r.Dim}, Data: base64.StdEncoding.EncodeToString(buf)}
	}
	return resp, nil
}

// detectedOf presents stored regions as a detection, for the label listing of /v1/regions.
func detectedOf(img *gallery.Image) *detector.Detection {
	r := img.Regions
	d := &detector.Detection{SHA256: img.SHA256, Format: img.Format, Width: img.Width, Height: img.Height,
		Regions: make([]detector.Region, r.Len()), ClassProbs: r.ClassProbs, ClassDim: r.ClassDim,
		AttrProbs: r.AttrProbs, AttrDim: r.AttrDim}
	for i := range d.Regions {
		d.Regions[i] = detector.Region{Proposal: -1, Box: r.Boxes[i], Confidence: r.Confidence[i], Location: r.Locations[i]}
	}
	return d
}

func (s *Server) thumbnail(c *gin.Context) (any, error) {
	img, err := s.gallery.Store().Image(c.Request.Context(), c.Param("id"), gallery.PartThumbnail)
	if err != nil {
		return nil, err
	}
	if len(img.Thumbnail) == 0 {
		return nil, &requestError{status: http.StatusNotFound, code: "no_thumbnail",
			message: "image " + strconv.Quote(img.ID) + " has no thumbnail (its features were imported)"}
	}
	c.Header("Cache-Control", "private, max-age=3600")
	c.Data(http.StatusOK, "image/jpeg", img.Thumbnail)
	return nil, errWritten
}

// errWritten tells the gallery handler wrapper that the handler wrote the response itself.
var errWritten = errors.New("response written")

// DeleteResponse answers DELETE /v1/images/{id} and /v1/texts/{id}.
type DeleteResponse struct {
	Deleted string `json:"deleted"`
}

func (s *Server) deleteImage(c *gin.Context) (any, error) {
	if err := s.gallery.Store().DeleteImage(c.Request.Context(), c.Param("id")); err != nil {
		return nil, err
	}
	return DeleteResponse{Deleted: c.Param("id")}, nil
}

// TextJSON is one text of the collection.
type TextJSON struct {
	ID       string          `json:"id,omitempty"`
	Text     string          `json:"text"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Created  *time.Time      `json:"created,omitempty"`
}

// TextsRequest is the body of POST /v1/texts: texts stored in one transaction (all or none).
type TextsRequest struct {
	Texts []TextJSON `json:"texts"`
}

// PutResult is one text's outcome: duplicate when the same id, text and metadata were stored.
type PutResult struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// TextsResponse answers POST /v1/texts, one result per text in order.
type TextsResponse struct {
	Results []PutResult `json:"results"`
}

// TextListResponse answers GET /v1/texts.
type TextListResponse struct {
	Texts      []TextJSON `json:"texts"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

func textJSON(t *gallery.Text) TextJSON {
	created := t.Created
	return TextJSON{ID: t.ID, Text: t.Text, Metadata: t.Metadata, Created: &created}
}

func (s *Server) addTexts(c *gin.Context) (any, error) {
	var body TextsRequest
	if err := s.decodeJSON(c, &body, false); err != nil {
		return nil, err
	}
	texts := make([]*gallery.Text, len(body.Texts))
	for i, t := range body.Texts {
		if t.Created != nil {
			return nil, badRequest("invalid_input", "texts[%d].created: set by the server", i)
		}
		texts[i] = &gallery.Text{ID: t.ID, Text: t.Text, Metadata: t.Metadata}
	}
	res, err := s.gallery.AddTexts(c.Request.Context(), texts)
	if err != nil {
		return nil, err
	}
	out := TextsResponse{Results: make([]PutResult, len(res))}
	for i, r := range res {
		out.Results[i] = PutResult{ID: r.ID, Duplicate: r.Duplicate}
	}
	return out, nil
}

func (s *Server) listTexts(c *gin.Context) (any, error) {
	after, limit, err := listParams(c)
	if err != nil {
		return nil, err
	}
	texts, next, err := s.gallery.Store().ListTexts(c.Request.Context(), after, limit)
	if err != nil {
		return nil, err
	}
	resp := TextListResponse{Texts: make([]TextJSON, len(texts)), NextCursor: cursor(next)}
	for i, t := range texts {
		resp.Texts[i] = textJSON(t)
	}
	return resp, nil
}

func (s *Server) getText(c *gin.Context) (any, error) {
	t, err := s.gallery.Store().Text(c.Request.Context(), c.Param("id"))
	if err != nil {
		return nil, err
	}
	return textJSON(t), nil
}

func (s *Server) deleteText(c *gin.Context) (any, error) {
	if err := s.gallery.Store().DeleteText(c.Request.Context(), c.Param("id")); err != nil {
		return nil, err
	}
	return DeleteResponse{Deleted: c.Param("id")}, nil
}

// SearchImagesRequest is the body of POST /v1/search/images.
type SearchImagesRequest struct {
	Text string `json:"text"`
	SearchOptions
}

// SearchTextsRequest is the body of POST /v1/search/texts: an image (detected, not stored) or
// the ID of a stored one.
type SearchTextsRequest struct {
	Image   *ImageJSON `json:"image,omitempty"`
	ImageID string     `json:"image_id,omitempty"`
	SearchOptions
}

// SearchOptions are shared by both searches. Limit defaults to 10, mode to "exact"; two_stage
// scores `candidates` items proposed by the first stage (default: the server's).
type SearchOptions struct {
	Limit      int    `json:"limit,omitempty"`
	Offset     int    `json:"offset,omitempty"`
	Mode       string `json:"mode,omitempty"`
	Candidates int    `json:"candidates,omitempty"`
	Evidence   bool   `json:"evidence,omitempty"`
	EvidenceBy string `json:"evidence_by,omitempty"` // "attention" or "ot"; default attention when the model has it
}

func (o SearchOptions) query() retrieval.Query {
	return retrieval.Query{Limit: o.Limit, Offset: o.Offset, Mode: retrieval.Mode(o.Mode), Candidates: o.Candidates,
		Evidence: o.Evidence, EvidenceBy: o.EvidenceBy}
}

// SearchHit is one ranked item: P(match) as score, the raw match logit the ranking uses
// (ties: higher score, then lower id), the caller's metadata, the text for text hits, and
// with evidence its word-region alignment.
type SearchHit struct {
	ID       string          `json:"id"`
	Score    float32         `json:"score"`
	Logit    float32         `json:"logit"`
	Text     string          `json:"text,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Evidence *Evidence       `json:"evidence,omitempty"`
}

// Evidence is a hit's word-region alignment (by attention or by optimal transport, as "by"
// says): each content word's best regions.
type Evidence struct {
	By         string         `json:"by"`
	OTDistance float64        `json:"ot_distance"`
	Words      []WordEvidence `json:"words"`
}

// WordEvidence is a word (code point span [start, end) in the text) and its regions.
type WordEvidence struct {
	Word    string           `json:"word"`
	Start   int              `json:"start"`
	End     int              `json:"end"`
	Regions []RegionEvidence `json:"regions"`
}

// RegionEvidence is a region of the image with its share of the word's alignment weight and
// the detector's top label and attribute for it.
type RegionEvidence struct {
	Region    int        `json:"region"`
	Share     float64    `json:"share"`
	Box       [4]float32 `json:"box"`
	Label     string     `json:"label,omitempty"`
	Attribute string     `json:"attribute,omitempty"`
}

// SearchResponse answers both searches. gallery_size is the number of items searched over;
// candidates the number the cross-encoder scored (all of them for exact; first_stage says why
// a two-stage search scored everything, if it did).
type SearchResponse struct {
	Results     []SearchHit   `json:"results"`
	Mode        string        `json:"mode"`
	GallerySize int           `json:"gallery_size"`
	Candidates  int           `json:"candidates"`
	FirstStage  string        `json:"first_stage,omitempty"`
	Mentions    []string      `json:"mentions,omitempty"`
	Image       *ImageInfo    `json:"image,omitempty"`
	Model       string        `json:"model"`
	Timings     SearchTimings `json:"timings_ms"`
}

// SearchTimings split a search, in milliseconds.
type SearchTimings struct {
	Total      float64 `json:"total"`
	Detect     float64 `json:"detect"`
	FirstStage float64 `json:"first_stage"`
	Scoring    float64 `json:"scoring"`
	Evidence   float64 `json:"evidence"`
}

func (s *Server) searchImages(c *gin.Context) (any, error) {
	start := time.Now()
	var body SearchImagesRequest
	if err := s.decodeJSON(c, &body, false); err != nil {
		return nil, err
	}
	q := body.query()
	q.Text = body.Text
	ctx, cancel := s.context(c)
	defer cancel()
	res, err := s.gallery.SearchImages(ctx, q)
	if err != nil {
		return nil, err
	}
	return s.searchResponse(res, start), nil
}

func (s *Server) searchTexts(c *gin.Context) (any, error) {
	start := time.Now()
	var body SearchTextsRequest
	var image []byte
	if c.ContentType() == "multipart/form-data" {
		var err error
		if body, image, err = readSearchTextsMultipart(c); err != nil {
			return nil, err
		}
	} else {
		if err := s.decodeJSON(c, &body, true); err != nil {
			return nil, err
		}
		if body.Image != nil {
			in, err := toInput(body.Image, nil, true)
			if err != nil {
				return nil, err
			}
			image = in.Image
		}
	}
	q := body.query()
	q.ImageID, q.Image = body.ImageID, image
	ctx, cancel := s.context(c)
	defer cancel()
	res, err := s.gallery.SearchTexts(ctx, q)
	if err != nil {
		return nil, err
	}
	return s.searchResponse(res, start), nil
}

// readSearchTextsMultipart reads POST /v1/search/texts sent as multipart/form-data: an "image"
// file or an "image_id" field, and the search options as fields of the same names as in JSON.
func readSearchTextsMultipart(c *gin.Context) (body SearchTextsRequest, image []byte, err error) {
	err = eachPart(c, func(name string, raw []byte) (err error) {
		value := string(raw)
		switch name {
		case "image":
			if err := imagePart(image, raw); err != nil {
				return err
			}
			image = raw
		case "image_id":
			body.ImageID = strings.TrimSpace(value)
		case "limit":
			body.Limit, err = formInt(name, value)
		case "offset":
			body.Offset, err = formInt(name, value)
		case "candidates":
			body.Candidates, err = formInt(name, value)
		case "mode":
			body.Mode = strings.TrimSpace(value)
		case "evidence_by":
			body.EvidenceBy = strings.TrimSpace(value)
		case "evidence":
			body.Evidence, err = formBool(name, value)
		default:
			return badRequest("unknown_field", "multipart: unknown field %s (want image or image_id, limit, offset, "+
				"mode, candidates, evidence, evidence_by)", quoteInput(name))
		}
		return err
	})
	return body, image, err
}

func (s *Server) searchResponse(res *retrieval.Results, start time.Time) SearchResponse {
	t := res.Timing
	s.metrics.stage("search_detect", t.Detect)
	s.metrics.stage("search_first_stage", t.FirstStage)
	s.metrics.stage("search_scoring", t.Scoring)
	s.metrics.stage("search_evidence", t.Evidence)
	out := NewSearchResponse(res, s.def().info.Name)
	out.Timings.Total = since(start)
	return out
}

// NewSearchResponse is a search's answer on the wire (the CLI's `uniter search --json` too);
// Timings.Total is left to the caller.
func NewSearchResponse(res *retrieval.Results, model string) SearchResponse {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	out := SearchResponse{Results: make([]SearchHit, len(res.Hits)), Mode: string(res.Mode), GallerySize: res.Gallery,
		Candidates: res.Candidates, FirstStage: res.FirstStage, Mentions: res.Mentions, Model: model,
		Timings: SearchTimings{Detect: ms(res.Timing.Detect), FirstStage: ms(res.Timing.FirstStage),
			Scoring: ms(res.Timing.Scoring), Evidence: ms(res.Timing.Evidence)}}
	if res.Query != nil {
		out.Image = newImageInfo(res.Query, false)
	}
	for i, h := range res.Hits {
		out.Results[i] = SearchHit{ID: h.ID, Score: h.Score, Logit: h.Logit, Text: h.Text, Metadata: h.Metadata}
		if ev := h.Evidence; ev != nil {
			e := &Evidence{By: ev.By, OTDistance: ev.OTDistance, Words: make([]WordEvidence, len(ev.Words))}
			for j, w := range ev.Words {
				we := WordEvidence{Word: w.Word, Start: w.Start, End: w.End, Regions: make([]RegionEvidence, len(w.Regions))}
				for k, r := range w.Regions {
					we.Regions[k] = RegionEvidence{Region: r.Region, Share: r.Share, Box: r.Box, Label: r.Label, Attribute: r.Attribute}
				}
				e.Words[j] = we
			}
			out.Results[i].Evidence = e
		}
	}
	return out
}
