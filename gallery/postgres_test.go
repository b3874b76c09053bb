package gallery

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/uniter-serve/uniter/internal/pgtest"
)

// postgresBackend runs the contract (contract_test.go) on PostgreSQL: a real server that
// pgtest starts (Debian's postgresql), a fresh database each.
func postgresBackend() backend {
	return backend{
		schema: PostgresSchemaVersion,
		create: func(t *testing.T) string { return pgtest.Start(t) },
		open:   func(dsn string, opts Options) (Store, error) { return OpenPostgres(ctx, dsn, opts) },
		openAs: func(dsn string, current int, step func() error) (Store, error) {
			mig := append(slices.Clone(pgMigrations), pgMigration{from: current - 1, apply: func(ctx context.Context, tx pgx.Tx, _ *Postgres) error {
				if _, err := tx.Exec(ctx, `CREATE TABLE uniter_migrated (note text)`); err != nil {
					return err
				}
				if step == nil {
					return nil
				}
				return step()
			}})
			return openPostgresWith(ctx, dsn, Options{}, current, mig)
		},
		marked: func(t *testing.T, dsn string) bool {
			var marked bool
			sqlRow(t, dsn, `SELECT to_regclass('uniter_migrated') IS NOT NULL`, &marked)
			return marked
		},
	}
}

func TestPostgresContract(t *testing.T) { runStoreContract(t, postgresBackend()) }

