package retrieval

import (
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/pipeline"
	"github.com/uniter-serve/uniter/textproc"
)

// Mode is how a search scores the gallery.
type Mode string

const (
	// Exact scores every stored item with the cross-encoder.
	Exact Mode = "exact"
	// TwoStage scores the first stage's candidates only.
	TwoStage Mode = "two_stage"
)

// Query is a search. Text searches images; Image or ImageID searches texts.
type Query struct {
	Text       string
	Image      []byte // an image not in the gallery (detected, not stored)
	ImageID    string // a stored image
	Limit      int    // hits returned; 0 means 10
	Offset     int    // hits skipped (paging); the ranking is deterministic
	Mode       Mode   // "" means Exact
	Candidates int    // first-stage candidates (TwoStage); 0 means the configured default
	Evidence   bool   // attach each hit's word-region alignment
	EvidenceBy string // how evidence aligns words and regions (EvidenceByAttention, EvidenceByOT); "" means pipeline.ResolveAlignBy's default
}

// The word-region alignments evidence can come from (pipeline.ResolveAlignBy decides the default).
const (
	EvidenceByAttention = pipeline.AlignByAttention
	EvidenceByOT        = pipeline.AlignByOT
)

// Hit is one ranked item.
type Hit struct {
	ID       string
	Score    float32 // P(match)
	Logit    float32 // the raw match logit the ranking uses
	Text     string  // text hits: the text
	Metadata json.RawMessage
	Evidence *Evidence
}

// Evidence is a hit's word-region alignment: for each content word of the text, the regions
// (of the hit image, or of the query image for text hits) it is aligned to, by By.
type Evidence struct {
	By         string // EvidenceByAttention or EvidenceByOT
	OTDistance float64
	Words      []WordEvidence
}

// WordEvidence is one word and its best regions.
type WordEvidence struct {
	Word       string
	Start, End int // Unicode code points in the text, [Start, End)
	Regions    []RegionEvidence
}

// RegionEvidence is one region of a word, with its share of the word's alignment weight and
// the detector's top class and attribute for it.
type RegionEvidence struct {
	Region    int
	Share     float64
	Box       detector.Box
	Label     string
	Attribute string
}

// Results answer a search.
type Results struct {
	Hits       []Hit
	Mode       Mode
	Gallery    int    // items in the searched collection
	Candidates int    // items the cross-encoder scored (the whole collection for Exact)
	FirstStage string // why a two-stage search scored everything, if it did
	Mentions   []string
	Timing     SearchTiming
	Query      *detector.Detection // the detected query image (Image queries)
}

// SearchTiming splits a search.
type SearchTiming struct {
	Detect, FirstStage, Scoring, Evidence time.Duration
}

func (s *Service) checkQuery(q *Query) error {
	if q.Limit == 0 {
		q.Limit = 10
	}
	if q.Mode == "" {
		q.Mode = Exact
	}
	switch {
	case q.Limit < 1 || q.Limit > s.cfg.MaxLimit:
		return inputErr("invalid_limit", "limit: %d is out of range [1, %d]", q.Limit, s.cfg.MaxLimit)
	case q.Offset < 0 || q.Offset > s.cfg.MaxOffset:
		return inputErr("invalid_offset", "offset: %d is out of range [0, %d]", q.Offset, s.cfg.MaxOffset)
	case q.Mode != Exact && q.Mode != TwoStage:
		return inputErr("invalid_mode", "mode: %q, want %q or %q", q.Mode, Exact, TwoStage)
	case q.Candidates < 0 || q.Candidates > s.cfg.MaxCandidates:
		return inputErr("invalid_candidates", "candidates: %d is out of range [1, %d]", q.Candidates, s.cfg.MaxCandidates)
	case q.Mode == Exact && q.Candidates != 0:
		return inputErr("invalid_candidates", "candidates: only for mode %q", TwoStage)
	case q.EvidenceBy != "" && !q.Evidence:
		return inputErr("invalid_evidence_by", "evidence_by: only with evidence")
	}
	if q.Evidence {
		by, err := pipeline.ResolveAlignBy(q.EvidenceBy, s.model.HasAttention())
		if err != nil {
			return inputErr("invalid_evidence_by", "evidence_by: %v", err)
		}
		q.EvidenceBy = by
	}
	if q.Mode == TwoStage {
		if q.Candidates == 0 {
			q.Candidates = max(s.cfg.Candidates, q.Offset+q.Limit)
		}
		if q.Candidates < q.Offset+q.Limit {
			return inputErr("invalid_candidates", "candidates: %d is fewer than offset + limit = %d", q.Candidates, q.Offset+q.Limit)
		}
	}
	return nil
}

