// Package gallery is the persistent collection that retrieval searches: images with their
// detected regions (boxes, confidences, soft labels, float16 features, 7-d locations), caller
// metadata and thumbnails, and a collection of texts. Access goes through the Store
// interface; Open gives the embedded implementation (bbolt: one file, every commit fsynced,
// crash-safe). A server-backed store can implement the same interface without the handlers
// changing.
//
// The package stores and validates records; it knows nothing of models or HTTP. Detection,
// thumbnails and search live in gallery/retrieval.
package gallery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/uniter-serve/uniter/detector"
)

// Errors of the store. Handlers map them to statuses (ErrNotFound 404, ErrConflict 409,
// ErrInvalid 400).
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid record")
	// ErrIncompatible reports a data directory this build or this model cannot use (a newer
	// schema, another feature dimension).
	ErrIncompatible = errors.New("incompatible gallery")
	// ErrUnavailable reports a store that cannot be reached now (a database server down or
	// unreachable); the request may succeed later.
	ErrUnavailable = errors.New("gallery unavailable")
)

// Image is one stored image.
type Image struct {
	ID string
	// SHA256 is the hex SHA-256 of the image file's bytes; for imported features, of the
	// imported record (an .npz file or LMDB value). The store keeps one image per hash.
	SHA256 string
	// Source says where the regions came from: "detector:<bundle name>" or "import:npz",
	// "import:lmdb".
	Source string
	// Width and Height are the original (EXIF-oriented) size in pixels; both 0 when unknown
	// (imported features without an image size), in which case Boxes are normalised to [0, 1].
	Width, Height int
	Format        string          // image file format ("jpeg", "png", ...); "" for imports
	Metadata      json.RawMessage // the caller's JSON object; nil when none
	Created       time.Time
	Regions       *Regions // nil unless asked for (Parts)
	Thumbnail     []byte   // JPEG; nil unless asked for, or when there is none (imports)
	HasThumbnail  bool
	NumRegions    int
}

// Regions are an image's regions. Features are kept as IEEE float16 in the store: Put rounds
// them, Get returns the rounded values widened to float32.
type Regions struct {
	Boxes      []detector.Box                  // pixel boxes [x1, y1, x2, y2] (normalised when the size is unknown)
	Locations  [][detector.LocationDim]float32 // UNITER's 7-d location of each box
	Confidence []float32                       // detector confidence of each region
	Dim        int                             // feature dimension
	Features   []float32                       // n × Dim, row-major
	ClassDim   int                             // soft-label size (0: none)
	ClassProbs []float32                       // n × ClassDim: each region's class distribution (soft label)
	AttrDim    int                             // attribute distribution size (0: none)
	AttrProbs  []float32                       // n × AttrDim
}

// Len is the number of regions.
func (r *Regions) Len() int { return len(r.Boxes) }

// Prepared is the encoder's region input for these regions.
func (r *Regions) Prepared(width, height int) *detector.Prepared {
	return &detector.Prepared{Width: width, Height: height, Boxes: r.Boxes, Features: r.Features,
		Locations: r.Locations, Dim: r.Dim}
}

// Text is one stored text.
type Text struct {
	ID       string
	Text     string
	Metadata json.RawMessage
	Created  time.Time
}

// PutResult is the outcome of one record of a Put call.
type PutResult struct {
	ID        string
	Duplicate bool // already stored (same SHA-256 for images, same text and metadata for texts): nothing was written
}

// Parts select what Image returns besides the summary fields.
type Parts uint8

const (
	PartRegions Parts = 1 << iota
	PartThumbnail
)

// IndexEntry is what search needs to know of every image without reading its features: its
// region count (to batch similar lengths) and the top labels of each region (the first stage).
type IndexEntry struct {
	ID      string
	Regions int
	Labels  LabelSummary
}

// Claimer is a store shared by indexers on several machines (PostgreSQL): an indexer claims
// an image's bytes before detecting them, so that no two detect the same image at once.
type Claimer interface {
	Claim(ctx context.Context, sha256Hex, owner string, lease time.Duration) (bool, error)
	Release(ctx context.Context, owner string, sha256Hex []string) error
}

