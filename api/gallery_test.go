package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/retrieval"
	"github.com/uniter-serve/uniter/pipeline"
)

var galleryCtx = context.Background()

// newGalleryServer serves the fixture bundle with an empty gallery; images over maxImage
// bytes are refused by the decoder (413).
func newGalleryServer(t testing.TB, maxImage int64) (http.Handler, *gallery.Bolt) {
	t.Helper()
	ts := newTestServer(t, serverOptions{config: api.Config{MaxBodyBytes: 256 << 10},
		pipeline: &pipeline.Options{MaxRegions: 100, MaxTexts: 4, CacheBytes: 16 << 20, Decode: detector.DecodeLimits{MaxBytes: maxImage}},
		gallery:  true, search: retrieval.Config{MaxLimit: 20, MaxOffset: 50}})
	return ts.Handler(), ts.store
}

// galleryPNG is a distinct small picture per seed.
func galleryPNG(t testing.TB, seed int, w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x*7 + seed*31), uint8(y*5 + seed*17), uint8((x + y + seed) * 3), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// noisyPNG is random pixels: it does not compress.
func noisyPNG(t testing.TB, w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
		if i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func upload(t *testing.T, h http.Handler, raw []byte, id string, meta any) *httptest.ResponseRecorder {
	t.Helper()
	body := map[string]any{"image": map[string]string{"data": base64.StdEncoding.EncodeToString(raw)}}
	if id != "" {
		body["id"] = id
	}
	if meta != nil {
		body["metadata"] = meta
	}
	return postJSON(t, h, "/v1/images", body)
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %T: %v", v, err)
	}
	return v
}

// wantStatus checks an answer's status and, for errors, its code.
func wantStatus(t *testing.T, what string, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Errorf("%s: got %d, want %d: %s", what, rec.Code, status, rec.Body)
		return
	}
	if code != "" {
		var e api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code != code || e.Error.Message == "" {
			t.Errorf("%s: got body %s, want error code %q", what, rec.Body, code)
		}
	}
}

