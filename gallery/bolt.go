package gallery

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout this build writes. A data directory with an older version is
// migrated on open (in one transaction); a newer one is refused.
const SchemaVersion = 1

// FileName is the database file inside the data directory.
const FileName = "gallery.db"

// Buckets of schema 1. Keys are record IDs (UTF-8 bytes) unless said otherwise.
var (
	bucketMeta    = []byte("meta")       // schema, feature_dim, generation, counts
	bucketImages  = []byte("images")     // id → imageRecord (JSON)
	bucketRegions = []byte("regions")    // id → encodeRegions
	bucketIndex   = []byte("index")      // id → encodeIndex (region count and label summary)
	bucketThumbs  = []byte("thumbnails") // id → JPEG bytes
	bucketSHA     = []byte("sha256")     // 32-byte digest → id
	bucketTexts   = []byte("texts")      // id → textRecord (JSON)
	allBuckets    = [][]byte{bucketMeta, bucketImages, bucketRegions, bucketIndex, bucketThumbs, bucketSHA, bucketTexts}

	keySchema     = []byte("schema")
	keyFeatureDim = []byte("feature_dim")
	keyGeneration = []byte("generation")
	keyImages     = []byte("images")
	keyTexts      = []byte("texts")
	keyCreated    = []byte("created")
)

type imageRecord struct {
	SHA256    string          `json:"sha256"`
	Source    string          `json:"source"`
	Width     int             `json:"width"`
	Height    int             `json:"height"`
	Format    string          `json:"format,omitempty"`
	Regions   int             `json:"regions"`
	Thumbnail bool            `json:"thumbnail"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
	Created   time.Time       `json:"created"`
}

type textRecord struct {
	Text     string          `json:"text"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Created  time.Time       `json:"created"`
}

// Options tune Open.
type Options struct {
	// FeatureDim, when positive, is the feature dimension of the model that will use the
	// gallery: Open refuses a gallery whose images have another.
	FeatureDim int
	// LockTimeout bounds the wait for the file lock another process holds; 0 means 2 s.
	LockTimeout time.Duration
	// Unnamed, for a store that keeps a term index (PostgreSQL), are the model's labels that
	// name nothing, whose terms it does not index; nil indexes every label. Set it from the
	// model that computed the images' labels.
	Unnamed *Unnamed
}

// migration upgrades a gallery from schema from to from+1 inside the opening transaction.
type migration struct {
	from  int
	apply func(tx *bolt.Tx) error
}

// migrations lists every upgrade, in order. Schema 1 is the first: none yet. A change of
// layout adds an entry here and bumps SchemaVersion; tests open a gallery written by the
// previous version.
var migrations []migration

// Bolt is the embedded Store: one bbolt file in the data directory. bbolt fsyncs every
// commit and never leaves a half-written transaction visible, so a crash at any moment loses
// at most the transactions that had not returned.
type Bolt struct {
	db   *bolt.DB
	path string
}

var _ Store = (*Bolt)(nil)

// Open opens (creating if needed) the gallery in dir. Only one process may hold it.
func Open(dir string, opts Options) (*Bolt, error) {
	return openWith(dir, opts, SchemaVersion, migrations)
}

