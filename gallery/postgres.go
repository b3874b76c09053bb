package gallery

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresSchemaVersion is the table layout this build writes in PostgreSQL (versioned apart
// from the bbolt layout). A database with an older version is migrated on open, in one
// transaction under an advisory lock; a newer one is refused with ErrIncompatible.
const PostgresSchemaVersion = 2

// schemaLockKey names the advisory lock that serialises schema creation and migrations among
// replicas opening one database at once.
const schemaLockKey int64 = 0x756e69746572_0001 // "uniter", 1

// The tables of schema 1. IDs sort byte-wise (COLLATE "C"), as bbolt's keys do, so that both
// backends page alike. Regions and the label index are codec.go's encodings (float16
// features); thumbnails sit in their own table, so that listing and the index never read them.
const postgresSchema = `
CREATE TABLE uniter_meta (
	only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	schema      integer NOT NULL,
	feature_dim integer NOT NULL DEFAULT 0,
	images      bigint NOT NULL DEFAULT 0,
	texts       bigint NOT NULL DEFAULT 0,
	generation  bigint NOT NULL DEFAULT 0,
	created     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE uniter_images (
	id            text COLLATE "C" PRIMARY KEY,
	sha256        bytea NOT NULL CHECK (length(sha256) = 32),
	source        text NOT NULL,
	width         integer NOT NULL,
	height        integer NOT NULL,
	format        text NOT NULL,
	num_regions   integer NOT NULL,
	has_thumbnail boolean NOT NULL,
	metadata      jsonb,
	created       timestamptz NOT NULL,
	regions       bytea NOT NULL,
	label_index   bytea NOT NULL
);
CREATE UNIQUE INDEX uniter_images_sha256 ON uniter_images (sha256);
CREATE TABLE uniter_thumbnails (
	image_id text COLLATE "C" PRIMARY KEY REFERENCES uniter_images (id) ON DELETE CASCADE,
	jpeg     bytea NOT NULL
);
CREATE TABLE uniter_texts (
	id       text COLLATE "C" PRIMARY KEY,
	content  text NOT NULL,
	metadata jsonb,
	created  timestamptz NOT NULL
);
-- The shared work list of indexers on several machines: an image's bytes (by SHA-256) claimed
-- by one of them until the claim's lease ends (Postgres.Claim).
CREATE TABLE uniter_index_claims (
	sha256  bytea PRIMARY KEY CHECK (length(sha256) = 32),
	owner   text NOT NULL,
	expires timestamptz NOT NULL
);
-- float16 features and JPEG bytes do not compress: store them out of line as they are.
ALTER TABLE uniter_images ALTER COLUMN regions SET STORAGE EXTERNAL;
ALTER TABLE uniter_thumbnails ALTER COLUMN jpeg SET STORAGE EXTERNAL;
`

// pgMigration upgrades a database from schema from to from+1 inside the opening transaction.
type pgMigration struct {
	from  int
	apply func(ctx context.Context, tx pgx.Tx, s *Postgres) error
}

// pgMigrations lists every upgrade of the PostgreSQL layout, in order; a new database is
// created at schema 1 and goes through all of them. A change of layout adds an entry here
// and bumps PostgresSchemaVersion.
var pgMigrations = []pgMigration{{from: 1, apply: addTermIndex}}

// Postgres is the server-backed Store: a pool of connections to one PostgreSQL database, which
// several replicas may share. Every write is one transaction that first locks the meta row,
// so writers (of all replicas) take turns as bbolt's single writer does: the feature
// dimension, the counts and the generation stay consistent. Dedup by SHA-256 is enforced by
// a unique index besides. Reads see every committed write at once, whichever replica made it.
//
// It behaves as Bolt does (the contract tests run on both), but for what PostgreSQL cannot
// hold: Created is kept to the microsecond; a NUL character in a text or in metadata, and a
// list cursor that is not UTF-8, are ErrInvalid. A server that cannot be reached is
// ErrUnavailable.
type Postgres struct {
	pool    *pgxpool.Pool
	target  string  // the DSN without its password, for messages
	unnamed Unnamed // labels whose terms are not indexed (Options.Unnamed)
}

var _ Store = (*Postgres)(nil)

// OpenPostgres connects to the database dsn names (a postgres:// URL or key=value pairs, as
// libpq takes them; PGPASSWORD and ~/.pgpass work too), creates the tables or migrates them,
// and checks opts.FeatureDim like Open (opts.LockTimeout is bbolt's: the context bounds the
// wait here). No error or message shows the DSN's password.
func OpenPostgres(ctx context.Context, dsn string, opts Options) (*Postgres, error) {
	return openPostgresWith(ctx, dsn, opts, PostgresSchemaVersion, pgMigrations)
}

func openPostgresWith(ctx context.Context, dsn string, opts Options, current int, migs []pgMigration) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the DSN, redacted only on a best-effort basis: not shown.
		return nil, errors.New("gallery: the PostgreSQL DSN cannot be parsed (it is not shown, as it may hold a password); " +
			"give a postgres:// URL or key=value pairs")
	}
	s := &Postgres{target: describeDSN(&cfg.ConnConfig.Config), unnamed: NothingUnnamed}
	if opts.Unnamed != nil {
		s.unnamed = *opts.Unnamed
	}
	secret := cfg.ConnConfig.Password
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, scrub(fmt.Errorf("gallery: PostgreSQL %s: %w", s.target, err), secret)
	}
	if err := s.migrate(ctx, opts, current, migs); err != nil {
		s.pool.Close()
		return nil, scrub(err, secret)
	}
	return s, nil
}

