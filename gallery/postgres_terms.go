package gallery

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
)

// The inverted index of the first stage (schema 2). uniter_image_terms holds, for each term
// an image shows (LabelSummary.Terms), its support; uniter_text_terms holds the terms of each
// text's positive mentions as its caller (the search service, which owns the lexicon) read
// them. Both are keyed by (term, row number), so that all images or texts with one term are
// one range of the primary key, read without touching the rows themselves. A row keeps the
// list of its terms (uniter_images.terms, uniter_texts.terms), so that deleting it deletes
// exactly its postings.
const termIndexSchema = `
ALTER TABLE uniter_images ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE uniter_images ADD COLUMN terms bigint[] NOT NULL DEFAULT '{}';
CREATE UNIQUE INDEX uniter_images_seq ON uniter_images (seq);
CREATE TABLE uniter_image_terms (
	term   bigint NOT NULL,
	image  bigint NOT NULL,
	weight real NOT NULL,
	PRIMARY KEY (term, image) INCLUDE (weight)
);
ALTER TABLE uniter_texts ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE uniter_texts ADD COLUMN terms bigint[];
ALTER TABLE uniter_texts ADD COLUMN floor double precision;
CREATE UNIQUE INDEX uniter_texts_seq ON uniter_texts (seq);
-- Texts not read yet under the current lexicon, and the termed ones by their floor.
CREATE INDEX uniter_texts_pending ON uniter_texts (seq) WHERE terms IS NULL;
CREATE INDEX uniter_texts_floor ON uniter_texts (floor DESC, id) WHERE terms IS NOT NULL;
CREATE TABLE uniter_text_terms (
	term  bigint NOT NULL,
	text  bigint NOT NULL,
	mult  integer NOT NULL,
	floor double precision NOT NULL,
	PRIMARY KEY (term, text) INCLUDE (mult, floor)
);
ALTER TABLE uniter_meta ADD COLUMN text_terms_key text NOT NULL DEFAULT '';
`

// addTermIndex migrates schema 1 to 2: the term tables, and the postings of every stored
// image computed from its label summary (texts are read by the search service later).
func addTermIndex(ctx context.Context, tx pgx.Tx, s *Postgres) error {
	if _, err := tx.Exec(ctx, termIndexSchema); err != nil {
		return err
	}
	q, err := tx.Query(ctx, `SELECT id, seq, label_index FROM uniter_images`)
	if err != nil {
		return err
	}
	type posting struct {
		seq   int64
		terms []WeightedTerm
	}
	var all []posting
	var id string
	var seq int64
	var raw []byte
	if _, err := pgx.ForEachRow(q, []any{&id, &seq, &raw}, func() error {
		e, err := decodeIndex(id, raw)
		if err == nil {
			all = append(all, posting{seq, e.Labels.Terms(e.Regions, s.unnamed)})
		}
		return err
	}); err != nil {
		return err
	}
	for _, p := range all {
		codes := termCodes(p.terms)
		if _, err := tx.Exec(ctx, `UPDATE uniter_images SET terms = $1 WHERE seq = $2`, codes, p.seq); err != nil {
			return err
		}
	}
	i, j := 0, 0
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"uniter_image_terms"}, []string{"term", "image", "weight"},
		pgx.CopyFromFunc(func() ([]any, error) {
			for i < len(all) && j == len(all[i].terms) {
				i, j = i+1, 0
			}
			if i == len(all) {
				return nil, nil
			}
			wt := all[i].terms[j]
			j++
			return []any{wt.Term.Code(), all[i].seq, float32(wt.Weight)}, nil
		}))
	return err
}

func termCodes(terms []WeightedTerm) []int64 {
	codes := make([]int64, len(terms))
	for i, wt := range terms {
		codes[i] = wt.Term.Code()
	}
	return codes
}

// queueImageTerms adds the postings of an image just queued for insertion to batch.
func queueImageTerms(batch *pgx.Batch, id string, terms []WeightedTerm) {
	weights := make([]float32, len(terms))
	for i, wt := range terms {
		weights[i] = float32(wt.Weight)
	}
	batch.Queue(`INSERT INTO uniter_image_terms (term, image, weight)
		SELECT t.term, i.seq, t.weight FROM unnest($2::bigint[], $3::real[]) AS t(term, weight), uniter_images i WHERE i.id = $1`,
		id, termCodes(terms), weights)
}

// Deleting a row deletes its postings, found through the row's own list of terms.
const (
	deleteImageSQL = `WITH d AS (DELETE FROM uniter_images WHERE id = $1 RETURNING seq, terms)
		DELETE FROM uniter_image_terms p USING d WHERE p.term = ANY(d.terms) AND p.image = d.seq`
	deleteTextSQL = `WITH d AS (DELETE FROM uniter_texts WHERE id = $1 RETURNING seq, terms)
		DELETE FROM uniter_text_terms p USING d WHERE p.term = ANY(d.terms) AND p.text = d.seq`
)