// Stats describe a store.
type Stats struct {
	Schema     int
	Images     int
	Texts      int
	FeatureDim int // 0 until the first image
	// Generation changes with every committed write; search caches keyed on it stay valid
	// while it does not change.
	Generation uint64
}

// Store is a gallery. Every method is safe for concurrent use. Writes are atomic: a call that
// returns an error has written nothing, and a call that returns nil is durable.
type Store interface {
	// PutImages stores images in one transaction. An image whose SHA-256 is already stored
	// (or appears earlier in the call) is not written again: its result names the stored ID
	// and says Duplicate. An ID already used by another image is ErrConflict.
	PutImages(ctx context.Context, images []*Image) ([]PutResult, error)
	// ImageBySHA256 is the ID of the stored image with that hash, or ErrNotFound.
	ImageBySHA256(ctx context.Context, sha256 string) (string, error)
	// Image reads an image with the parts asked for; ErrNotFound if there is none.
	Image(ctx context.Context, id string, parts Parts) (*Image, error)
	// Regions reads the regions of several images, in order; ErrNotFound names a missing one.
	Regions(ctx context.Context, ids []string) ([]*Regions, error)
	// DeleteImage removes an image and everything stored with it; ErrNotFound if none.
	DeleteImage(ctx context.Context, id string) error
	// ListImages lists up to limit images by ID, starting after the ID after ("" = first).
	// next is the last ID returned when more may follow, "" at the end.
	ListImages(ctx context.Context, after string, limit int) (images []*Image, next string, err error)
	// ImageIndex lists every image's search entry, by ID.
	ImageIndex(ctx context.Context) ([]IndexEntry, error)

	// PutTexts stores texts in one transaction. A text whose ID is stored with the same text
	// and metadata is a Duplicate; with another text or metadata it is ErrConflict.
	PutTexts(ctx context.Context, texts []*Text) ([]PutResult, error)
	Text(ctx context.Context, id string) (*Text, error)
	DeleteText(ctx context.Context, id string) error
	ListTexts(ctx context.Context, after string, limit int) (texts []*Text, next string, err error)
	// AllTexts lists every text by ID.
	AllTexts(ctx context.Context) ([]*Text, error)

	Stats(ctx context.Context) (Stats, error)
	Close() error
}

// Limits of stored records.
const (
	MaxIDLength       = 200
	MaxMetadataBytes  = 64 << 10
	MaxTextBytes      = 16 << 10
	MaxRegions        = 1000
	MaxThumbnailBytes = 1 << 20
)

// ValidID reports why id cannot name a record: IDs are 1–200 bytes of letters, digits and
// . _ - : @ + ~ (they appear in URL paths, so no slash, space or escape is needed).
func ValidID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: id is empty", ErrInvalid)
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("%w: id is %d bytes, at most %d", ErrInvalid, len(id), MaxIDLength)
	}
	for i, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '_' || c == '-' || c == ':' || c == '@' || c == '+' || c == '~':
		default:
			return fmt.Errorf("%w: id %q: character %q at byte %d is not allowed (letters, digits and . _ - : @ + ~)", ErrInvalid, truncate(id, 40), c, i)
		}
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%w: id %q is not allowed", ErrInvalid, id)
	}
	return nil
}