// hit is a scored item during ranking.
type hit struct {
	index        int // into the searched collection
	id           string
	score, logit float32
}

// better is the ranking: higher logit, then higher score, then lower ID. NaN ranks last.
func better(a, b hit) bool {
	la, lb := nanLow(a.logit), nanLow(b.logit)
	if la != lb {
		return la > lb
	}
	sa, sb := nanLow(a.score), nanLow(b.score)
	if sa != sb {
		return sa > sb
	}
	return a.id < b.id
}

func nanLow(v float32) float32 {
	if v != v {
		return float32(math.Inf(-1))
	}
	return v
}

// topK keeps the k best hits: a heap whose root is the worst kept.
type topK struct {
	k    int
	hits []hit
}

func (t *topK) Len() int           { return len(t.hits) }
func (t *topK) Less(i, j int) bool { return better(t.hits[j], t.hits[i]) }
func (t *topK) Swap(i, j int)      { t.hits[i], t.hits[j] = t.hits[j], t.hits[i] }
func (t *topK) Push(x any)         { t.hits = append(t.hits, x.(hit)) }
func (t *topK) Pop() any {
	h := t.hits[len(t.hits)-1]
	t.hits = t.hits[:len(t.hits)-1]
	return h
}

func (t *topK) add(h hit) {
	switch {
	case len(t.hits) < t.k:
		heap.Push(t, h)
	case better(h, t.hits[0]):
		t.hits[0] = h
		heap.Fix(t, 0)
	}
}

// sorted is the kept hits, best first.
func (t *topK) sorted() []hit {
	out := slices.Clone(t.hits)
	slices.SortFunc(out, func(a, b hit) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	})
	return out
}

// rankLexical ranks items by their lexical score (ties by ID) and keeps the best k: the first
// stage in memory.
func rankLexical(n, k int, id func(int) string, score func(int) float64) []int {
	type scored struct {
		i int
		s float64
	}
	all := make([]scored, n)
	for i := range all {
		all[i] = scored{i, score(i)}
	}
	slices.SortFunc(all, func(a, b scored) int {
		if c := cmp.Compare(b.s, a.s); c != 0 {
			return c
		}
		return strings.Compare(id(a.i), id(b.i))
	})
	out := make([]int, min(k, n))
	for j := range out {
		out[j] = all[j].i
	}
	return out
}

// SearchImages ranks the stored images for a text.
func (s *Service) SearchImages(ctx context.Context, q Query) (*Results, error) {
	if err := s.checkQuery(&q); err != nil {
		return nil, err
	}
	if q.Image != nil || q.ImageID != "" {
		return nil, inputErr("invalid_input", "image search takes a text, not an image")
	}
	if strings.TrimSpace(q.Text) == "" {
		return nil, inputErr(pipeline.CodeEmptyText, "text: empty")
	}
	enc, err := s.model.Tokenize(q.Text)
	if err != nil {
		return nil, err
	}
	res := &Results{Mode: q.Mode}
	start := time.Now()
	entries, cands, err := s.imageCandidates(ctx, q, res)
	if err != nil {
		return nil, err
	}
	res.Timing.FirstStage = time.Since(start)
	res.Candidates = len(cands)

	start = time.Now()
	ranked, err := s.scoreImages(ctx, enc, entries, cands, q.Offset+q.Limit)
	if err != nil {
		return nil, err
	}
	res.Timing.Scoring = time.Since(start)
	start = time.Now()
	for _, h := range ranked[min(q.Offset, len(ranked)):] {
		var parts gallery.Parts
		if q.Evidence {
			parts = gallery.PartRegions
		}
		img, err := s.store.Image(ctx, h.id, parts)
		if errors.Is(err, gallery.ErrNotFound) {
			continue // deleted while the search ran
		} else if err != nil {
			return nil, err
		}
		out := Hit{ID: h.id, Score: h.score, Logit: h.logit, Metadata: img.Metadata}
		if q.Evidence {
			if out.Evidence, err = s.evidence(ctx, img.Regions.Prepared(img.Width, img.Height), img.Regions, q.Text, q.EvidenceBy); err != nil {
				return nil, err
			}
		}
		res.Hits = append(res.Hits, out)
	}
	res.Timing.Evidence = time.Since(start)
	return res, nil
}

