package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/x448/float16"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/internal/testenv"
	"github.com/uniter-serve/uniter/pipeline"
)

func fixturePNG(t testing.TB) []byte {
	raw, err := os.ReadFile(testenv.Path(t, "testdata", "images", "shapes-160x128.png"))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// exifJPEG encodes a w×h JPEG (red left half, blue right half) and splices in an EXIF APP1
// segment with the given orientation tag.
func exifJPEG(t testing.TB, w, h int, orientation uint16) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{220, 20, 20, 255}
			if x >= w/2 {
				c = color.RGBA{20, 20, 220, 255}
			}
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	// TIFF little-endian header, one IFD entry: Orientation (0x0112), SHORT, count 1.
	tiff := []byte{'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint16(tiff[18:], orientation)
	payload := append([]byte("Exif\x00\x00"), tiff...)
	seg := []byte{0xFF, 0xE1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	seg = append(seg, payload...)
	raw := buf.Bytes()
	return append(append(append([]byte{}, raw[:2]...), seg...), raw[2:]...)
}

func multipartBody(t testing.TB, image []byte, fields map[string][]string) (string, *bytes.Buffer) {
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	if image != nil {
		fw, err := w.CreateFormFile("image", "upload.bin")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(image)
	}
	for k, vs := range fields {
		for _, v := range vs {
			w.WriteField(k, v)
		}
	}
	w.Close()
	return w.FormDataContentType(), &body
}

func TestRegionsEndpoint(t *testing.T) {
	_, h := newServer(t)
	png := fixturePNG(t)
	rec := postJSON(t, h, "/v1/regions", map[string]any{"image": map[string]string{"data": base64.StdEncoding.EncodeToString(png)}, "features": true})
	if rec.Code != 200 {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	var resp api.RegionsResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Image.Width != 160 || resp.Image.Height != 128 || resp.Image.Format != "png" || resp.Image.CacheHit {
		t.Fatalf("image: %+v", resp.Image)
	}
	if n := len(resp.Regions); n < 10 || n > 100 {
		t.Fatalf("%d regions, want 10..100", n)
	}
	prev := float32(2)
	for _, r := range resp.Regions {
		if r.Confidence == nil || *r.Confidence > prev || len(r.Labels) != 3 || len(r.Attributes) != 3 {
			t.Fatalf("region %+v: want descending confidence, 3 labels, 3 attributes", r)
		}
		prev = *r.Confidence
		for _, l := range r.Labels {
			if l.Label == "__background__" {
				t.Fatal("background listed as a label")
			}
		}
		if r.Box[2] > 160 || r.Box[3] > 128 || r.Box[0] < 0 || r.Box[1] < 0 {
			t.Fatalf("box %v outside the image", r.Box)
		}
	}
	// Features: base64 little-endian float16 of shape [regions, 64], equal to a direct detection.
	f := resp.Features
	if f == nil || f.DType != "float16" || len(f.Shape) != 2 || f.Shape[0] != len(resp.Regions) || f.Shape[1] != 64 {
		t.Fatalf("features block %+v", f)
	}
	raw, err := base64.StdEncoding.DecodeString(f.Data)
	if err != nil || len(raw) != 2*f.Shape[0]*f.Shape[1] {
		t.Fatalf("features data: %d bytes, %v", len(raw), err)
	}
	// Second request: cache hit, no features unless asked.
	rec = postJSON(t, h, "/v1/regions", map[string]any{"image": map[string]string{"data": base64.StdEncoding.EncodeToString(png)}})
	var again api.RegionsResponse
	json.Unmarshal(rec.Body.Bytes(), &again)
	if !again.Image.CacheHit || again.Features != nil || len(again.Regions) != len(resp.Regions) {
		t.Fatalf("second request: hit=%v features=%v", again.Image.CacheHit, again.Features != nil)
	}
	// Features decode to the detector's values within float16 precision.
	ct, body := multipartBody(t, png, map[string][]string{"features": {"true"}})
	rec = do(t, h, http.MethodPost, "/v1/regions", ct, body)
	var mp api.RegionsResponse
	json.Unmarshal(rec.Body.Bytes(), &mp)
	if rec.Code != 200 || mp.Features == nil || mp.Features.Data != f.Data {
		t.Fatalf("multipart: %d, same features: %v", rec.Code, mp.Features != nil && mp.Features.Data == f.Data)
	}
	for i := 0; i < 8; i++ {
		v := float16.Frombits(binary.LittleEndian.Uint16(raw[2*i:])).Float32()
		if v != v {
			t.Fatal("NaN feature")
		}
	}
}

func TestMatchAndAlignWithImages(t *testing.T) {
	_, h := newServer(t)
	png := fixturePNG(t)
	texts := []string{"a red square", "two green triangles"}
	// Multipart with repeated text fields.
	ct, body := multipartBody(t, png, map[string][]string{"text": texts})
	rec := do(t, h, http.MethodPost, "/v1/match", ct, body)
	if rec.Code != 200 {
		t.Fatalf("multipart match: %d %s", rec.Code, rec.Body)
	}
	var mp api.MatchResponse
	json.Unmarshal(rec.Body.Bytes(), &mp)
	if len(mp.Results) != 2 || mp.Image == nil || mp.Image.Regions < 10 || mp.Image.CacheHit || mp.Timings.Detector <= 0 {
		t.Fatalf("multipart match: %+v", mp)
	}
	// The same image as base64 JSON: the detector does not run again, and scores are equal.
	rec = postJSON(t, h, "/v1/match", map[string]any{"image": map[string]string{"data": base64.StdEncoding.EncodeToString(png)}, "texts": texts})
	var js api.MatchResponse
	json.Unmarshal(rec.Body.Bytes(), &js)
	if rec.Code != 200 || !js.Image.CacheHit || js.Timings.Detector != 0 {
		t.Fatalf("json match: %d %+v", rec.Code, js.Image)
	}
	for i := range texts {
		if js.Results[i].Logit != mp.Results[i].Logit {
			t.Errorf("text %d: logit %v via JSON, %v via multipart", i, js.Results[i].Logit, mp.Results[i].Logit)
		}
	}
	// Align with an image: regions carry detector labels; the plan covers every region.
	ct, body = multipartBody(t, png, map[string][]string{"text": {"a red square left of a blue circle"}, "top_regions": {"2"}})
	rec = do(t, h, http.MethodPost, "/v1/align", ct, body)
	var al api.AlignResponse
	json.Unmarshal(rec.Body.Bytes(), &al)
	if rec.Code != 200 || len(al.Regions) != mp.Image.Regions || len(al.Plan[0]) != len(al.Regions) || len(al.Regions[0].Labels) == 0 {
		t.Fatalf("align: %d regions %d, plan cols %d", rec.Code, len(al.Regions), len(al.Plan[0]))
	}
}

// TestEXIFOrientation: a JPEG whose EXIF says "rotate 90° clockwise" is detected upright:
// its reported size is swapped.
func TestEXIFOrientation(t *testing.T) {
	_, h := newServer(t)
	for _, c := range []struct {
		orientation uint16
		w, h        int
	}{{1, 200, 120}, {6, 120, 200}, {8, 120, 200}, {3, 200, 120}} {
		jpg := exifJPEG(t, 200, 120, c.orientation)
		rec := postJSON(t, h, "/v1/regions", map[string]any{"image": map[string]string{"data": base64.StdEncoding.EncodeToString(jpg)}})
		var resp api.RegionsResponse
		json.Unmarshal(rec.Body.Bytes(), &resp)
		if rec.Code != 200 || resp.Image.Format != "jpeg" || resp.Image.Width != c.w || resp.Image.Height != c.h {
			t.Errorf("orientation %d: %d %+v, want %dx%d", c.orientation, rec.Code, resp.Image, c.w, c.h)
		}
		for _, r := range resp.Regions {
			if r.Box[2] > float32(c.w) || r.Box[3] > float32(c.h) {
				t.Errorf("orientation %d: box %v outside %dx%d", c.orientation, r.Box, c.w, c.h)
			}
		}
	}
}

func TestImageErrors(t *testing.T) {
	env := testenv.Env(t)
	b, err := pipeline.Load(env, testenv.FixtureBundle(t), pipeline.Options{MaxRegions: 100, CacheBytes: 1 << 20,
		Decode: detectorLimits(20_000, 100*100)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h := api.New(api.Config{MaxBodyBytes: 1 << 20}, b, api.DescribeModel(b, "cpu", "", ""), api.LabelsFor(b), nil).Handler()
	png := fixturePNG(t) // 160×128 = 20480 pixels > 10000
	small := exifJPEG(t, 40, 30, 1)
	b64 := func(raw []byte) map[string]any {
		return map[string]any{"image": map[string]string{"data": base64.StdEncoding.EncodeToString(raw)}, "texts": []string{"a"}}
	}
	tiff := []byte("II*\x00\x08\x00\x00\x00" + strings.Repeat("\x00", 64))
	big := append(append([]byte{}, small...), make([]byte, 30_000)...) // valid JPEG padded past 20000 bytes
	cases := []struct {
		name   string
		body   any
		status int
		code   string
		msg    string
	}{
		{"not an image", b64([]byte("hello, this is text, not pixels")), 400, "invalid_image", "image"},
		{"truncated", b64(small[:len(small)/2]), 400, "invalid_image", "image"},
		{"tiff", b64(tiff), 415, "unsupported_image_format", "image"},
		{"too many pixels", b64(png), 413, "image_too_large", "10000"},
		{"too many bytes", b64(big), 413, "image_too_large", "20000"},
		{"bad base64", map[string]any{"image": map[string]string{"data": "%%%"}, "texts": []string{"a"}}, 400, "invalid_image", "base64"},
		{"empty image", map[string]any{"image": map[string]string{"data": ""}, "texts": []string{"a"}}, 400, "invalid_image", "empty"},
		{"both inputs", map[string]any{"image": map[string]string{"data": "AAAA"}, "regions": fixtureRegions(1), "texts": []string{"a"}}, 400, "invalid_input", "not both"},
	}
	for _, c := range cases {
		rec := postJSON(t, h, "/v1/match", c.body)
		var body api.ErrorBody
		json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != c.status || body.Error.Code != c.code || !strings.Contains(body.Error.Message, c.msg) {
			t.Errorf("%s: got %d %q %q, want %d %q containing %q", c.name, rec.Code, body.Error.Code, body.Error.Message, c.status, c.code, c.msg)
		}
	}
	// Multipart errors.
	ct, body := multipartBody(t, nil, map[string][]string{"text": {"a"}})
	if rec := do(t, h, http.MethodPost, "/v1/match", ct, body); rec.Code != 400 || !strings.Contains(rec.Body.String(), "image") {
		t.Errorf("multipart without image: %d %s", rec.Code, rec.Body)
	}
	ct, body = multipartBody(t, small, map[string][]string{"colour": {"red"}})
	if rec := do(t, h, http.MethodPost, "/v1/match", ct, body); rec.Code != 400 || !strings.Contains(rec.Body.String(), "colour") {
		t.Errorf("multipart unknown field: %d %s", rec.Code, rec.Body)
	}
	ct, body = multipartBody(t, small, map[string][]string{"features": {"maybe"}})
	if rec := do(t, h, http.MethodPost, "/v1/regions", ct, body); rec.Code != 400 || !strings.Contains(rec.Body.String(), "features") {
		t.Errorf("multipart bad bool: %d %s", rec.Code, rec.Body)
	}
	// The model answers fine after all of this.
	if rec := postJSON(t, h, "/v1/match", b64(small)); rec.Code != 200 {
		t.Errorf("valid image after errors: %d %s", rec.Code, rec.Body)
	}
}

func detectorLimits(bytes, pixels int64) detector.DecodeLimits {
	return detector.DecodeLimits{MaxBytes: bytes, MaxPixels: pixels}
}