// sqlRow runs one query on its own connection and scans its row.
func sqlRow(t *testing.T, dsn, sql string, dst ...any) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql).Scan(dst...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func openPG(t *testing.T, dsn string) *Postgres {
	t.Helper()
	s, err := OpenPostgres(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestPostgresReplicas: two handles on one database, as two replicas of the server, see each
// other's writes at once, and identical images added through both at once are stored once.
func TestPostgresReplicas(t *testing.T) {
	dsn := pgtest.Start(t)
	a, b := openPG(t, dsn), openPG(t, dsn)
	mustPut(t, a, randomImage("x", 1, 3, 8))
	if img, err := b.Image(ctx, "x", PartRegions|PartThumbnail); err != nil {
		t.Fatalf("b reading a's image: %v", err)
	} else {
		wantStored(t, img, randomImage("x", 1, 3, 8))
	}
	if _, err := b.PutTexts(ctx, []*Text{{ID: "t", Text: "from b"}}); err != nil {
		t.Fatal(err)
	}
	if txt, err := a.Text(ctx, "t"); err != nil || txt.Text != "from b" {
		t.Fatalf("a reading b's text: %v %v", txt, err)
	}
	sa, _ := a.Stats(ctx)
	sb, _ := b.Stats(ctx)
	if sa != sb || sa.Images != 1 || sa.Texts != 1 || sa.Generation != 2 {
		t.Errorf("stats: a %+v, b %+v", sa, sb)
	}
	if err := b.DeleteImage(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Image(ctx, "x", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("a reading b's deleted image: %v", err)
	}
	// 16 writers, half on each replica, add the same bytes under their own IDs, and each a
	// distinct image; and all delete one text.
	var wg sync.WaitGroup
	res := make([]PutResult, 16)
	deleted := make([]error, 16)
	for i := range 16 {
		s := []*Postgres{a, b}[i%2]
		wg.Go(func() {
			r, err := s.PutImages(ctx, []*Image{randomImage(fmt.Sprintf("same-%02d", i), 77, 2, 8), randomImage(fmt.Sprintf("own-%02d", i), uint64(100+i), 2, 8)})
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
				return
			}
			res[i] = r[0]
			if r[1].Duplicate {
				t.Errorf("writer %d: its own image was a duplicate: %+v", i, r[1])
			}
			deleted[i] = s.DeleteText(ctx, "t")
		})
	}
	wg.Wait()
	first, ids, deletes := 0, map[string]bool{}, 0
	for i, r := range res {
		ids[r.ID] = true
		if !r.Duplicate {
			first++
		}
		switch {
		case deleted[i] == nil:
			deletes++
		case !errors.Is(deleted[i], ErrNotFound):
			t.Errorf("writer %d: delete: %v", i, deleted[i])
		}
	}
	if first != 1 || len(ids) != 1 || deletes != 1 {
		t.Errorf("same bytes through two replicas: %d stored, ids %v; text deleted %d times", first, ids, deletes)
	}
	for _, s := range []*Postgres{a, b} {
		if st, _ := s.Stats(ctx); st.Images != 17 || st.Texts != 0 {
			t.Errorf("stats: %+v, want 17 images and no text", st)
		}
		checkStore(t, s)
	}
}

// TestPostgresConcurrentOpen: replicas that start together on an empty database take turns
// under the advisory lock; one creates the tables, none fails.
func TestPostgresConcurrentOpen(t *testing.T) {
	dsn := pgtest.Start(t)
	var wg sync.WaitGroup
	stores := make([]*Postgres, 8)
	for i := range stores {
		wg.Go(func() {
			s, err := OpenPostgres(ctx, dsn, Options{FeatureDim: 8})
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
				return
			}
			stores[i] = s
		})
	}
	wg.Wait()
	for i, s := range stores {
		if s == nil {
			continue
		}
		if _, err := s.PutImages(ctx, []*Image{randomImage(fmt.Sprintf("r%d", i), uint64(i), 1, 8)}); err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
		_ = s.Close()
	}
	var rows, schema, images int
	sqlRow(t, dsn, `SELECT count(*), min(schema), min(images) FROM uniter_meta`, &rows, &schema, &images)
	if rows != 1 || schema != PostgresSchemaVersion || images != 8 {
		t.Errorf("meta: %d rows, schema %d, %d images", rows, schema, images)
	}
}

// TestPostgresSchema checks the tables: the unique index on sha256 refuses a second row with
// one hash whoever writes it, thumbnails go with their image, IDs sort byte-wise.
func TestPostgresSchema(t *testing.T) {
	dsn := pgtest.Start(t)
	s := openPG(t, dsn)
	mustPut(t, s, randomImage("a", 1, 2, 8))
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `INSERT INTO uniter_images (id, sha256, source, width, height, format, num_regions, has_thumbnail, created, regions, label_index)
		SELECT 'b', sha256, source, width, height, format, num_regions, false, created, regions, label_index FROM uniter_images WHERE id = 'a'`)
	if err == nil || !strings.Contains(err.Error(), "uniter_images_sha256") {
		t.Errorf("a second row with one hash: got %v, want the unique index's violation", err)
	}
	var collation string
	if err := conn.QueryRow(ctx, `SELECT collation_name FROM information_schema.columns WHERE table_name = 'uniter_images' AND column_name = 'id'`).Scan(&collation); err != nil || collation != "C" {
		t.Errorf("id collation: %q %v", collation, err)
	}
	var thumbs int
	if err := s.DeleteImage(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM uniter_thumbnails`).Scan(&thumbs); err != nil || thumbs != 0 {
		t.Errorf("thumbnails after delete: %d %v", thumbs, err)
	}
}

// TestPostgresInsertRace: a row with the same hash that another transaction inserts behind the
// meta lock's back (another program, an older build) is caught by the unique index: the put
// waits for it, runs again and reports a duplicate of it.
func TestPostgresInsertRace(t *testing.T) {
	dsn := pgtest.Start(t)
	s := openPG(t, dsn)
	mustPut(t, s, randomImage("seed", 1, 2, 8))
	img := randomImage("mine", 2, 2, 8)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO uniter_images (id, sha256, source, width, height, format, num_regions, has_thumbnail, created, regions, label_index)
		SELECT 'theirs', decode($1, 'hex'), source, width, height, format, num_regions, false, created, regions, label_index FROM uniter_images WHERE id = 'seed'`,
		img.SHA256); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var res []PutResult
	var putErr error
	go func() {
		defer close(done)
		res, putErr = s.PutImages(ctx, []*Image{img})
	}()
	// The put waits on the uncommitted row's index entry.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		sqlRow(t, dsn, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO uniter_images%'`, &waiting)
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the put never waited on the other transaction's row")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	if putErr != nil || res[0] != (PutResult{ID: "theirs", Duplicate: true}) {
		t.Fatalf("put: got %v %v, want a duplicate of theirs", res, putErr)
	}
}