// imageCandidates are the images a text query scores with the cross-encoder: entries, and
// indices into them. It fills res's Gallery, Mentions and FirstStage.
func (s *Service) imageCandidates(ctx context.Context, q Query, res *Results) ([]gallery.IndexEntry, []int, error) {
	var mentions []Mention
	if q.Mode == TwoStage {
		mentions = s.lex.Parse(q.Text)
		for _, m := range mentions {
			res.Mentions = append(res.Mentions, mentionString(m))
		}
		if !informative(mentions) {
			res.FirstStage = "the text names no detector label: every image was scored"
		}
	}
	firstStage := q.Mode == TwoStage && informative(mentions)
	if ti, ok := s.store.(gallery.TermIndex); ok && firstStage {
		st, err := s.store.Stats(ctx)
		if err != nil {
			return nil, nil, err
		}
		if res.Gallery = st.Images; q.Candidates < st.Images {
			entries, err := s.indexedImages(ctx, ti, mentions, q.Candidates)
			return entries, indices(len(entries)), err
		}
	}
	entries, err := s.images(ctx)
	if err != nil {
		return nil, nil, err
	}
	res.Gallery = len(entries)
	if firstStage && q.Candidates < len(entries) {
		return entries, rankLexical(len(entries), q.Candidates, func(i int) string { return entries[i].ID },
			func(i int) float64 { return Score(mentions, &entries[i].Labels, entries[i].Regions) }), nil
	}
	return entries, indices(len(entries)), nil
}