func TestGalleryImages(t *testing.T) {
	h, st := newGalleryServer(t, 0)
	raw := galleryPNG(t, 1, 90, 70)

	rec := upload(t, h, raw, "", map[string]any{"caption": "first", "n": 1})
	wantStatus(t, "upload", rec, http.StatusCreated, "")
	first := decode[api.ImageUploadResponse](t, rec)
	if len(first.ID) != 16 || first.Duplicate || first.Regions == 0 || first.Width != 90 || first.Height != 70 {
		t.Fatalf("upload: %+v", first)
	}
	rec = upload(t, h, raw, "again", nil)
	wantStatus(t, "same bytes", rec, http.StatusOK, "")
	if dup := decode[api.ImageUploadResponse](t, rec); !dup.Duplicate || dup.ID != first.ID || dup.SHA256 != first.SHA256 {
		t.Errorf("same bytes: %+v, want a duplicate of %s", dup, first.ID)
	}

	// Multipart with id and metadata.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("image", "x.png")
	fw.Write(galleryPNG(t, 2, 60, 80))
	mw.WriteField("id", "second")
	mw.WriteField("metadata", `{"caption": "second"}`)
	mw.Close()
	rec = do(t, h, http.MethodPost, "/v1/images", mw.FormDataContentType(), &buf)
	wantStatus(t, "multipart upload", rec, http.StatusCreated, "")
	if got := decode[api.ImageUploadResponse](t, rec); got.ID != "second" {
		t.Errorf("multipart: id %q", got.ID)
	}
	for i := range 3 {
		wantStatus(t, "upload", upload(t, h, galleryPNG(t, 10+i, 64, 64), fmt.Sprintf("more-%d", i), nil), http.StatusCreated, "")
	}

	// GET one: summary, regions with labels, features on request, thumbnail.
	rec = do(t, h, http.MethodGet, "/v1/images/second?features=true", "", nil)
	wantStatus(t, "get", rec, http.StatusOK, "")
	img := decode[api.GalleryImage](t, rec)
	stored, _ := st.Image(galleryCtx, "second", gallery.PartRegions)
	if img.ID != "second" || string(img.Metadata) != `{"caption":"second"}` || img.NumRegions != stored.Regions.Len() ||
		len(img.Regions) != img.NumRegions || !img.Thumbnail || img.Source != "detector:tiny-random" {
		t.Fatalf("get: %+v", img)
	}
	for i, r := range img.Regions {
		if r.Box != stored.Regions.Boxes[i] || r.Confidence == nil || *r.Confidence != stored.Regions.Confidence[i] || len(r.Labels) != 3 {
			t.Errorf("region %d: %+v", i, r)
		}
	}
	if f := img.Features; f == nil || f.DType != "float16" || f.Shape[0] != img.NumRegions || f.Shape[1] != 64 {
		t.Errorf("features: %+v", f)
	} else if data, _ := base64.StdEncoding.DecodeString(f.Data); len(data) != 2*64*img.NumRegions {
		t.Errorf("features: %d bytes", len(data))
	}
	rec = do(t, h, http.MethodGet, "/v1/images/second/thumbnail", "", nil)
	wantStatus(t, "thumbnail", rec, http.StatusOK, "")
	if cfg, err := jpeg.DecodeConfig(rec.Body); err != nil || rec.Header().Get("Content-Type") != "image/jpeg" || cfg.Width != 60 || cfg.Height != 80 {
		t.Errorf("thumbnail: %v %v %s", cfg, err, rec.Header().Get("Content-Type"))
	}

	// Listing: pages of 2 through the cursor, every image once, in ID order.
	var ids []string
	next := ""
	for page := 0; page < 10; page++ {
		path := "/v1/images?limit=2"
		if next != "" {
			path += "&cursor=" + next
		}
		rec = do(t, h, http.MethodGet, path, "", nil)
		wantStatus(t, "list", rec, http.StatusOK, "")
		l := decode[api.ImageListResponse](t, rec)
		for _, m := range l.Images {
			ids = append(ids, m.ID)
		}
		if next = l.NextCursor; next == "" {
			break
		}
	}
	if want := []string{first.ID, "more-0", "more-1", "more-2", "second"}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("listing: got %v, want %v", ids, want)
	}

	// Delete, then it is gone.
	wantStatus(t, "delete", do(t, h, http.MethodDelete, "/v1/images/more-1", "", nil), http.StatusOK, "")
	wantStatus(t, "get deleted", do(t, h, http.MethodGet, "/v1/images/more-1", "", nil), http.StatusNotFound, "not_found")
	wantStatus(t, "delete again", do(t, h, http.MethodDelete, "/v1/images/more-1", "", nil), http.StatusNotFound, "not_found")
	wantStatus(t, "thumbnail of deleted", do(t, h, http.MethodGet, "/v1/images/more-1/thumbnail", "", nil), http.StatusNotFound, "not_found")
	if s, _ := st.Stats(galleryCtx); s.Images != 4 {
		t.Errorf("images after delete: %d, want 4", s.Images)
	}
}