// TermIndex is a store that keeps the first stage's inverted index itself (PostgreSQL), so
// that two-stage search proposes candidates without reading every image's or text's labels.
// Both queries rank by a gain, Σ mult · ln((w + ε) / ε) over the query's terms that an item
// has (w its weight), plus, for texts, the text's floor; the caller adds what is common to all
// items and checks the proposals against the exact first-stage score.
type TermIndex interface {
	// ImagesByTerms returns the n images of largest gain for terms (term codes; one that
	// appears twice counts twice), by gain then ID; images without any of the terms are not
	// listed.
	ImagesByTerms(ctx context.Context, terms []int64, eps float64, n int) ([]ImageCandidate, error)
	// ImagesByID returns the first n images by ID (the order of images that tie on gain).
	ImagesByID(ctx context.Context, n int) ([]ImageCandidate, error)
	// TextsByTerms returns the n texts of largest floor + gain for an image's terms with
	// their weights, by that bound then ID; texts without any of the terms are not listed.
	TextsByTerms(ctx context.Context, terms []int64, weights []float64, eps float64, n int) ([]TextCandidate, error)
	// TextsByFloor returns the first n texts by floor (largest first), then ID.
	TextsByFloor(ctx context.Context, n int) ([]TextCandidate, error)
	// IndexTexts brings the text postings up to date for the lexicon named key: texts not
	// read under key are read by read, which gives the terms of their positive mentions (a
	// code per mention, repeated when several share it) and their floor. A new key drops
	// every text's postings first. It returns the number of texts read.
	IndexTexts(ctx context.Context, key string, read func(text string) (terms []int64, floor float64)) (int, error)
}

// ImageCandidate is an image a TermIndex proposes: its search entry and its gain.
type ImageCandidate struct {
	IndexEntry
	Gain float64
}

// TextCandidate is a text a TermIndex proposes, with its floor + gain.
type TextCandidate struct {
	*Text
	Bound float64
}

var _ TermIndex = (*Postgres)(nil)

// ImagesByTerms implements TermIndex.
func (s *Postgres) ImagesByTerms(ctx context.Context, terms []int64, eps float64, n int) (_ []ImageCandidate, err error) {
	defer func() { err = dbError(ctx, err) }()
	codes, mult := countTerms(terms)
	q, err := s.pool.Query(ctx, `WITH g AS (
			SELECT p.image, sum(q.mult * ln((p.weight + $3::float8) / $3::float8)) AS gain
			FROM unnest($1::bigint[], $2::integer[]) AS q(term, mult) JOIN uniter_image_terms p ON p.term = q.term
			GROUP BY p.image ORDER BY gain DESC, p.image LIMIT $4)
		SELECT i.id, i.label_index, g.gain FROM g JOIN uniter_images i ON i.seq = g.image ORDER BY g.gain DESC, i.id`,
		codes, mult, eps, n+tieMargin)
	if err != nil {
		return nil, err
	}
	out, err := scanImageCandidates(q)
	if err != nil {
		return nil, err
	}
	// The LIMIT cut by gain, ties by insertion order; they are ordered by ID here, and the
	// margin keeps those that rank within n unless more than tieMargin tie at the cut.
	return out[:min(n, len(out))], nil
}

// tieMargin is how many rows past n a ranked query reads, so that items tied on the n-th
// score are cut by ID rather than by the database's order.
const tieMargin = 64