func openWith(dir string, opts Options, current int, migs []migration) (_ *Bolt, err error) {
	if dir == "" {
		return nil, errors.New("gallery: no data directory given")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("gallery: data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("gallery %s is in use by another process (a running `uniter serve`?): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("gallery %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, db.Close())
		}
	}()
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		fresh := meta == nil
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta = tx.Bucket(bucketMeta)
		if fresh {
			putUint(meta, keySchema, uint64(current))
			return meta.Put(keyCreated, []byte(time.Now().UTC().Format(time.RFC3339)))
		}
		v := int(getUint(meta, keySchema))
		if v > current {
			return fmt.Errorf("%w: %s has schema %d; this build reads schema %d or older", ErrIncompatible, path, v, current)
		}
		for _, m := range migs {
			if m.from < v {
				continue
			}
			if m.from != v {
				return fmt.Errorf("gallery: no migration from schema %d", v)
			}
			if err := m.apply(tx); err != nil {
				return fmt.Errorf("gallery: migrating schema %d to %d: %w", v, v+1, err)
			}
			v++
			putUint(meta, keySchema, uint64(v))
		}
		if v != current {
			return fmt.Errorf("gallery: schema %d, no migration to %d", v, current)
		}
		if fd := int(getUint(meta, keyFeatureDim)); opts.FeatureDim > 0 && fd > 0 && fd != opts.FeatureDim && getUint(meta, keyImages) > 0 {
			return fmt.Errorf("%w: %s holds features of dimension %d; the model's is %d (use another data directory)", ErrIncompatible, path, fd, opts.FeatureDim)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Bolt{db: db, path: path}, nil
}

// Path is the database file.
func (s *Bolt) Path() string { return s.path }

// Close closes the database; every committed write is already on disk.
func (s *Bolt) Close() error { return s.db.Close() }

// Check runs bbolt's consistency check (every page reachable once, no overlaps).
func (s *Bolt) Check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

func putUint(b *bolt.Bucket, key []byte, v uint64) {
	_ = b.Put(key, binary.BigEndian.AppendUint64(nil, v)) // Put fails only on bad keys or read-only txs
}

func getUint(b *bolt.Bucket, key []byte) uint64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func addUint(b *bolt.Bucket, key []byte, d int) {
	putUint(b, key, uint64(int64(getUint(b, key))+int64(d)))
}

// bumpGeneration marks a committed change for caches keyed on Stats.Generation.
func bumpGeneration(tx *bolt.Tx) { addUint(tx.Bucket(bucketMeta), keyGeneration, 1) }

func notFound(kind, id string) error {
	return fmt.Errorf("%s %q: %w", kind, truncate(id, 60), ErrNotFound)
}

// PutImages implements Store. Concurrent calls are coalesced into one transaction (bbolt's
// Batch), so concurrent uploads share one fsync; each call still returns only once its
// images are durable.
func (s *Bolt) PutImages(ctx context.Context, images []*Image) ([]PutResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	encoded := make([]struct{ rec, regions, index []byte }, len(images))
	for i, img := range images {
		if err := validateImage(img, 0); err != nil {
			return nil, err
		}
		meta, _ := ValidMetadata(img.Metadata)
		rec := imageRecord{SHA256: img.SHA256, Source: img.Source, Width: img.Width, Height: img.Height,
			Format: img.Format, Regions: img.Regions.Len(), Thumbnail: len(img.Thumbnail) > 0, Metadata: meta,
			Created: img.Created.UTC()}
		if rec.Created.IsZero() {
			rec.Created = time.Now().UTC()
		}
		raw, err := json.Marshal(rec)
		if err != nil {
			return nil, err
		}
		encoded[i].rec = raw
		encoded[i].regions = encodeRegions(img.Regions)
		encoded[i].index = encodeIndex(img.Regions.Len(), Summarize(img.Regions))
	}
	var results []PutResult
	err := s.db.Batch(func(tx *bolt.Tx) error {
		results = make([]PutResult, len(images)) // Batch may run this function again
		meta, imgs, shas := tx.Bucket(bucketMeta), tx.Bucket(bucketImages), tx.Bucket(bucketSHA)
		fd := int(getUint(meta, keyFeatureDim))
		if getUint(meta, keyImages) == 0 {
			fd = 0 // an emptied gallery takes any dimension again
		}
		ids := map[string]string{} // id → sha256 written in this call
		added := 0
		for i, img := range images {
			digest, _ := hex.DecodeString(img.SHA256)
			if id := shas.Get(digest); id != nil {
				results[i] = PutResult{ID: string(id), Duplicate: true}
				continue
			}
			if fd == 0 {
				fd = img.Regions.Dim
				putUint(meta, keyFeatureDim, uint64(fd))
			}
			if img.Regions.Dim != fd {
				return fmt.Errorf("%w: image %q has features of dimension %d, the gallery holds dimension %d", ErrInvalid, img.ID, img.Regions.Dim, fd)
			}
			if _, ok := ids[img.ID]; ok || imgs.Get([]byte(img.ID)) != nil {
				return fmt.Errorf("%w: id %q is taken by another image", ErrConflict, img.ID)
			}
			id := []byte(img.ID)
			for _, kv := range []struct {
				bucket []byte
				value  []byte
			}{{bucketImages, encoded[i].rec}, {bucketRegions, encoded[i].regions}, {bucketIndex, encoded[i].index}} {
				if err := tx.Bucket(kv.bucket).Put(id, kv.value); err != nil {
					return err
				}
			}
			if len(img.Thumbnail) > 0 {
				if err := tx.Bucket(bucketThumbs).Put(id, img.Thumbnail); err != nil {
					return err
				}
			}
			if err := shas.Put(digest, id); err != nil {
				return err
			}
			ids[img.ID] = img.SHA256
			results[i] = PutResult{ID: img.ID}
			added++
		}
		if added > 0 {
			addUint(meta, keyImages, added)
			bumpGeneration(tx)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// ImageBySHA256 implements Store.
func (s *Bolt) ImageBySHA256(ctx context.Context, sum string) (string, error) {
	digest, err := hex.DecodeString(sum)
	if err != nil || len(digest) != 32 {
		return "", fmt.Errorf("%w: sha256 %q is not 64 hex digits", ErrInvalid, truncate(sum, 70))
	}
	var id string
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSHA).Get(digest)
		if v == nil {
			return notFound("image with sha256", sum)
		}
		id = string(v)
		return nil
	})
	return id, err
}

func imageFromRecord(id string, raw []byte) (*Image, error) {
	var rec imageRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("corrupt image record %q: %w", id, err)
	}
	return &Image{ID: id, SHA256: rec.SHA256, Source: rec.Source, Width: rec.Width, Height: rec.Height,
		Format: rec.Format, Metadata: rec.Metadata, Created: rec.Created, HasThumbnail: rec.Thumbnail,
		NumRegions: rec.Regions}, nil
}

// Image implements Store.
func (s *Bolt) Image(ctx context.Context, id string, parts Parts) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var img *Image
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketImages).Get([]byte(id))
		if raw == nil {
			return notFound("image", id)
		}
		var err error
		if img, err = imageFromRecord(id, raw); err != nil {
			return err
		}
		if parts&PartRegions != 0 {
			if img.Regions, err = decodeRegions(tx.Bucket(bucketRegions).Get([]byte(id))); err != nil {
				return fmt.Errorf("image %q: %w", id, err)
			}
		}
		if parts&PartThumbnail != 0 {
			if t := tx.Bucket(bucketThumbs).Get([]byte(id)); t != nil {
				img.Thumbnail = bytes.Clone(t) // bbolt's bytes live only as long as the transaction
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return img, nil
}

// Regions implements Store.
func (s *Bolt) Regions(ctx context.Context, ids []string) ([]*Regions, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]*Regions, len(ids))
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRegions)
		for i, id := range ids {
			raw := b.Get([]byte(id))
			if raw == nil {
				return notFound("image", id)
			}
			r, err := decodeRegions(raw)
			if err != nil {
				return fmt.Errorf("image %q: %w", id, err)
			}
			out[i] = r
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteImage implements Store.
func (s *Bolt) DeleteImage(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		key := []byte(id)
		raw := tx.Bucket(bucketImages).Get(key)
		if raw == nil {
			return notFound("image", id)
		}
		img, err := imageFromRecord(id, raw)
		if err != nil {
			return err
		}
		if digest, err := hex.DecodeString(img.SHA256); err == nil {
			if err := tx.Bucket(bucketSHA).Delete(digest); err != nil {
				return err
			}
		}
		for _, name := range [][]byte{bucketImages, bucketRegions, bucketIndex, bucketThumbs} {
			if err := tx.Bucket(name).Delete(key); err != nil {
				return err
			}
		}
		addUint(tx.Bucket(bucketMeta), keyImages, -1)
		bumpGeneration(tx)
		return nil
	})
}