func TestGalleryErrors(t *testing.T) {
	h, st := newGalleryServer(t, 20_000)
	wantStatus(t, "first", upload(t, h, galleryPNG(t, 1, 40, 40), "taken", nil), http.StatusCreated, "")
	big := noisyPNG(t, 100, 100) // ~ 30 kB of PNG: over the 20 kB image limit, under the body limit
	if len(big) < 20_000 || len(big)*4/3 > 256<<10 {
		t.Fatalf("test image is %d bytes", len(big))
	}
	for _, c := range []struct {
		what   string
		rec    *httptest.ResponseRecorder
		status int
		code   string
	}{
		{"unknown image", do(t, h, http.MethodGet, "/v1/images/nope", "", nil), 404, "not_found"},
		{"unknown thumbnail", do(t, h, http.MethodGet, "/v1/images/nope/thumbnail", "", nil), 404, "not_found"},
		{"unknown text", do(t, h, http.MethodGet, "/v1/texts/nope", "", nil), 404, "not_found"},
		{"delete unknown text", do(t, h, http.MethodDelete, "/v1/texts/nope", "", nil), 404, "not_found"},
		{"limit 0", do(t, h, http.MethodGet, "/v1/images?limit=0", "", nil), 400, "invalid_limit"},
		{"limit too big", do(t, h, http.MethodGet, "/v1/texts?limit=1001", "", nil), 400, "invalid_limit"},
		{"limit junk", do(t, h, http.MethodGet, "/v1/images?limit=ten", "", nil), 400, "invalid_limit"},
		{"cursor junk", do(t, h, http.MethodGet, "/v1/images?cursor=%25%25", "", nil), 400, "invalid_cursor"},
		{"features junk", do(t, h, http.MethodGet, "/v1/images/taken?features=maybe", "", nil), 400, "invalid_features"},
		{"image over the limit", upload(t, h, big, "", nil), 413, pipeline.CodeImageTooLarge},
		{"body over the limit", upload(t, h, bytes.Repeat([]byte{1}, 300<<10), "", nil), 413, "body_too_large"},
		{"taken id", upload(t, h, galleryPNG(t, 2, 40, 40), "taken", nil), 409, "conflict"},
		{"bad id", upload(t, h, galleryPNG(t, 2, 40, 40), "a/b", nil), 400, "invalid_record"},
		{"metadata not an object", upload(t, h, galleryPNG(t, 2, 40, 40), "", []int{1}), 400, "invalid_record"},
		{"not an image", upload(t, h, []byte("just text"), "", nil), 400, pipeline.CodeInvalidImage},
		{"no image", postJSON(t, h, "/v1/images", map[string]any{"id": "x"}), 400, "missing_image"},
		{"unknown field", postJSON(t, h, "/v1/images", map[string]any{"image": map[string]string{"data": "AA=="}, "tags": 1}), 400, "unknown_field"},
		{"search limit", postJSON(t, h, "/v1/search/images", map[string]any{"text": "a circle", "limit": 21}), 400, "invalid_limit"},
		{"search negative limit", postJSON(t, h, "/v1/search/images", map[string]any{"text": "a circle", "limit": -1}), 400, "invalid_limit"},
		{"search offset", postJSON(t, h, "/v1/search/images", map[string]any{"text": "a circle", "offset": 51}), 400, "invalid_offset"},
		{"search negative offset", postJSON(t, h, "/v1/search/images", map[string]any{"text": "a circle", "offset": -3}), 400, "invalid_offset"},
		{"search mode", postJSON(t, h, "/v1/search/images", map[string]any{"text": "a circle", "mode": "fuzzy"}), 400, "invalid_mode"},
		{"search evidence_by", postJSON(t, h, "/v1/search/images", map[string]any{"text": "a circle", "evidence": true, "evidence_by": "saliency"}), 400, "invalid_evidence_by"},
		{"search candidates", postJSON(t, h, "/v1/search/images", map[string]any{"text": "a circle", "mode": "two_stage", "candidates": 3, "limit": 5}), 400, "invalid_candidates"},
		{"search empty text", postJSON(t, h, "/v1/search/images", map[string]any{"text": ""}), 400, pipeline.CodeEmptyText},
		{"search unknown image", postJSON(t, h, "/v1/search/texts", map[string]any{"image_id": "nope"}), 404, "not_found"},
		{"search two images", postJSON(t, h, "/v1/search/texts", map[string]any{"image_id": "taken", "image": map[string]string{"data": "AA=="}}), 400, "invalid_input"},
		{"texts empty", postJSON(t, h, "/v1/texts", map[string]any{"texts": []any{}}), 400, "no_texts"},
		{"texts empty text", postJSON(t, h, "/v1/texts", map[string]any{"texts": []any{map[string]string{"id": "a", "text": ""}}}), 400, "empty_text"},
	} {
		wantStatus(t, c.what, c.rec, c.status, c.code)
	}
	// A JSON-only route names JSON alone as what to send.
	for _, path := range []string{"/v1/search/images", "/v1/texts"} {
		rec := do(t, h, http.MethodPost, path, "multipart/form-data; boundary=x", strings.NewReader("--x--\r\n"))
		wantStatus(t, path+" multipart", rec, 415, "unsupported_media_type")
		if !strings.Contains(rec.Body.String(), "send application/json\"") {
			t.Errorf("%s multipart: %s, want it to ask for application/json alone", path, rec.Body)
		}
	}
	// Nothing above was written.
	if s, _ := st.Stats(galleryCtx); s.Images != 1 || s.Texts != 0 {
		t.Errorf("after bad requests: %d images, %d texts, want 1 and 0", s.Images, s.Texts)
	}
}

