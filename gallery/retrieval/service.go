// Package retrieval fills a gallery and searches it with the cross-encoder: ingest (detection,
// thumbnails, deduplication by SHA-256), exact search (every stored item scored by UNITER's
// ITM head in length-bucketed batches, a top-k heap), two-stage search (a lexical first stage
// over the detector's labels proposes candidates, the cross-encoder re-ranks them) and the
// word-region evidence of each hit (optimal transport). It composes a gallery.Store and a
// model; the HTTP handlers and the CLI only call it.
package retrieval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/pipeline"
	"github.com/uniter-serve/uniter/textproc"
)

// Model is what retrieval needs from a loaded bundle (*pipeline.Bundle satisfies it).
type Model interface {
	Detect(ctx context.Context, data []byte) (*detector.Detection, bool, error)
	Tokenize(text string) (*textproc.Encoding, error)
	ScorePairs(ctx context.Context, images []*detector.Prepared, texts []*textproc.Encoding, pairs []pipeline.ScorePair, opts pipeline.ScoreOptions) ([]heads.Match, error)
	ScoreMatrix(ctx context.Context, images []*detector.Prepared, texts []*textproc.Encoding, opts pipeline.ScoreOptions) ([]heads.Match, error)
	AlignPrepared(ctx context.Context, regions *detector.Prepared, text string, opts pipeline.AlignOptions) (*pipeline.Alignment, error)
	HasAttention() bool
}

// Config tunes a Service. Zero fields take the defaults below.
type Config struct {
	Source          string // the Source of detected images, e.g. "detector:<bundle name>"
	Labels          Labels // the detector's class and attribute names (first stage, evidence)
	ThumbnailSize   int    // longest thumbnail side in pixels; default 256
	MaxLimit        int    // largest limit of a search; default 100
	MaxOffset       int    // largest offset of a search; default 1000
	Candidates      int    // default first-stage candidates of a two-stage search; default 100
	MaxCandidates   int    // largest candidates a request may ask for; default 10000
	BatchPairs      int    // pairs per encoder run; default pipeline.DefaultScoreBatch
	Workers         int    // encoder batches in flight (one prepares while one runs); default 2
	ChunkImages     int    // at most this many images' features are held at once by a search; default 4096
	ChunkBytes      int64  // ... and about this many bytes of float32 features; default 64 MiB
	EvidenceRegions int    // regions listed per word in evidence; default 3
	MaxTextBatch    int    // texts per AddTexts call; default 1000
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.ThumbnailSize, 256)
	def(&c.MaxLimit, 100)
	def(&c.MaxOffset, 1000)
	def(&c.Candidates, 100)
	def(&c.MaxCandidates, 10000)
	def(&c.BatchPairs, pipeline.DefaultScoreBatch)
	def(&c.Workers, 2)
	def(&c.ChunkImages, 4096)
	if c.ChunkBytes <= 0 {
		c.ChunkBytes = 64 << 20
	}
	def(&c.EvidenceRegions, 3)
	def(&c.MaxTextBatch, 1000)
	return c
}

// Service is a gallery with a model. It is safe for concurrent use.
type Service struct {
	store gallery.Store
	model Model
	cfg   Config
	lex   *Lexicon

	mu      sync.Mutex
	imgIdx  *imageIndex // cached ImageIndex, valid while the store's generation is unchanged
	textIdx *textIndex
}

type imageIndex struct {
	gen     uint64
	entries []gallery.IndexEntry
}

type textIndex struct {
	gen      uint64
	texts    []*gallery.Text
	encs     []*textproc.Encoding
	mentions [][]Mention
}

// New makes a service; the caller keeps ownership of store and model.
func New(store gallery.Store, model Model, cfg Config) *Service {
	cfg = cfg.withDefaults()
	return &Service{store: store, model: model, cfg: cfg, lex: NewLexicon(cfg.Labels)}
}

// Store is the service's gallery.
func (s *Service) Store() gallery.Store { return s.store }

// Config is the configuration in force (defaults applied).
func (s *Service) Config() Config { return s.cfg }

// Lexicon is the first stage's label lexicon.
func (s *Service) Lexicon() *Lexicon { return s.lex }

func inputErr(code, format string, a ...any) error {
	return &pipeline.InputError{Code: code, Message: fmt.Sprintf(format, a...)}
}

// storeInput turns the store's validation errors into input errors (400) naming the problem.
func storeInput(err error) error {
	if errors.Is(err, gallery.ErrInvalid) {
		return &pipeline.InputError{Code: "invalid_record", Message: err.Error(), Err: err}
	}
	return err
}

// DerivedID is the ID of an image or text stored without one: the first 16 hex digits of
// the SHA-256 of its bytes.
func DerivedID(sha256hex string) string { return sha256hex[:16] }

// Added describes an image after AddImage.
type Added struct {
	ID        string
	Duplicate bool // the same bytes were already stored (under ID); nothing was written
	SHA256    string
	Regions   int
	Width     int
	Height    int
}