// list walks bucket from the key after `after`, calling fn for up to limit records.
func list(tx *bolt.Tx, bucket []byte, after string, limit int, fn func(k, v []byte) error) (next string, err error) {
	if limit < 1 {
		return "", fmt.Errorf("%w: list limit %d, want at least 1", ErrInvalid, limit)
	}
	c := tx.Bucket(bucket).Cursor()
	var k, v []byte
	if after == "" {
		k, v = c.First()
	} else {
		k, v = c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
	}
	n := 0
	var last []byte
	for ; k != nil; k, v = c.Next() {
		if n == limit {
			return string(last), nil
		}
		if err := fn(k, v); err != nil {
			return "", err
		}
		last = k
		n++
	}
	return "", nil
}

// ListImages implements Store.
func (s *Bolt) ListImages(ctx context.Context, after string, limit int) ([]*Image, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	var out []*Image
	var next string
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		next, err = list(tx, bucketImages, after, limit, func(k, v []byte) error {
			img, err := imageFromRecord(string(k), v)
			if err == nil {
				out = append(out, img)
			}
			return err
		})
		return err
	})
	return out, next, err
}

// ImageIndex implements Store.
func (s *Bolt) ImageIndex(ctx context.Context) ([]IndexEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []IndexEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		out = make([]IndexEntry, 0, getUint(tx.Bucket(bucketMeta), keyImages))
		return tx.Bucket(bucketIndex).ForEach(func(k, v []byte) error {
			e, err := decodeIndex(string(k), v)
			if err == nil {
				out = append(out, e)
			}
			return err
		})
	})
	return out, err
}