func TestGalleryAbsent(t *testing.T) {
	_, plain := newServer(t)
	wantStatus(t, "no gallery", postJSON(t, plain, "/v1/search/images", map[string]any{"text": "a"}), 503, "no_gallery")
	wantStatus(t, "no gallery", do(t, plain, http.MethodGet, "/v1/images/x/thumbnail", "", nil), 503, "no_gallery")
}

func TestGalleryTextsAndSearch(t *testing.T) {
	h, _ := newGalleryServer(t, 0)
	for i := range 6 {
		wantStatus(t, "upload", upload(t, h, galleryPNG(t, i, 50+5*i, 60), fmt.Sprintf("img-%d", i), map[string]int{"i": i}), http.StatusCreated, "")
	}
	texts := []map[string]any{{"id": "t1", "text": "a red circle", "metadata": map[string]string{"image_id": "img-1"}},
		{"id": "t2", "text": "two green squares"}, {"text": "there is a blue star"}}
	rec := postJSON(t, h, "/v1/texts", map[string]any{"texts": texts})
	wantStatus(t, "texts", rec, http.StatusOK, "")
	res := decode[api.TextsResponse](t, rec)
	if len(res.Results) != 3 || res.Results[0].ID != "t1" || len(res.Results[2].ID) != 16 || res.Results[1].Duplicate {
		t.Fatalf("texts: %+v", res)
	}
	rec = postJSON(t, h, "/v1/texts", map[string]any{"texts": texts[:1]})
	if again := decode[api.TextsResponse](t, rec); !again.Results[0].Duplicate {
		t.Errorf("same text again: %+v", again)
	}
	// A conflicting batch writes nothing, not even its new texts.
	rec = postJSON(t, h, "/v1/texts", map[string]any{"texts": []map[string]string{{"id": "t9", "text": "new"}, {"id": "t1", "text": "changed"}}})
	wantStatus(t, "conflicting batch", rec, http.StatusConflict, "conflict")
	wantStatus(t, "text of a failed batch", do(t, h, http.MethodGet, "/v1/texts/t9", "", nil), http.StatusNotFound, "not_found")
	rec = do(t, h, http.MethodGet, "/v1/texts/t1", "", nil)
	if tj := decode[api.TextJSON](t, rec); tj.Text != "a red circle" || string(tj.Metadata) != `{"image_id":"img-1"}` || tj.Created == nil {
		t.Errorf("get text: %+v", tj)
	}
	rec = do(t, h, http.MethodGet, "/v1/texts?limit=2", "", nil)
	if l := decode[api.TextListResponse](t, rec); len(l.Texts) != 2 || l.NextCursor == "" {
		t.Errorf("list texts: %+v", l)
	}

	rec = postJSON(t, h, "/v1/search/images", map[string]any{"text": "a red circle", "limit": 4, "evidence": true})
	wantStatus(t, "search images", rec, http.StatusOK, "")
	sr := decode[api.SearchResponse](t, rec)
	if len(sr.Results) != 4 || sr.GallerySize != 6 || sr.Candidates != 6 || sr.Mode != "exact" || sr.Model != "tiny-random" {
		t.Fatalf("search images: %+v", sr)
	}
	for i, hit := range sr.Results {
		if i > 0 && hit.Logit > sr.Results[i-1].Logit {
			t.Errorf("hit %d ranks above hit %d", i, i-1)
		}
		if hit.Evidence == nil || len(hit.Evidence.Words) != 2 || hit.Evidence.Words[0].Word != "red" || hit.Metadata == nil ||
			hit.Evidence.By != "attention" {
			t.Errorf("hit %d: %+v (evidence by attention by default)", i, hit)
		}
	}
	rec = postJSON(t, h, "/v1/search/images", map[string]any{"text": "a red circle", "limit": 1, "evidence": true, "evidence_by": "ot"})
	if ot := decode[api.SearchResponse](t, rec); len(ot.Results) != 1 || ot.Results[0].Evidence == nil || ot.Results[0].Evidence.By != "ot" {
		t.Errorf(`"evidence_by": "ot": %+v`, ot)
	}
	rec = postJSON(t, h, "/v1/search/images", map[string]any{"text": "a red circle", "limit": 2, "offset": 2})
	if page := decode[api.SearchResponse](t, rec); len(page.Results) != 2 || page.Results[0].ID != sr.Results[2].ID || page.Results[1].ID != sr.Results[3].ID {
		t.Errorf("offset 2: %+v, want hits 2 and 3 of %+v", page.Results, sr.Results)
	}
	rec = postJSON(t, h, "/v1/search/images", map[string]any{"text": "a red circle", "limit": 2, "mode": "two_stage", "candidates": 3})
	if two := decode[api.SearchResponse](t, rec); two.Candidates != 3 || len(two.Results) != 2 || len(two.Mentions) != 1 {
		t.Errorf("two-stage: %+v", two)
	}

	rec = postJSON(t, h, "/v1/search/texts", map[string]any{"image_id": "img-1", "limit": 3, "evidence": true})
	wantStatus(t, "search texts", rec, http.StatusOK, "")
	tr := decode[api.SearchResponse](t, rec)
	if len(tr.Results) != 3 || tr.GallerySize != 3 || tr.Results[0].Text == "" || tr.Results[0].Evidence == nil {
		t.Fatalf("search texts: %+v", tr)
	}
	rec = postJSON(t, h, "/v1/search/texts", map[string]any{"image": map[string]string{"data": base64.StdEncoding.EncodeToString(galleryPNG(t, 1, 55, 60))}})
	wantStatus(t, "search texts by image", rec, http.StatusOK, "")
	if byImg := decode[api.SearchResponse](t, rec); byImg.Image == nil || byImg.Image.Width != 55 || len(byImg.Results) != 3 {
		t.Errorf("search texts by image: %+v", byImg)
	}
	// The same search with the image as a multipart file, options as fields: the same answer.
	jsonRec := postJSON(t, h, "/v1/search/texts", map[string]any{"image": map[string]string{"data": base64.StdEncoding.EncodeToString(galleryPNG(t, 1, 55, 60))},
		"limit": 2, "offset": 1, "evidence": true, "mode": "exact"})
	mpRec := send(h, multipartReq(t, "/v1/search/texts", galleryPNG(t, 1, 55, 60),
		[2]string{"limit", "2"}, [2]string{"offset", "1"}, [2]string{"evidence", "true"}, [2]string{"mode", "exact"}))
	wantStatus(t, "search texts by image, multipart", mpRec, http.StatusOK, "")
	fromJSON, fromMP := decode[api.SearchResponse](t, jsonRec), decode[api.SearchResponse](t, mpRec)
	fromJSON.Timings, fromMP.Timings = api.SearchTimings{}, api.SearchTimings{}
	fromJSON.Image.CacheHit, fromMP.Image.CacheHit = false, false
	if !reflect.DeepEqual(fromJSON, fromMP) || len(fromMP.Results) != 2 || fromMP.Results[0].Evidence == nil {
		t.Errorf("search texts, multipart: %+v\nJSON: %+v", fromMP, fromJSON)
	}
	for _, c := range []struct {
		what   string
		image  []byte
		fields [][2]string
		code   string
	}{
		{"limit not an integer", galleryPNG(t, 1, 55, 60), [][2]string{{"limit", "ten"}}, "invalid_limit"},
		{"limit over the maximum", galleryPNG(t, 1, 55, 60), [][2]string{{"limit", "21"}}, "invalid_limit"},
		{"evidence not a boolean", galleryPNG(t, 1, 55, 60), [][2]string{{"evidence", "maybe"}}, "invalid_evidence"},
		{"an unknown field", galleryPNG(t, 1, 55, 60), [][2]string{{"text", "a red circle"}}, "unknown_field"},
		{"an image and an image_id", galleryPNG(t, 1, 55, 60), [][2]string{{"image_id", "img-1"}}, "invalid_input"},
		{"neither", nil, [][2]string{{"limit", "2"}}, "invalid_input"},
		{"an empty image file", []byte{}, nil, "invalid_image"},
	} {
		wantStatus(t, "search texts, multipart, "+c.what, send(h, multipartReq(t, "/v1/search/texts", c.image, c.fields...)), 400, c.code)
	}
	rec = send(h, multipartReq(t, "/v1/search/texts", nil, [2]string{"image_id", "img-1"}, [2]string{"limit", "1"}))
	if byID := decode[api.SearchResponse](t, rec); len(byID.Results) != 1 || byID.Image != nil {
		t.Errorf("search texts by image_id, multipart: %s", rec.Body)
	}
	wantStatus(t, "delete text", do(t, h, http.MethodDelete, "/v1/texts/t2", "", nil), http.StatusOK, "")
	rec = postJSON(t, h, "/v1/search/texts", map[string]any{"image_id": "img-1"})
	if after := decode[api.SearchResponse](t, rec); after.GallerySize != 2 || strings.Contains(rec.Body.String(), `"t2"`) {
		t.Errorf("after deleting t2: %s", rec.Body)
	}
}