// RedactDSN describes the database a DSN names without its password (user@host:port/dbname),
// for logs; "(unparseable DSN)" when it cannot be parsed.
func RedactDSN(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "(unparseable DSN)"
	}
	return describeDSN(cfg)
}

func describeDSN(cfg *pgconn.Config) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// scrubbed is an error whose message has the password taken out; errors.Is and errors.As
// still see the error it wraps.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

func scrub(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &scrubbed{msg: strings.ReplaceAll(err.Error(), secret, "xxxxx"), err: err}
}

// Target is the database, without the DSN's password.
func (s *Postgres) Target() string { return s.target }

// Claim takes the image with these bytes (hex SHA-256) for owner until lease ends, so that
// indexers on several machines sharing the database never detect the same image at once: it
// reports false while another owner's claim runs. A claim whose lease ended (its indexer was
// killed) is taken over; owner's own claim is renewed. Release ends claims early.
func (s *Postgres) Claim(ctx context.Context, sha256Hex, owner string, lease time.Duration) (_ bool, err error) {
	defer func() { err = dbError(ctx, err) }()
	sum, err := hex.DecodeString(sha256Hex)
	if err != nil || len(sum) != 32 {
		return false, fmt.Errorf("%w: claim: %q is not a hex SHA-256", ErrInvalid, sha256Hex)
	}
	var got string
	err = s.pool.QueryRow(ctx, `
		INSERT INTO uniter_index_claims (sha256, owner, expires) VALUES ($1, $2, now() + $3::interval)
		ON CONFLICT (sha256) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
			WHERE uniter_index_claims.expires < now() OR uniter_index_claims.owner = excluded.owner
		RETURNING owner`, sum, owner, lease.String()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // another owner's claim runs
	}
	return err == nil, err
}

// Release ends owner's claims on these images (hex SHA-256s).
func (s *Postgres) Release(ctx context.Context, owner string, sha256Hex []string) (err error) {
	defer func() { err = dbError(ctx, err) }()
	sums := make([][]byte, 0, len(sha256Hex))
	for _, h := range sha256Hex {
		sum, err := hex.DecodeString(h)
		if err != nil || len(sum) != 32 {
			return fmt.Errorf("%w: release: %q is not a hex SHA-256", ErrInvalid, h)
		}
		sums = append(sums, sum)
	}
	_, err = s.pool.Exec(ctx, `DELETE FROM uniter_index_claims WHERE owner = $1 AND sha256 = ANY($2)`, owner, sums)
	return err
}