// ImagesByID implements TermIndex.
func (s *Postgres) ImagesByID(ctx context.Context, n int) (_ []ImageCandidate, err error) {
	defer func() { err = dbError(ctx, err) }()
	q, err := s.pool.Query(ctx, `SELECT id, label_index, 0::float8 FROM uniter_images ORDER BY id LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	return scanImageCandidates(q)
}

func scanImageCandidates(q pgx.Rows) ([]ImageCandidate, error) {
	var out []ImageCandidate
	var id string
	var raw []byte
	var gain float64
	_, err := pgx.ForEachRow(q, []any{&id, &raw, &gain}, func() error {
		e, err := decodeIndex(id, raw)
		if err == nil {
			out = append(out, ImageCandidate{IndexEntry: e, Gain: gain})
		}
		return err
	})
	return out, err
}

// TextsByTerms implements TermIndex.
func (s *Postgres) TextsByTerms(ctx context.Context, terms []int64, weights []float64, eps float64, n int) (_ []TextCandidate, err error) {
	defer func() { err = dbError(ctx, err) }()
	if len(terms) != len(weights) {
		return nil, fmt.Errorf("%w: %d terms, %d weights", ErrInvalid, len(terms), len(weights))
	}
	q, err := s.pool.Query(ctx, `WITH g AS (
			SELECT p.text, max(p.floor) + sum(p.mult * ln((q.weight + $3::float8) / $3::float8)) AS bound
			FROM unnest($1::bigint[], $2::float8[]) AS q(term, weight) JOIN uniter_text_terms p ON p.term = q.term
			GROUP BY p.text ORDER BY bound DESC, p.text LIMIT $4)
		SELECT t.id, t.content, t.metadata, t.created, g.bound FROM g JOIN uniter_texts t ON t.seq = g.text ORDER BY g.bound DESC, t.id`,
		terms, weights, eps, n+tieMargin)
	if err != nil {
		return nil, err
	}
	out, err := scanTextCandidates(q)
	if err != nil {
		return nil, err
	}
	return out[:min(n, len(out))], nil
}

// TextsByFloor implements TermIndex.
func (s *Postgres) TextsByFloor(ctx context.Context, n int) (_ []TextCandidate, err error) {
	defer func() { err = dbError(ctx, err) }()
	q, err := s.pool.Query(ctx, `SELECT id, content, metadata, created, floor FROM uniter_texts
		WHERE terms IS NOT NULL ORDER BY floor DESC, id LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	return scanTextCandidates(q)
}

func scanTextCandidates(q pgx.Rows) ([]TextCandidate, error) {
	return pgx.CollectRows(q, func(row pgx.CollectableRow) (TextCandidate, error) {
		var bound float64
		t, err := scanText(row, &bound)
		return TextCandidate{Text: t, Bound: bound}, err
	})
}

// textIndexBatch is how many texts one transaction of IndexTexts reads.
const textIndexBatch = 500

// IndexTexts implements TermIndex. Indexers on several replicas may run at once: each batch
// takes its texts with FOR UPDATE SKIP LOCKED.
func (s *Postgres) IndexTexts(ctx context.Context, key string, read func(string) ([]int64, float64)) (_ int, err error) {
	defer func() { err = dbError(ctx, err) }()
	var current string
	var pending bool
	if err := s.pool.QueryRow(ctx, `SELECT text_terms_key, EXISTS (SELECT 1 FROM uniter_texts WHERE terms IS NULL) FROM uniter_meta`).
		Scan(&current, &pending); err != nil {
		return 0, err
	}
	if current != key {
		// Another lexicon: every text is read again. Under the meta row's lock, so that
		// replicas switching at once switch once.
		err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, `SELECT text_terms_key FROM uniter_meta FOR UPDATE`).Scan(&current); err != nil {
				return err
			}
			if current == key {
				return nil
			}
			for _, sql := range []string{`TRUNCATE uniter_text_terms`, `UPDATE uniter_texts SET terms = NULL, floor = NULL`} {
				if _, err := tx.Exec(ctx, sql); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, `UPDATE uniter_meta SET text_terms_key = $1`, key)
			return err
		})
		if err != nil {
			return 0, err
		}
		pending = true
	}
	total := 0
	for pending {
		n, err := s.indexTextBatch(ctx, key, read)
		if err != nil {
			return total, err
		}
		total += n
		pending = n == textIndexBatch
	}
	return total, nil
}

func (s *Postgres) indexTextBatch(ctx context.Context, key string, read func(string) ([]int64, float64)) (int, error) {
	n := 0
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		n = 0
		var current string
		// A share lock on the meta row: a key switch (FOR UPDATE) waits for this batch.
		if err := tx.QueryRow(ctx, `SELECT text_terms_key FROM uniter_meta FOR SHARE`).Scan(&current); err != nil {
			return err
		}
		if current != key {
			return fmt.Errorf("gallery: the text index moved to another lexicon meanwhile")
		}
		q, err := tx.Query(ctx, `SELECT seq, content FROM uniter_texts WHERE terms IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED`, textIndexBatch)
		if err != nil {
			return err
		}
		type row struct {
			seq     int64
			content string
		}
		var rows []row
		var r row
		if _, err := pgx.ForEachRow(q, []any{&r.seq, &r.content}, func() error {
			rows = append(rows, r)
			return nil
		}); err != nil {
			return err
		}
		var batch pgx.Batch
		for _, r := range rows {
			terms, floor := read(r.content)
			if math.IsNaN(floor) || math.IsInf(floor, 0) {
				return errors.New("gallery: a text's floor is not finite")
			}
			codes, mult := countTerms(terms)
			if codes == nil {
				codes = []int64{} // not NULL: NULL marks a text not read yet
			}
			batch.Queue(`UPDATE uniter_texts SET terms = $2, floor = $3 WHERE seq = $1`, r.seq, codes, floor)
			batch.Queue(`INSERT INTO uniter_text_terms (term, text, mult, floor) SELECT t, $2, m, $4 FROM unnest($1::bigint[], $3::integer[]) AS u(t, m)`,
				codes, r.seq, mult, floor)
		}
		n = len(rows)
		if n == 0 {
			return nil
		}
		return tx.SendBatch(ctx, &batch).Close()
	})
	return n, err
}

// countTerms lists distinct codes with how often each appears.
func countTerms(terms []int64) (codes []int64, mult []int) {
	seen := map[int64]int{}
	for _, t := range terms {
		if i, ok := seen[t]; ok {
			mult[i]++
			continue
		}
		seen[t] = len(codes)
		codes, mult = append(codes, t), append(mult, 1)
	}
	return codes, mult
}