// TestGalleryGolden pins one request/response pair per search endpoint and for GET
// /v1/images/{id} (testdata/*.golden.json; go test ./api -update rewrites them).
func TestGalleryGolden(t *testing.T) {
	h, _ := newGalleryServer(t, 0)
	for i := range 4 {
		wantStatus(t, "upload", upload(t, h, galleryPNG(t, i, 40+10*i, 50), fmt.Sprintf("img-%d", i), map[string]int{"i": i}), http.StatusCreated, "")
	}
	rec := postJSON(t, h, "/v1/texts", map[string]any{"texts": []map[string]string{{"id": "a", "text": "a red circle"}, {"id": "b", "text": "two green squares"}}})
	wantStatus(t, "texts", rec, http.StatusOK, "")

	rec = postJSON(t, h, "/v1/search/images", map[string]any{"text": "a red circle left of a square", "limit": 3, "evidence": true})
	wantStatus(t, "search images", rec, http.StatusOK, "")
	galleryGolden(t, "search_images", rec.Body.Bytes())
	rec = postJSON(t, h, "/v1/search/texts", map[string]any{"image_id": "img-2", "mode": "two_stage", "candidates": 2, "limit": 2})
	wantStatus(t, "search texts", rec, http.StatusOK, "")
	galleryGolden(t, "search_texts", rec.Body.Bytes())
	rec = do(t, h, http.MethodGet, "/v1/images/img-1", "", nil)
	wantStatus(t, "get image", rec, http.StatusOK, "")
	var v map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	v["created"] = "measured" // a timestamp, not computed
	raw, _ := json.Marshal(v)
	galleryGolden(t, "gallery_image", raw)
}

// galleryGolden is golden with a looser bound: these answers go through the detector, whose
// boxes may move by ~1e-4 px with another CPU or thread count (detector_golden_test.go).
func galleryGolden(t *testing.T, name string, body []byte) {
	t.Helper()
	goldenWithin(t, name, body, 1e-3)
}