// Ping checks that the database answers (the server's readiness); ErrUnavailable when not.
func (s *Postgres) Ping(ctx context.Context) error {
	if err := dbError(ctx, s.pool.Ping(ctx)); err != nil {
		if !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	return nil
}

// Close closes the pool; every committed write is already in the database.
func (s *Postgres) Close() error {
	s.pool.Close()
	return nil
}

// migrate creates the tables in an empty database or migrates them, under an advisory lock
// held to the end of the transaction: replicas that start together take turns, and all but
// the first find the work done.
func (s *Postgres) migrate(ctx context.Context, opts Options, current int, migs []pgMigration) error {
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLockKey); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass('uniter_meta') IS NOT NULL`).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, postgresSchema); err != nil {
				return fmt.Errorf("creating the tables: %w", err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO uniter_meta (schema) VALUES (1)`); err != nil {
				return err
			}
		}
		var v, fd int
		var images int64
		if err := tx.QueryRow(ctx, `SELECT schema, feature_dim, images FROM uniter_meta`).Scan(&v, &fd, &images); err != nil {
			return fmt.Errorf("reading uniter_meta: %w", err)
		}
		if v > current {
			return fmt.Errorf("%w: %s has schema %d; this build reads schema %d or older", ErrIncompatible, s.target, v, current)
		}
		for _, m := range migs {
			if m.from < v {
				continue
			}
			if m.from != v {
				return fmt.Errorf("gallery: no migration from schema %d", v)
			}
			if err := m.apply(ctx, tx, s); err != nil {
				return fmt.Errorf("gallery: migrating schema %d to %d: %w", v, v+1, err)
			}
			v++
			if _, err := tx.Exec(ctx, `UPDATE uniter_meta SET schema = $1`, v); err != nil {
				return err
			}
		}
		if v != current {
			return fmt.Errorf("gallery: schema %d, no migration to %d", v, current)
		}
		if opts.FeatureDim > 0 && fd > 0 && fd != opts.FeatureDim && images > 0 {
			return fmt.Errorf("%w: %s holds features of dimension %d; the model's is %d (use another database)", ErrIncompatible, s.target, fd, opts.FeatureDim)
		}
		return nil
	})
	if err = dbError(ctx, err); err != nil && !errors.Is(err, ErrIncompatible) && !strings.HasPrefix(err.Error(), "gallery:") {
		err = fmt.Errorf("gallery: PostgreSQL %s: %w", s.target, err)
	}
	return err
}

// pgMeta is the meta row as a write transaction found it, locked; the write updates it.
type pgMeta struct {
	featureDim    int
	images, texts int64
}

// errRace reports an insert that a unique index turned down although the transaction's
// reads saw no conflict: the write runs again and sees the other writer's row.
var errRace = errors.New("gallery: concurrent insert")

// write runs fn in a transaction that first locks the meta row. fn reports whether it changed
// anything; the counts and the generation are updated only then. A transaction that lost a
// race (a deadlock, a serialisation failure, errRace) runs again from the start.
func (s *Postgres) write(ctx context.Context, fn func(tx pgx.Tx, m *pgMeta) (changed bool, err error)) error {
	for attempt := 1; ; attempt++ {
		err := s.writeOnce(ctx, fn)
		var pgErr *pgconn.PgError
		retry := errors.Is(err, errRace) || errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
		if !retry || attempt == 5 || ctx.Err() != nil {
			return err
		}
	}
}