// PutTexts implements Store.
func (s *Bolt) PutTexts(ctx context.Context, texts []*Text) ([]PutResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	encoded := make([][]byte, len(texts))
	metas := make([]json.RawMessage, len(texts))
	for i, t := range texts {
		if err := validateText(t); err != nil {
			return nil, err
		}
		metas[i], _ = ValidMetadata(t.Metadata)
		created := t.Created.UTC()
		if created.IsZero() {
			created = time.Now().UTC()
		}
		raw, err := json.Marshal(textRecord{Text: t.Text, Metadata: metas[i], Created: created})
		if err != nil {
			return nil, err
		}
		encoded[i] = raw
	}
	var results []PutResult
	err := s.db.Batch(func(tx *bolt.Tx) error {
		results = make([]PutResult, len(texts))
		b := tx.Bucket(bucketTexts)
		seen := map[string]int{}
		added := 0
		for i, t := range texts {
			same := func(text string, meta json.RawMessage) bool {
				return text == t.Text && bytes.Equal(meta, metas[i])
			}
			if j, ok := seen[t.ID]; ok {
				if !same(texts[j].Text, metas[j]) {
					return fmt.Errorf("%w: text id %q appears twice with different content", ErrConflict, t.ID)
				}
				results[i] = PutResult{ID: t.ID, Duplicate: true}
				continue
			}
			seen[t.ID] = i
			if raw := b.Get([]byte(t.ID)); raw != nil {
				var rec textRecord
				if err := json.Unmarshal(raw, &rec); err != nil {
					return fmt.Errorf("corrupt text record %q: %w", t.ID, err)
				}
				if !same(rec.Text, rec.Metadata) {
					return fmt.Errorf("%w: text id %q is taken by another text", ErrConflict, t.ID)
				}
				results[i] = PutResult{ID: t.ID, Duplicate: true}
				continue
			}
			if err := b.Put([]byte(t.ID), encoded[i]); err != nil {
				return err
			}
			results[i] = PutResult{ID: t.ID}
			added++
		}
		if added > 0 {
			addUint(tx.Bucket(bucketMeta), keyTexts, added)
			bumpGeneration(tx)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

func textFromRecord(id string, raw []byte) (*Text, error) {
	var rec textRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("corrupt text record %q: %w", id, err)
	}
	return &Text{ID: id, Text: rec.Text, Metadata: rec.Metadata, Created: rec.Created}, nil
}

// Text implements Store.
func (s *Bolt) Text(ctx context.Context, id string) (*Text, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var t *Text
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		raw := tx.Bucket(bucketTexts).Get([]byte(id))
		if raw == nil {
			return notFound("text", id)
		}
		t, err = textFromRecord(id, raw)
		return err
	})
	return t, err
}

// DeleteText implements Store.
func (s *Bolt) DeleteText(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTexts)
		if b.Get([]byte(id)) == nil {
			return notFound("text", id)
		}
		if err := b.Delete([]byte(id)); err != nil {
			return err
		}
		addUint(tx.Bucket(bucketMeta), keyTexts, -1)
		bumpGeneration(tx)
		return nil
	})
}

// ListTexts implements Store.
func (s *Bolt) ListTexts(ctx context.Context, after string, limit int) ([]*Text, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	var out []*Text
	var next string
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		next, err = list(tx, bucketTexts, after, limit, func(k, v []byte) error {
			t, err := textFromRecord(string(k), v)
			if err == nil {
				out = append(out, t)
			}
			return err
		})
		return err
	})
	return out, next, err
}

// AllTexts implements Store.
func (s *Bolt) AllTexts(ctx context.Context) ([]*Text, error) {
	out, _, err := s.ListTexts(ctx, "", int(^uint(0)>>1))
	return out, err
}

// Stats implements Store.
func (s *Bolt) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		st = Stats{Schema: int(getUint(m, keySchema)), Images: int(getUint(m, keyImages)), Texts: int(getUint(m, keyTexts)),
			FeatureDim: int(getUint(m, keyFeatureDim)), Generation: getUint(m, keyGeneration)}
		return nil
	})
	return st, err
}