// PrepareImage detects an image and builds its gallery record (regions, thumbnail), without
// writing it. If the bytes are already stored it returns nil and the stored image's ID.
func (s *Service) PrepareImage(ctx context.Context, data []byte, id string, metadata json.RawMessage) (*gallery.Image, string, error) {
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	if existing, err := s.store.ImageBySHA256(ctx, hexSum); err == nil {
		return nil, existing, nil
	} else if !errors.Is(err, gallery.ErrNotFound) {
		return nil, "", err
	}
	if id == "" {
		id = DerivedID(hexSum)
	}
	if err := gallery.ValidID(id); err != nil {
		return nil, "", storeInput(err)
	}
	meta, err := gallery.ValidMetadata(metadata)
	if err != nil {
		return nil, "", storeInput(err)
	}
	det, _, err := s.model.Detect(ctx, data)
	if err != nil {
		return nil, "", err
	}
	// Detect decoded the bytes already; the thumbnail decodes them again (the detection cache
	// keeps no pixels), under the detector's default limits, which the configured ones are within.
	pix, err := detector.Decode(data, detector.DecodeLimits{})
	if err != nil {
		return nil, "", fmt.Errorf("thumbnail: %w", err)
	}
	thumb, err := Thumbnail(pix, s.cfg.ThumbnailSize)
	if err != nil {
		return nil, "", fmt.Errorf("thumbnail: %w", err)
	}
	return &gallery.Image{ID: id, SHA256: hexSum, Source: s.cfg.Source, Width: det.Width, Height: det.Height,
		Format: det.Format, Metadata: meta, Created: time.Now().UTC(), Regions: RegionsOf(det), Thumbnail: thumb}, "", nil
}

// RegionsOf is a detection in the gallery's form.
func RegionsOf(det *detector.Detection) *gallery.Regions {
	p := det.Prepared
	r := &gallery.Regions{Boxes: p.Boxes, Locations: p.Locations, Dim: p.Dim, Features: p.Features,
		ClassDim: det.ClassDim, ClassProbs: det.ClassProbs, AttrDim: det.AttrDim, AttrProbs: det.AttrProbs,
		Confidence: make([]float32, len(det.Regions))}
	for i, reg := range det.Regions {
		r.Confidence[i] = reg.Confidence
	}
	return r
}

// AddImage detects an image and stores it (durably, before it returns). Bytes already stored
// are not detected again: the result names the stored image and says Duplicate.
func (s *Service) AddImage(ctx context.Context, data []byte, id string, metadata json.RawMessage) (*Added, error) {
	img, existing, err := s.PrepareImage(ctx, data, id, metadata)
	if err != nil {
		return nil, err
	}
	if img == nil {
		return s.describeExisting(ctx, existing)
	}
	res, err := s.store.PutImages(ctx, []*gallery.Image{img})
	if err != nil {
		return nil, storeInput(err)
	}
	if res[0].Duplicate { // stored by a concurrent request meanwhile
		return s.describeExisting(ctx, res[0].ID)
	}
	return &Added{ID: img.ID, SHA256: img.SHA256, Regions: img.Regions.Len(), Width: img.Width, Height: img.Height}, nil
}

func (s *Service) describeExisting(ctx context.Context, id string) (*Added, error) {
	img, err := s.store.Image(ctx, id, 0)
	if err != nil {
		return nil, err
	}
	return &Added{ID: id, Duplicate: true, SHA256: img.SHA256, Regions: img.NumRegions, Width: img.Width, Height: img.Height}, nil
}

// AddTexts validates, tokenises (to refuse what the model cannot read) and stores texts in
// one transaction. A text without an ID gets DerivedID of its UTF-8 bytes.
func (s *Service) AddTexts(ctx context.Context, texts []*gallery.Text) ([]gallery.PutResult, error) {
	switch {
	case len(texts) == 0:
		return nil, inputErr("no_texts", "texts: at least one text is needed")
	case len(texts) > s.cfg.MaxTextBatch:
		return nil, inputErr("too_many_texts", "texts: %d texts, at most %d per request", len(texts), s.cfg.MaxTextBatch)
	}
	for i, t := range texts {
		if t.ID == "" {
			sum := sha256.Sum256([]byte(t.Text))
			t.ID = DerivedID(hex.EncodeToString(sum[:]))
		}
		if t.Text == "" {
			return nil, inputErr("empty_text", "texts[%d].text: empty", i)
		}
		if _, err := s.model.Tokenize(t.Text); err != nil {
			var ie *pipeline.InputError
			if errors.As(err, &ie) {
				return nil, &pipeline.InputError{Code: ie.Code, Message: fmt.Sprintf("texts[%d]: %s", i, ie.Message), Err: err}
			}
			return nil, err
		}
	}
	res, err := s.store.PutTexts(ctx, texts)
	return res, storeInput(err)
}

// images is the image index, read again only when the store has changed.
func (s *Service) images(ctx context.Context) ([]gallery.IndexEntry, error) {
	st, err := s.store.Stats(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if c := s.imgIdx; c != nil && c.gen == st.Generation {
		s.mu.Unlock()
		return c.entries, nil
	}
	s.mu.Unlock()
	// Read after the generation: a write in between makes the next call read again.
	entries, err := s.store.ImageIndex(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.imgIdx = &imageIndex{gen: st.Generation, entries: entries}
	s.mu.Unlock()
	return entries, nil
}

// texts is every stored text with its encoding and mentions, rebuilt when the store changed.
func (s *Service) texts(ctx context.Context) (*textIndex, error) {
	st, err := s.store.Stats(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if c := s.textIdx; c != nil && c.gen == st.Generation {
		s.mu.Unlock()
		return c, nil
	}
	s.mu.Unlock()
	all, err := s.store.AllTexts(ctx)
	if err != nil {
		return nil, err
	}
	idx := &textIndex{gen: st.Generation, texts: all, encs: make([]*textproc.Encoding, len(all)), mentions: make([][]Mention, len(all))}
	for i, t := range all {
		if idx.encs[i], err = s.model.Tokenize(t.Text); err != nil {
			return nil, fmt.Errorf("stored text %q: %w", t.ID, err)
		}
		idx.mentions[i] = s.lex.Parse(t.Text)
	}
	s.mu.Lock()
	s.textIdx = idx
	s.mu.Unlock()
	return idx, nil
}