func (s *Postgres) writeOnce(ctx context.Context, fn func(tx pgx.Tx, m *pgMeta) (bool, error)) (err error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(ctx) // a connection that cannot roll back is closed, which rolls back
		}
	}()
	var m pgMeta
	if err := tx.QueryRow(ctx, `SELECT feature_dim, images, texts FROM uniter_meta FOR UPDATE`).Scan(&m.featureDim, &m.images, &m.texts); err != nil {
		return fmt.Errorf("locking uniter_meta: %w", err)
	}
	changed, err := fn(tx, &m)
	if err != nil {
		return err
	}
	if changed {
		if _, err := tx.Exec(ctx, `UPDATE uniter_meta SET feature_dim = $1, images = $2, texts = $3, generation = generation + 1`,
			m.featureDim, m.images, m.texts); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// dbError sorts the database's errors into the package's: a value the database refuses (a
// NUL character in a text, an escape jsonb does not take, a list cursor that is not UTF-8) is
// ErrInvalid, as the handlers expect of bad input; a server that cannot be reached (refused
// or lost connections, a shutdown, too many clients) is ErrUnavailable. A cancelled call
// keeps its context's error.
func dbError(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	for _, known := range []error{ErrInvalid, ErrNotFound, ErrConflict, ErrIncompatible, ErrUnavailable} {
		if errors.Is(err, known) {
			return err
		}
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) { // whatever the server said: no connection, no answer
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch c := pgErr.Code; {
		case strings.HasPrefix(c, "22"):
			return fmt.Errorf("%w: PostgreSQL refuses a value: %s", ErrInvalid, pgErr.Message)
		case strings.HasPrefix(c, "08"), strings.HasPrefix(c, "57P"), c == "53300":
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// sendInserts runs a batch of inserts (ON CONFLICT DO NOTHING); an insert marked in mustInsert
// that wrote no row met a concurrent writer's row: errRace, and the write runs again.
func sendInserts(ctx context.Context, tx pgx.Tx, batch *pgx.Batch, mustInsert []bool) error {
	br := tx.SendBatch(ctx, batch)
	for _, must := range mustInsert {
		tag, err := br.Exec()
		if err == nil && must && tag.RowsAffected() != 1 {
			err = errRace
		}
		if err != nil {
			_ = br.Close()
			return err
		}
	}
	return br.Close()
}

// jsonArg is metadata as a jsonb parameter (NULL when none).
func jsonArg(m json.RawMessage) any {
	if len(m) == 0 {
		return nil
	}
	return string(m)
}

// normJSON gives stored metadata back in the form ValidMetadata stores (compact, keys sorted),
// as Bolt does: jsonb keeps its own key order and spacing.
func normJSON(raw []byte) (json.RawMessage, error) {
	if raw == nil {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("corrupt metadata: %w", err)
	}
	return json.Marshal(v)
}

// PutImages implements Store.
func (s *Postgres) PutImages(ctx context.Context, images []*Image) (_ []PutResult, err error) {
	defer func() { err = dbError(ctx, err) }()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type row struct {
		digest         []byte
		meta           json.RawMessage
		created        time.Time
		regions, index []byte
		terms          []WeightedTerm
	}
	rows := make([]row, len(images))
	digests := make([][]byte, len(images))
	ids := make([]string, len(images))
	for i, img := range images {
		if err := validateImage(img, 0); err != nil {
			return nil, err
		}
		r := &rows[i]
		r.digest, _ = hex.DecodeString(img.SHA256)
		r.meta, _ = ValidMetadata(img.Metadata)
		r.created = img.Created.UTC()
		if r.created.IsZero() {
			r.created = time.Now().UTC()
		}
		r.regions = encodeRegions(img.Regions)
		summary := Summarize(img.Regions)
		r.index = encodeIndex(img.Regions.Len(), summary)
		r.terms = summary.Terms(img.Regions.Len(), s.unnamed)
		digests[i], ids[i] = r.digest, img.ID
	}
	var results []PutResult
	err = s.write(ctx, func(tx pgx.Tx, m *pgMeta) (bool, error) {
		results = make([]PutResult, len(images)) // write may run this function again
		if len(images) == 0 {
			return false, nil
		}
		// What is stored under these hashes and IDs already.
		bySHA, takenIDs := map[string]string{}, map[string]bool{}
		q, err := tx.Query(ctx, `SELECT id, sha256 FROM uniter_images WHERE sha256 = ANY($1) OR id = ANY($2)`, digests, ids)
		if err != nil {
			return false, err
		}
		var id string
		var digest []byte
		if _, err := pgx.ForEachRow(q, []any{&id, &digest}, func() error {
			bySHA[string(digest)], takenIDs[id] = id, true
			return nil
		}); err != nil {
			return false, err
		}
		fd := m.featureDim
		if m.images == 0 {
			fd = 0 // an emptied gallery takes any dimension again
		}
		var batch pgx.Batch
		var isImage []bool // of each queued statement
		added := 0
		for i, img := range images {
			if id, ok := bySHA[string(rows[i].digest)]; ok {
				results[i] = PutResult{ID: id, Duplicate: true}
				continue
			}
			if fd == 0 {
				fd = img.Regions.Dim
			}
			if img.Regions.Dim != fd {
				return false, fmt.Errorf("%w: image %q has features of dimension %d, the gallery holds dimension %d", ErrInvalid, img.ID, img.Regions.Dim, fd)
			}
			if takenIDs[img.ID] {
				return false, fmt.Errorf("%w: id %q is taken by another image", ErrConflict, img.ID)
			}
			r := rows[i]
			// ON CONFLICT DO NOTHING: a row that another transaction slipped in (which the meta
			// lock rules out among this build's writers) shows as no row inserted: errRace.
			batch.Queue(`INSERT INTO uniter_images (id, sha256, source, width, height, format, num_regions,
				has_thumbnail, metadata, created, regions, label_index, terms)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING`,
				img.ID, r.digest, img.Source, img.Width, img.Height, img.Format, img.Regions.Len(),
				len(img.Thumbnail) > 0, jsonArg(r.meta), r.created, r.regions, r.index, termCodes(r.terms))
			isImage = append(isImage, true)
			queueImageTerms(&batch, img.ID, r.terms)
			isImage = append(isImage, false)
			if len(img.Thumbnail) > 0 {
				batch.Queue(`INSERT INTO uniter_thumbnails (image_id, jpeg) VALUES ($1, $2)`, img.ID, img.Thumbnail)
				isImage = append(isImage, false)
			}
			bySHA[string(r.digest)], takenIDs[img.ID] = img.ID, true
			results[i] = PutResult{ID: img.ID}
			added++
		}
		if added == 0 {
			return false, nil
		}
		if err := sendInserts(ctx, tx, &batch, isImage); err != nil {
			return false, err
		}
		m.featureDim = fd
		m.images += int64(added)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// ImageBySHA256 implements Store.
func (s *Postgres) ImageBySHA256(ctx context.Context, sum string) (_ string, err error) {
	defer func() { err = dbError(ctx, err) }()
	digest, err := hex.DecodeString(sum)
	if err != nil || len(digest) != 32 {
		return "", fmt.Errorf("%w: sha256 %q is not 64 hex digits", ErrInvalid, truncate(sum, 70))
	}
	var id string
	err = s.pool.QueryRow(ctx, `SELECT id FROM uniter_images WHERE sha256 = $1`, digest).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", notFound("image with sha256", sum)
	}
	return id, err
}

// imageColumns are an Image's summary fields, as scanImage reads them.
const imageColumns = `i.id, i.sha256, i.source, i.width, i.height, i.format, i.num_regions, i.has_thumbnail, i.metadata, i.created`

// scanImage reads imageColumns, then extra.
func scanImage(row pgx.Row, extra ...any) (*Image, error) {
	var img Image
	var digest, meta []byte
	dst := append([]any{&img.ID, &digest, &img.Source, &img.Width, &img.Height, &img.Format, &img.NumRegions,
		&img.HasThumbnail, &meta, &img.Created}, extra...)
	if err := row.Scan(dst...); err != nil {
		return nil, err
	}
	img.SHA256 = hex.EncodeToString(digest)
	img.Created = img.Created.UTC()
	var err error
	if img.Metadata, err = normJSON(meta); err != nil {
		return nil, fmt.Errorf("image %q: %w", img.ID, err)
	}
	return &img, nil
}

// Image implements Store.
func (s *Postgres) Image(ctx context.Context, id string, parts Parts) (_ *Image, err error) {
	defer func() { err = dbError(ctx, err) }()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ValidID(id) != nil {
		return nil, notFound("image", id) // no such ID can be stored (and PostgreSQL may refuse it)
	}
	var regions, thumb []byte
	var extra []any
	cols, join := "", ""
	if parts&PartRegions != 0 {
		cols += ", i.regions"
		extra = append(extra, &regions)
	}
	if parts&PartThumbnail != 0 {
		cols += ", t.jpeg"
		join = " LEFT JOIN uniter_thumbnails t ON t.image_id = i.id"
		extra = append(extra, &thumb)
	}
	img, err := scanImage(s.pool.QueryRow(ctx, `SELECT `+imageColumns+cols+` FROM uniter_images i`+join+` WHERE i.id = $1`, id), extra...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("image", id)
	}
	if err != nil {
		return nil, err
	}
	if parts&PartRegions != 0 {
		if img.Regions, err = decodeRegions(regions); err != nil {
			return nil, fmt.Errorf("image %q: %w", id, err)
		}
	}
	if len(thumb) > 0 {
		img.Thumbnail = thumb
	}
	return img, nil
}

// Regions implements Store.
func (s *Postgres) Regions(ctx context.Context, ids []string) (_ []*Regions, err error) {
	defer func() { err = dbError(ctx, err) }()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if ValidID(id) == nil {
			valid = append(valid, id)
		}
	}
	q, err := s.pool.Query(ctx, `SELECT id, regions FROM uniter_images WHERE id = ANY($1)`, valid)
	if err != nil {
		return nil, err
	}
	found := make(map[string]*Regions, len(ids))
	var id string
	var raw []byte
	if _, err := pgx.ForEachRow(q, []any{&id, &raw}, func() error {
		r, err := decodeRegions(raw)
		if err != nil {
			return fmt.Errorf("image %q: %w", id, err)
		}
		found[id] = r
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]*Regions, len(ids))
	for i, id := range ids {
		if out[i] = found[id]; out[i] == nil {
			return nil, notFound("image", id)
		}
	}
	return out, nil
}

// DeleteImage implements Store. Its thumbnail goes with it (ON DELETE CASCADE), its postings
// by deleteImageSQL.
func (s *Postgres) DeleteImage(ctx context.Context, id string) error {
	return s.deleteRow(ctx, "image", "uniter_images", deleteImageSQL, id, func(m *pgMeta) *int64 { return &m.images })
}

// deleteRow deletes the record id of table (kind names it in ErrNotFound) with the statement
// del, and counts it out of the meta row's counter.
func (s *Postgres) deleteRow(ctx context.Context, kind, table, del, id string, counter func(*pgMeta) *int64) (err error) {
	defer func() { err = dbError(ctx, err) }()
	if err := ctx.Err(); err != nil {
		return err
	}
	if ValidID(id) != nil {
		return notFound(kind, id)
	}
	return s.write(ctx, func(tx pgx.Tx, m *pgMeta) (bool, error) {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+table+` WHERE id = $1)`, id).Scan(&exists); err != nil {
			return false, err
		}
		if !exists {
			return false, notFound(kind, id)
		}
		if _, err := tx.Exec(ctx, del, id); err != nil {
			return false, err
		}
		*counter(m)--
		return true, nil
	})
}

// listLimit is the LIMIT that fetches one row past limit (to tell whether more follow).
func listLimit(limit int) (int64, error) {
	if limit < 1 {
		return 0, fmt.Errorf("%w: list limit %d, want at least 1", ErrInvalid, limit)
	}
	if int64(limit) >= math.MaxInt64-1 {
		return math.MaxInt64, nil
	}
	return int64(limit) + 1, nil
}

// ListImages implements Store.
func (s *Postgres) ListImages(ctx context.Context, after string, limit int) ([]*Image, string, error) {
	return listPage(ctx, s, `SELECT `+imageColumns+` FROM uniter_images i WHERE i.id > $1 ORDER BY i.id LIMIT $2`,
		after, limit, func(r pgx.Row) (*Image, error) { return scanImage(r) }, func(im *Image) string { return im.ID })
}

// listPage runs a page query (after, limit+1) and returns up to limit records, with the last
// one's ID as the next cursor when more follow.
func listPage[T any](ctx context.Context, s *Postgres, query, after string, limit int, scan func(pgx.Row) (T, error),
	idOf func(T) string) (_ []T, _ string, err error) {
	defer func() { err = dbError(ctx, err) }()
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	n, err := listLimit(limit)
	if err != nil {
		return nil, "", err
	}
	q, err := s.pool.Query(ctx, query, after, n)
	if err != nil {
		return nil, "", err
	}
	out, err := pgx.CollectRows(q, func(row pgx.CollectableRow) (T, error) { return scan(row) })
	if err != nil {
		return nil, "", err
	}
	if len(out) > limit {
		return out[:limit], idOf(out[limit-1]), nil
	}
	return out, "", nil
}

// ImageIndex implements Store.
func (s *Postgres) ImageIndex(ctx context.Context) (_ []IndexEntry, err error) {
	defer func() { err = dbError(ctx, err) }()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q, err := s.pool.Query(ctx, `SELECT id, label_index FROM uniter_images ORDER BY id`)
	if err != nil {
		return nil, err
	}
	out := []IndexEntry{}
	var id string
	var raw []byte
	_, err = pgx.ForEachRow(q, []any{&id, &raw}, func() error {
		e, err := decodeIndex(id, raw)
		if err == nil {
			out = append(out, e)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PutTexts implements Store.
func (s *Postgres) PutTexts(ctx context.Context, texts []*Text) (_ []PutResult, err error) {
	defer func() { err = dbError(ctx, err) }()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	metas := make([]json.RawMessage, len(texts))
	created := make([]time.Time, len(texts))
	ids := make([]string, len(texts))
	for i, t := range texts {
		if err := validateText(t); err != nil {
			return nil, err
		}
		metas[i], _ = ValidMetadata(t.Metadata)
		if created[i] = t.Created.UTC(); created[i].IsZero() {
			created[i] = time.Now().UTC()
		}
		ids[i] = t.ID
	}
	var results []PutResult
	err = s.write(ctx, func(tx pgx.Tx, m *pgMeta) (bool, error) {
		results = make([]PutResult, len(texts))
		if len(texts) == 0 {
			return false, nil
		}
		type content struct {
			text string
			meta json.RawMessage
		}
		stored := map[string]content{}
		q, err := tx.Query(ctx, `SELECT id, content, metadata FROM uniter_texts WHERE id = ANY($1)`, ids)
		if err != nil {
			return false, err
		}
		var id, text string
		var meta []byte
		if _, err := pgx.ForEachRow(q, []any{&id, &text, &meta}, func() error {
			norm, err := normJSON(meta)
			stored[id] = content{text, norm}
			return err
		}); err != nil {
			return false, err
		}
		var batch pgx.Batch
		seen := map[string]int{}
		added := 0
		for i, t := range texts {
			same := func(c content) bool { return c.text == t.Text && bytes.Equal(c.meta, metas[i]) }
			if j, ok := seen[t.ID]; ok {
				if !same(content{texts[j].Text, metas[j]}) {
					return false, fmt.Errorf("%w: text id %q appears twice with different content", ErrConflict, t.ID)
				}
				results[i] = PutResult{ID: t.ID, Duplicate: true}
				continue
			}
			seen[t.ID] = i
			if c, ok := stored[t.ID]; ok {
				if !same(c) {
					return false, fmt.Errorf("%w: text id %q is taken by another text", ErrConflict, t.ID)
				}
				results[i] = PutResult{ID: t.ID, Duplicate: true}
				continue
			}
			batch.Queue(`INSERT INTO uniter_texts (id, content, metadata, created) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
				t.ID, t.Text, jsonArg(metas[i]), created[i])
			results[i] = PutResult{ID: t.ID}
			added++
		}
		if added == 0 {
			return false, nil
		}
		if err := sendInserts(ctx, tx, &batch, slices.Repeat([]bool{true}, added)); err != nil {
			return false, err
		}
		m.texts += int64(added)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// scanText reads a text's id, content, metadata and created, then extra.
func scanText(row pgx.Row, extra ...any) (*Text, error) {
	var t Text
	var meta []byte
	if err := row.Scan(append([]any{&t.ID, &t.Text, &meta, &t.Created}, extra...)...); err != nil {
		return nil, err
	}
	t.Created = t.Created.UTC()
	var err error
	if t.Metadata, err = normJSON(meta); err != nil {
		return nil, fmt.Errorf("text %q: %w", t.ID, err)
	}
	return &t, nil
}

// Text implements Store.
func (s *Postgres) Text(ctx context.Context, id string) (_ *Text, err error) {
	defer func() { err = dbError(ctx, err) }()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ValidID(id) != nil {
		return nil, notFound("text", id)
	}
	t, err := scanText(s.pool.QueryRow(ctx, `SELECT id, content, metadata, created FROM uniter_texts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("text", id)
	}
	return t, err
}

// DeleteText implements Store.
func (s *Postgres) DeleteText(ctx context.Context, id string) error {
	return s.deleteRow(ctx, "text", "uniter_texts", deleteTextSQL, id, func(m *pgMeta) *int64 { return &m.texts })
}

// ListTexts implements Store.
func (s *Postgres) ListTexts(ctx context.Context, after string, limit int) ([]*Text, string, error) {
	return listPage(ctx, s, `SELECT id, content, metadata, created FROM uniter_texts WHERE id > $1 ORDER BY id LIMIT $2`,
		after, limit, func(r pgx.Row) (*Text, error) { return scanText(r) }, func(t *Text) string { return t.ID })
}

// AllTexts implements Store.
func (s *Postgres) AllTexts(ctx context.Context) ([]*Text, error) {
	out, _, err := s.ListTexts(ctx, "", math.MaxInt)
	return out, err
}

// Stats implements Store.
func (s *Postgres) Stats(ctx context.Context) (_ Stats, err error) {
	defer func() { err = dbError(ctx, err) }()
	var st Stats
	var images, texts, gen int64
	err = s.pool.QueryRow(ctx, `SELECT schema, images, texts, feature_dim, generation FROM uniter_meta`).
		Scan(&st.Schema, &images, &texts, &st.FeatureDim, &gen)
	st.Images, st.Texts, st.Generation = int(images), int(texts), uint64(gen)
	return st, err
}

// Check compares the meta row's counts with the tables and each image's thumbnail flag with
// the thumbnails table (what bbolt's Check is to its pages: a test's consistency check).
func (s *Postgres) Check() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var images, texts, countedImages, countedTexts, badThumbs int64
	err := s.pool.QueryRow(ctx, `SELECT m.images, m.texts,
		(SELECT count(*) FROM uniter_images), (SELECT count(*) FROM uniter_texts),
		(SELECT count(*) FROM uniter_images i WHERE i.has_thumbnail <> EXISTS (SELECT 1 FROM uniter_thumbnails t WHERE t.image_id = i.id))
		FROM uniter_meta m`).Scan(&images, &texts, &countedImages, &countedTexts, &badThumbs)
	if err != nil {
		return err
	}
	var errs []error
	if images != countedImages || texts != countedTexts {
		errs = append(errs, fmt.Errorf("meta counts %d images, %d texts; the tables hold %d and %d", images, texts, countedImages, countedTexts))
	}
	if badThumbs > 0 {
		errs = append(errs, fmt.Errorf("%d images whose thumbnail flag is wrong", badThumbs))
	}
	// Every row's postings are the ones its list of terms names, and no posting outlives its row.
	for _, c := range [][3]string{{"image", "uniter_images", "uniter_image_terms p JOIN uniter_images r ON r.seq = p.image"},
		{"text", "uniter_texts", "uniter_text_terms p JOIN uniter_texts r ON r.seq = p.text"}} {
		var listed, postings, matching int64
		err := s.pool.QueryRow(ctx, `SELECT (SELECT coalesce(sum(cardinality(terms)), 0) FROM `+c[1]+`),
			(SELECT count(*) FROM `+strings.Fields(c[2])[0]+`), (SELECT count(*) FROM `+c[2]+` WHERE p.term = ANY(r.terms))`).
			Scan(&listed, &postings, &matching)
		if err != nil {
			return err
		}
		if listed != postings || postings != matching {
			errs = append(errs, fmt.Errorf("%s postings: rows list %d terms; %d postings, %d of them of a row that lists them", c[0], listed, postings, matching))
		}
	}
	return errors.Join(errs...)
}

// PoolStats describe the connection pool of a server-backed store, for metrics.
type PoolStats struct {
	Max, Total, Acquired, Idle, Constructing int
	Acquires                                 int64         // connections handed out so far
	WaitedAcquires                           int64         // ... of which had to wait for a connection
	CanceledAcquires                         int64         // waits given up (the caller's context ended)
	AcquireWait                              time.Duration // total time spent waiting for connections
	NewConnections                           int64         // connections opened so far
}

// PoolStats implements the metrics' view of the pool.
func (s *Postgres) PoolStats() PoolStats {
	st := s.pool.Stat()
	return PoolStats{Max: int(st.MaxConns()), Total: int(st.TotalConns()), Acquired: int(st.AcquiredConns()), Idle: int(st.IdleConns()),
		Constructing: int(st.ConstructingConns()), Acquires: st.AcquireCount(), WaitedAcquires: st.EmptyAcquireCount(),
		CanceledAcquires: st.CanceledAcquireCount(), AcquireWait: st.AcquireDuration(), NewConnections: st.NewConnsCount()}
}