// SanitizeID makes an ID of a name (a file path, an LMDB key): '/' becomes ':', every other
// character an ID cannot hold becomes '_', and it is cut to MaxIDLength bytes.
func SanitizeID(name string) string {
	var b strings.Builder
	for _, c := range name {
		switch {
		case c == '/' || c == '\\':
			b.WriteByte(':')
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.ContainsRune("._-:@+~", c):
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	id := b.String()
	if len(id) > MaxIDLength {
		id = id[:MaxIDLength]
	}
	if id == "." || id == ".." {
		id = strings.Repeat("_", len(id))
	}
	return id
}

// ValidMetadata checks caller metadata: absent, null or a JSON object of bounded size.
func ValidMetadata(m json.RawMessage) (json.RawMessage, error) {
	if len(m) == 0 || string(m) == "null" {
		return nil, nil
	}
	if len(m) > MaxMetadataBytes {
		return nil, fmt.Errorf("%w: metadata is %d bytes, at most %d", ErrInvalid, len(m), MaxMetadataBytes)
	}
	var obj map[string]any
	if err := json.Unmarshal(m, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: metadata must be a JSON object", ErrInvalid)
	}
	// Store it compact so that equal objects compare equal byte for byte (duplicate texts).
	return json.Marshal(obj)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// validateImage checks an image before it is written.
func validateImage(img *Image, featureDim int) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: image %q: %s", ErrInvalid, truncate(img.ID, 40), fmt.Sprintf(format, a...))
	}
	if err := ValidID(img.ID); err != nil {
		return err
	}
	if len(img.SHA256) != 64 || !isHex(img.SHA256) {
		return bad("sha256 must be 64 lowercase hex digits")
	}
	if img.Width < 0 || img.Height < 0 || (img.Width == 0) != (img.Height == 0) {
		return bad("width and height must both be positive, or both 0 (unknown)")
	}
	if len(img.Thumbnail) > MaxThumbnailBytes {
		return bad("thumbnail is %d bytes, at most %d", len(img.Thumbnail), MaxThumbnailBytes)
	}
	r := img.Regions
	if r == nil {
		return bad("no regions")
	}
	n := r.Len()
	switch {
	case n == 0:
		return bad("no regions")
	case n > MaxRegions:
		return bad("%d regions, at most %d", n, MaxRegions)
	case r.Dim <= 0 || len(r.Features) != n*r.Dim:
		return bad("features: %d values for %d regions of dimension %d", len(r.Features), n, r.Dim)
	case featureDim > 0 && r.Dim != featureDim:
		return bad("feature dimension %d, the gallery holds dimension %d", r.Dim, featureDim)
	case len(r.Locations) != n || len(r.Confidence) != n:
		return bad("%d boxes, %d locations, %d confidences", n, len(r.Locations), len(r.Confidence))
	case r.ClassDim < 0 || len(r.ClassProbs) != n*r.ClassDim:
		return bad("soft labels: %d values for %d regions of %d classes", len(r.ClassProbs), n, r.ClassDim)
	case r.AttrDim < 0 || len(r.AttrProbs) != n*r.AttrDim:
		return bad("attributes: %d values for %d regions of %d attributes", len(r.AttrProbs), n, r.AttrDim)
	case r.ClassDim > 65535 || r.AttrDim > 65535:
		return bad("more than 65535 classes or attributes")
	}
	for _, vs := range [][]float32{r.Features, r.Confidence, r.ClassProbs, r.AttrProbs} {
		for i, v := range vs {
			if !detector.Finite(v) {
				return bad("non-finite value at index %d", i)
			}
		}
	}
	for i, b := range r.Boxes {
		for _, v := range b {
			if !detector.Finite(v) {
				return bad("box %d has a non-finite coordinate", i)
			}
		}
		for _, v := range r.Locations[i] {
			if !detector.Finite(v) {
				return bad("location %d has a non-finite value", i)
			}
		}
	}
	if _, err := ValidMetadata(img.Metadata); err != nil {
		return fmt.Errorf("image %q: %w", truncate(img.ID, 40), err)
	}
	return nil
}

func validateText(t *Text) error {
	if err := ValidID(t.ID); err != nil {
		return err
	}
	if t.Text == "" {
		return fmt.Errorf("%w: text %q is empty", ErrInvalid, t.ID)
	}
	if len(t.Text) > MaxTextBytes {
		return fmt.Errorf("%w: text %q is %d bytes, at most %d", ErrInvalid, t.ID, len(t.Text), MaxTextBytes)
	}
	if !utf8.ValidString(t.Text) {
		return fmt.Errorf("%w: text %q is not valid UTF-8", ErrInvalid, t.ID)
	}
	if _, err := ValidMetadata(t.Metadata); err != nil {
		return fmt.Errorf("text %q: %w", t.ID, err)
	}
	return nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