// TestPostgresRefusedValues: what PostgreSQL cannot hold (a NUL character in a text or in
// metadata, a cursor that is not UTF-8) is ErrInvalid, and the call writes nothing.
func TestPostgresRefusedValues(t *testing.T) {
	s := openPG(t, pgtest.Start(t))
	if _, err := s.PutTexts(ctx, []*Text{{ID: "ok", Text: "fine"}, {ID: "nul", Text: "a\x00b"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("NUL in a text: got %v, want ErrInvalid", err)
	}
	img := randomImage("m", 1, 2, 8)
	img.Metadata = []byte(`{"k": "a\u0000b"}`)
	if _, err := s.PutImages(ctx, []*Image{randomImage("ok", 2, 2, 8), img}); !errors.Is(err, ErrInvalid) {
		t.Errorf("NUL in metadata: got %v, want ErrInvalid", err)
	}
	if _, _, err := s.ListTexts(ctx, "\xff", 5); !errors.Is(err, ErrInvalid) {
		t.Errorf("a cursor that is not UTF-8: got %v, want ErrInvalid", err)
	}
	if _, err := s.Image(ctx, "a\x00", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("an impossible id: got %v, want ErrNotFound", err)
	}
	if st, _ := s.Stats(ctx); st.Images != 0 || st.Texts != 0 || st.Generation != 0 {
		t.Errorf("refused calls wrote: %+v", st)
	}
}

// TestPostgresDSNSecrets: no error or description shows the DSN's password.
func TestPostgresDSNSecrets(t *testing.T) {
	dsn := pgtest.Start(t)
	const secret = "hunter2-Secret"
	for _, bad := range []string{
		"postgres://u:" + secret + "@[::1/db",         // unparseable URL
		"host=/x password=" + secret + " port=notnum", // unparseable key=value
		"postgres://u:" + secret + "@/db?host=/nonexistent-socket-dir&connect_timeout=2",
		dsn + " password=" + secret + " dbname=" + secret, // the server names the database: scrubbed
	} {
		s, err := OpenPostgres(ctx, bad, Options{})
		if err == nil {
			_ = s.Close()
			t.Errorf("%q: no error", bad)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(fmt.Sprintf("%+v", err), secret) {
			t.Errorf("the password shows in %q", err)
		}
		t.Logf("%v", err)
	}
	if _, err := OpenPostgres(ctx, "postgres://u:"+secret+"@/db?host=/nonexistent-socket-dir", Options{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("no server: got %v, want ErrUnavailable", err)
	}
	s, err := OpenPostgres(ctx, dsn+" password="+secret, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if strings.Contains(s.Target(), secret) || !strings.Contains(s.Target(), "postgres@") {
		t.Errorf("target: %q", s.Target())
	}
	for _, d := range []string{"postgres://me:" + secret + "@db.example:6543/gallery?sslmode=require", "host=h user=me password=" + secret + " dbname=g"} {
		if r := RedactDSN(d); strings.Contains(r, secret) || !strings.Contains(r, "me@") {
			t.Errorf("RedactDSN(%q) = %q", d, r)
		}
	}
	if r := RedactDSN("postgres://u:" + secret + "@[::1/db"); r != "(unparseable DSN)" {
		t.Errorf("RedactDSN of junk: %q", r)
	}
}

// TestPostgresLostConnections: connections the server ends (a restart, a failover) are
// ErrUnavailable for the calls that were using them, and the pool reconnects.
func TestPostgresLostConnections(t *testing.T) {
	dsn := pgtest.Start(t)
	s := openPG(t, dsn)
	mustPut(t, s, randomImage("a", 1, 2, 8))
	var ended int
	sqlRow(t, dsn, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`, &ended)
	if ended == 0 {
		t.Fatal("no connection to end")
	}
	for range 3 {
		if _, err := s.Stats(ctx); err != nil && !errors.Is(err, ErrUnavailable) {
			t.Errorf("on an ended connection: got %v, want ErrUnavailable", err)
		}
	}
	if st, err := s.Stats(ctx); err != nil || st.Images != 1 {
		t.Errorf("after reconnecting: %+v %v", st, err)
	}
}

// TestPostgresErrorKinds: the database's errors sorted into the package's.
func TestPostgresErrorKinds(t *testing.T) {
	for _, c := range []struct {
		err  error
		want error
	}{
		{&pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, ErrUnavailable},
		{&pgconn.PgError{Code: "08006"}, ErrUnavailable},
		{&pgconn.PgError{Code: "53300"}, ErrUnavailable},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), ErrUnavailable},
		{&pgconn.PgError{Code: "22021", Message: "invalid byte sequence"}, ErrInvalid},
		{&pgconn.PgError{Code: "42P01"}, nil},
		{context.Canceled, nil},
		{fmt.Errorf("%w: x", ErrNotFound), ErrNotFound},
	} {
		got := dbError(ctx, c.err)
		if c.want != nil && !errors.Is(got, c.want) || c.want == nil && got != c.err {
			t.Errorf("%v: got %v, want %v", c.err, got, c.want)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := dbError(cancelled, io.EOF); err != io.EOF {
		t.Errorf("a cancelled call's error: got %v", err)
	}
}

// TestPostgresClaims: an image claimed by one indexer is refused to another until the claim is
// released or its lease ends (a killed indexer); the owner renews its own claim.
func TestPostgresClaims(t *testing.T) {
	dsn := pgtest.Start(t)
	a, b := openPG(t, dsn), openPG(t, dsn) // two machines' indexers
	sum := strings.Repeat("ab", 32)
	claim := func(s *Postgres, owner string, lease time.Duration) bool {
		t.Helper()
		ok, err := s.Claim(ctx, sum, owner, lease)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !claim(a, "a", time.Minute) {
		t.Fatal("the first claim was refused")
	}
	if claim(b, "b", time.Minute) {
		t.Fatal("a second indexer took a running claim")
	}
	if !claim(a, "a", time.Minute) {
		t.Fatal("the owner could not renew its claim")
	}
	if err := b.Release(ctx, "b", []string{sum}); err != nil {
		t.Fatal(err)
	}
	if claim(b, "b", time.Minute) {
		t.Fatal("another owner's release ended a's claim")
	}
	if err := a.Release(ctx, "a", []string{sum}); err != nil {
		t.Fatal(err)
	}
	if !claim(b, "b", time.Millisecond) {
		t.Fatal("a released image could not be claimed")
	}
	time.Sleep(20 * time.Millisecond) // b "dies": its lease ends
	if !claim(a, "a", time.Minute) {
		t.Fatal("a claim whose lease ended was not taken over")
	}
	if _, err := a.Claim(ctx, "not-hex", "a", time.Minute); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a malformed key: %v, want ErrInvalid", err)
	}
	var _ Claimer = a
}

// TestPostgresTermIndexMigration opens a schema-1 database holding images (written as the
// schema-1 build wrote them) with this build: the migration lists each image's terms, writes
// their postings, and ImagesByTerms finds them with their weights, except the terms of the
// model's unnamed labels (background class, "no attribute"), which get none.
func TestPostgresTermIndexMigration(t *testing.T) {
	dsn := pgtest.Start(t)
	old, err := openPostgresWith(ctx, dsn, Options{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	var images []*Image
	for i := range 20 {
		img := randomImage(fmt.Sprintf("old-%02d", i), uint64(i), 1+i%5, 8)
		images = append(images, img)
		digest, _ := hex.DecodeString(img.SHA256)
		if _, err := old.pool.Exec(ctx, `INSERT INTO uniter_images (id, sha256, source, width, height, format, num_regions,
			has_thumbnail, metadata, created, regions, label_index) VALUES ($1, $2, 'test', 1, 1, 'png', $3, false, NULL, now(), $4, $5)`,
			img.ID, digest, img.Regions.Len(), encodeRegions(img.Regions), encodeIndex(img.Regions.Len(), Summarize(img.Regions))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := old.pool.Exec(ctx, `UPDATE uniter_meta SET images = 20, feature_dim = 8`); err != nil {
		t.Fatal(err)
	}
	_ = old.Close()

	unnamed := Unnamed{Class: 0, Attr: 0}
	s, err := OpenPostgres(ctx, dsn, Options{FeatureDim: 8, Unnamed: &unnamed})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st, err := s.Stats(ctx); err != nil || st.Schema != PostgresSchemaVersion || st.Images != 20 {
		t.Fatalf("after migration: %+v, %v", st, err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	// Every term of every image is found, with the image's support as its gain's weight;
	// those of unnamed labels are not.
	const eps = 1e-3
	leftOut := 0
	for _, img := range images {
		summary := Summarize(img.Regions)
		for _, wt := range summary.Terms(img.Regions.Len(), NothingUnnamed) {
			got, err := s.ImagesByTerms(ctx, []int64{wt.Term.Code()}, eps, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if wt.Term.Class == unnamed.Class || wt.Term.Attr == unnamed.Attr {
				if len(got) > 0 {
					t.Errorf("term %v of an unnamed label has postings: %v", wt.Term, got)
				}
				leftOut++
				continue
			}
			found := false
			for _, c := range got {
				if c.ID == img.ID {
					found = true
					if want := math.Log((float64(float32(wt.Weight)) + eps) / eps); math.Abs(c.Gain-want) > 1e-9 {
						t.Errorf("%s term %v: gain %v, want %v", img.ID, wt.Term, c.Gain, want)
					}
				}
			}
			if !found {
				t.Errorf("%s: term %v not found", img.ID, wt.Term)
			}
		}
	}
	if leftOut == 0 {
		t.Fatal("no image showed an unnamed label: nothing was checked")
	}
	// New images get postings as they are put, none for unnamed labels (class 0: code >> 24
	// is 1; attribute 0: bits 4… are 1); deleting one takes its postings.
	mustPut(t, s, randomImage("new", 99, 3, 8))
	var all, ofUnnamed int
	if err := s.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE term >> 24 = 1 OR (term >> 4) & 1048575 = 1)
		FROM uniter_image_terms`).Scan(&all, &ofUnnamed); err != nil || all == 0 || ofUnnamed != 0 {
		t.Fatalf("postings: %d, %d of unnamed labels (%v)", all, ofUnnamed, err)
	}
	if err := s.DeleteImage(ctx, "old-03"); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}