// indices is 0, 1, …, n−1.
func indices(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// scoreImages scores text against the images cands (indices into entries) and returns the k
// best, best first. Images are scored in order of region count, so each encoder batch pads
// little; features are read chunk by chunk (one chunk is read while the previous is scored),
// so a search holds at most about two chunks of features (Config.ChunkBytes) whatever the
// gallery's size.
func (s *Service) scoreImages(ctx context.Context, enc *textproc.Encoding, entries []gallery.IndexEntry, cands []int, k int) ([]hit, error) {
	order := slices.Clone(cands)
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(entries[a].Regions, entries[b].Regions); c != 0 {
			return c
		}
		return strings.Compare(entries[a].ID, entries[b].ID)
	})
	type chunk struct {
		index []int
		prep  []*detector.Prepared
		err   error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the reader below if scoring fails
	chunks := make(chan chunk, 1)
	st, err := s.store.Stats(ctx)
	if err != nil {
		return nil, err
	}
	perRegion := int64(4 * max(st.FeatureDim, 1))
	go func() { // exits after the last chunk, or when ctx ends
		defer close(chunks)
		for lo := 0; lo < len(order); {
			// A chunk ends at ChunkImages images or ChunkBytes of features, whichever comes first.
			hi, bytes := lo, int64(0)
			for hi < len(order) && hi-lo < s.cfg.ChunkImages && (hi == lo || bytes < s.cfg.ChunkBytes) {
				bytes += int64(entries[order[hi]].Regions) * perRegion
				hi++
			}
			c := chunk{}
			c.index, c.prep, c.err = s.loadRegions(ctx, entries, order[lo:hi])
			select {
			case chunks <- c:
			case <-ctx.Done():
				return
			}
			if c.err != nil {
				return
			}
			lo = hi
		}
	}()
	top := &topK{k: k}
	texts := []*textproc.Encoding{enc}
	for c := range chunks {
		if c.err != nil {
			return nil, c.err
		}
		pairs := make([]pipeline.ScorePair, len(c.prep))
		for i := range pairs {
			pairs[i] = pipeline.ScorePair{Image: i}
		}
		matches, err := s.model.ScorePairs(ctx, c.prep, texts, pairs, pipeline.ScoreOptions{BatchPairs: s.cfg.BatchPairs, Workers: s.cfg.Workers})
		if err != nil {
			return nil, err
		}
		for i, m := range matches {
			top.add(hit{index: c.index[i], id: entries[c.index[i]].ID, score: m.Score, logit: m.Logit})
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return top.sorted(), nil
}

// loadRegions reads the features of some images; images deleted since the index was read
// are left out.
func (s *Service) loadRegions(ctx context.Context, entries []gallery.IndexEntry, which []int) ([]int, []*detector.Prepared, error) {
	ids := make([]string, len(which))
	for i, e := range which {
		ids[i] = entries[e].ID
	}
	regs, err := s.store.Regions(ctx, ids)
	if errors.Is(err, gallery.ErrNotFound) {
		var kept []int
		var prep []*detector.Prepared
		for i, id := range ids {
			r, err := s.store.Regions(ctx, []string{id})
			if errors.Is(err, gallery.ErrNotFound) {
				continue
			} else if err != nil {
				return nil, nil, err
			}
			kept, prep = append(kept, which[i]), append(prep, r[0].Prepared(0, 0))
		}
		return kept, prep, nil
	}
	if err != nil {
		return nil, nil, err
	}
	prep := make([]*detector.Prepared, len(regs))
	for i, r := range regs {
		prep[i] = r.Prepared(0, 0) // the encoder reads features and locations only
	}
	return which, prep, nil
}

// SearchTexts ranks the stored texts for an image (stored, or sent and detected).
func (s *Service) SearchTexts(ctx context.Context, q Query) (*Results, error) {
	if err := s.checkQuery(&q); err != nil {
		return nil, err
	}
	if q.Text != "" {
		return nil, inputErr("invalid_input", "text search takes an image or image_id, not a text")
	}
	res := &Results{Mode: q.Mode}
	var regions *gallery.Regions
	var width, height int
	start := time.Now()
	switch {
	case (q.Image == nil) == (q.ImageID == ""):
		return nil, inputErr("invalid_input", "give exactly one of image and image_id")
	case q.ImageID != "":
		img, err := s.store.Image(ctx, q.ImageID, gallery.PartRegions)
		if err != nil {
			return nil, err
		}
		regions, width, height = img.Regions, img.Width, img.Height
	default:
		det, _, err := s.model.Detect(ctx, q.Image)
		if err != nil {
			return nil, err
		}
		regions, width, height, res.Query = RegionsOf(det), det.Width, det.Height, det
	}
	res.Timing.Detect = time.Since(start)
	start = time.Now()
	texts, encs, err := s.textCandidates(ctx, q, regions, res)
	if err != nil {
		return nil, err
	}
	res.Timing.FirstStage = time.Since(start)
	res.Candidates = len(texts)
	start = time.Now()
	prep := regions.Prepared(width, height)
	var matches []heads.Match
	if len(encs) > 0 {
		if matches, err = s.model.ScoreMatrix(ctx, []*detector.Prepared{prep}, encs, pipeline.ScoreOptions{BatchPairs: s.cfg.BatchPairs, Workers: s.cfg.Workers}); err != nil {
			return nil, err
		}
	}
	top := &topK{k: q.Offset + q.Limit}
	for j, m := range matches {
		top.add(hit{index: j, id: texts[j].ID, score: m.Score, logit: m.Logit})
	}
	ranked := top.sorted()
	res.Timing.Scoring = time.Since(start)
	start = time.Now()
	for _, h := range ranked[min(q.Offset, len(ranked)):] {
		t := texts[h.index]
		out := Hit{ID: t.ID, Score: h.score, Logit: h.logit, Text: t.Text, Metadata: t.Metadata}
		if q.Evidence {
			if out.Evidence, err = s.evidence(ctx, prep, regions, t.Text, q.EvidenceBy); err != nil {
				return nil, err
			}
		}
		res.Hits = append(res.Hits, out)
	}
	res.Timing.Evidence = time.Since(start)
	return res, nil
}

// textCandidates are the texts an image query scores with the cross-encoder, with their
// encodings. It fills res.Gallery.
func (s *Service) textCandidates(ctx context.Context, q Query, regions *gallery.Regions, res *Results) ([]*gallery.Text, []*textproc.Encoding, error) {
	if ti, ok := s.store.(gallery.TermIndex); ok && q.Mode == TwoStage {
		st, err := s.store.Stats(ctx)
		if err != nil {
			return nil, nil, err
		}
		if res.Gallery = st.Texts; q.Candidates < st.Texts {
			summary := gallery.Summarize(regions)
			texts, err := s.indexedTexts(ctx, ti, &summary, regions.Len(), q.Candidates)
			if err != nil {
				return nil, nil, err
			}
			encs := make([]*textproc.Encoding, len(texts))
			for i, t := range texts {
				if encs[i], err = s.model.Tokenize(t.Text); err != nil {
					return nil, nil, fmt.Errorf("stored text %q: %w", t.ID, err)
				}
			}
			return texts, encs, nil
		}
	}
	idx, err := s.texts(ctx)
	if err != nil {
		return nil, nil, err
	}
	res.Gallery = len(idx.texts)
	cands := indices(len(idx.texts))
	if q.Mode == TwoStage && q.Candidates < len(cands) {
		summary := gallery.Summarize(regions)
		cands = rankLexical(len(cands), q.Candidates, func(i int) string { return idx.texts[i].ID },
			func(i int) float64 { return Score(idx.mentions[i], &summary, regions.Len()) })
	}
	texts, encs := make([]*gallery.Text, len(cands)), make([]*textproc.Encoding, len(cands))
	for j, i := range cands {
		texts[j], encs[j] = idx.texts[i], idx.encs[i]
	}
	return texts, encs, nil
}

// stopWords get no evidence: they name nothing in the image.
var stopWords = map[string]bool{"a": true, "an": true, "the": true, "of": true, "is": true, "are": true, "there": true,
	"to": true, "and": true, "or": true, "in": true, "on": true, "at": true, "with": true, "it": true, "its": true,
	"this": true, "that": true, "be": true, "some": true, "no": true, "not": true, "something": true, "by": true, "for": true}

// evidence aligns text with regions (by attention or by optimal transport, as by says) and
// keeps the content words.
func (s *Service) evidence(ctx context.Context, prep *detector.Prepared, regions *gallery.Regions, text, by string) (*Evidence, error) {
	a, err := s.model.AlignPrepared(ctx, prep, text, pipeline.AlignOptions{TopRegions: s.cfg.EvidenceRegions, Attention: by == EvidenceByAttention})
	if err != nil {
		return nil, err
	}
	ev := &Evidence{By: by, OTDistance: a.OTDistance}
	aligned := a.WordRegions
	if by == EvidenceByAttention {
		aligned = a.AttentionWordRegions
	}
	for _, w := range aligned {
		word := a.Words[w.Word]
		if stopWords[strings.ToLower(word.Text)] || len(w.Regions) == 0 {
			continue
		}
		we := WordEvidence{Word: word.Text, Start: word.Start, End: word.End}
		for _, r := range w.Regions {
			re := RegionEvidence{Region: r.Region, Share: r.Share, Box: regions.Boxes[r.Region]}
			re.Label = topName(regions.ClassProbs, regions.ClassDim, r.Region, s.cfg.Labels.Classes, s.cfg.Labels.Background)
			re.Attribute = topName(regions.AttrProbs, regions.AttrDim, r.Region, s.cfg.Labels.Attributes, s.cfg.Labels.NoAttribute)
			we.Regions = append(we.Regions, re)
		}
		ev.Words = append(ev.Words, we)
	}
	return ev, nil
}

// topName is the most probable label of region r other than skip, "" without labels.
func topName(probs []float32, dim, r int, names []string, skip int) string {
	if dim == 0 || len(names) != dim {
		return ""
	}
	row := probs[r*dim : (r+1)*dim]
	best := -1
	for j, p := range row {
		if j != skip && (best < 0 || p > row[best]) {
			best = j
		}
	}
	if best < 0 {
		return ""
	}
	return names[best]
}

func mentionString(m Mention) string {
	s := m.Text
	if m.Count > 1 {
		s = "≥" + strconv.Itoa(m.Count) + " " + s
	}
	if m.Negated {
		s = "no " + s
	}
	return s
}
