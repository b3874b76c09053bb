package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/uniter-serve/uniter/pipeline"
)

// ImageJSON is an image inside a JSON body: its encoded bytes (JPEG, PNG, GIF, WebP, BMP) in
// standard base64.
type ImageJSON struct {
	Data string `json:"data"`
}

// request is what an endpoint reads from either body form (JSON or multipart/form-data).
type request struct {
	input        pipeline.Input
	texts        []string
	text         string
	topRegions   int
	topLabels    int
	features     bool
	featureDType string // /v1/regions: the features' encoding, "" for the default
	topK         int
	withoutImage bool
	attention    bool
	model        string           // the served model named, "" for the default
	images       [][]byte         // every image file, in order (multipart: input.Image is the first)
	pair         []pipeline.Input // NLVR2's two images
}

// toInput turns the JSON body's image or regions into a model input (exactly one is needed).
func toInput(img *ImageJSON, regions *RegionsJSON, imageOnly bool) (pipeline.Input, error) {
	switch {
	case img != nil && regions != nil:
		return pipeline.Input{}, badRequest("invalid_input", "give either image or regions, not both")
	case img != nil:
		if img.Data == "" {
			return pipeline.Input{}, badRequest("invalid_image", "image.data: empty; send the image bytes in base64")
		}
		raw, err := base64.StdEncoding.DecodeString(img.Data)
		if err != nil {
			return pipeline.Input{}, badRequest("invalid_image", "image.data: not valid base64: %v", err)
		}
		return pipeline.Input{Image: raw}, nil
	case imageOnly:
		return pipeline.Input{}, badRequest("missing_image", "image: field is required")
	case regions == nil:
		return pipeline.Input{}, badRequest("missing_input", "give an image (image.data, base64) or regions with features")
	}
	r, err := regions.toRegions()
	if err != nil {
		return pipeline.Input{}, err
	}
	return pipeline.Input{Regions: &r}, nil
}

// readRequest parses the body of an image endpoint. jsonBody is the endpoint's JSON type;
// fields lists the multipart fields it accepts besides the "image" file and "model";
// fields["images"] accepts several image files (NLVR2's pair).
func (s *Server) readRequest(c *gin.Context, jsonBody any, fromJSON func() (request, error), fields map[string]bool) (request, error) {
	if c.ContentType() != "multipart/form-data" {
		if err := s.decodeJSON(c, jsonBody, true); err != nil {
			return request{}, err
		}
		return fromJSON()
	}
	return s.readMultipart(c, fields)
}

// eachPart calls fn with each part of a multipart/form-data body, by field name, in order;
// it stops at fn's first error. The body's size limit holds (413).
func eachPart(c *gin.Context, fn func(name string, raw []byte) error) error {
	mr, err := c.Request.MultipartReader()
	if err != nil {
		return badRequest("malformed_multipart", "multipart body: %v", err)
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return multipartErr(err)
		}
		raw, err := io.ReadAll(part)
		if err != nil {
			return multipartErr(err)
		}
		if err := fn(part.FormName(), raw); err != nil {
			return err
		}
	}
}

// imagePart checks an "image" file field: one only, not empty.
func imagePart(have, raw []byte) error {
	if have != nil {
		return badRequest("invalid_input", "multipart: more than one image field")
	}
	if len(raw) == 0 {
		return badRequest("invalid_image", "image: the file is empty")
	}
	return nil
}

func (s *Server) readMultipart(c *gin.Context, fields map[string]bool) (request, error) {
	var req request
	err := eachPart(c, func(name string, raw []byte) error {
		switch {
		case name == "image":
			have := req.input.Image
			if fields["images"] {
				have = nil // NLVR2's pair: several image files
			}
			if err := imagePart(have, raw); err != nil {
				return err
			}
			if req.input.Image == nil {
				req.input.Image = raw
			}
			req.images = append(req.images, raw)
		case name == "model":
			req.model = string(raw)
		case !fields[name]:
			return badRequest("unknown_field", "multipart: unknown field %s", quoteInput(name))
		default:
			return req.setField(name, string(raw))
		}
		return nil
	})
	if err != nil {
		return req, err
	}
	if req.input.Image == nil {
		return req, badRequest("missing_image", "multipart: an image file field named \"image\" is required")
	}
	return req, nil
}

func multipartErr(err error) error {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return tooLarge(maxErr.Limit)
	}
	return badRequest("malformed_multipart", "multipart body: %v", err)
}

// formBool reads a multipart boolean field (invalid_<name> when it is not one).
func formBool(name, value string) (bool, error) {
	v, err := strconv.ParseBool(strings.TrimSpace(value))
	if err != nil {
		return false, badRequest("invalid_"+name, "%s: %s is not a boolean", name, quoteInput(value))
	}
	return v, nil
}

// formInt reads a multipart integer field (invalid_<name> when it is not one).
func formInt(name, value string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(value))
	if err != nil {
		return 0, badRequest("invalid_"+name, "%s: %s is not an integer", name, quoteInput(value))
	}
	return n, nil
}

func (r *request) setField(name, value string) error {
	var err error
	switch name {
	case "text", "question", "hypothesis", "expression", "statement":
		r.texts = append(r.texts, value)
		r.text = value
	case "top_regions":
		r.topRegions, err = fieldTopRegions.parse(value)
	case "top_labels":
		r.topLabels, err = fieldTopLabels.parse(value)
	case "top_k":
		r.topK, err = fieldTopK.parse(value)
	case "without_image":
		r.withoutImage, err = formBool(name, value)
	case "attention":
		r.attention, err = formBool(name, value)
	case "features":
		r.features, err = formBool(name, value)
	case "feature_dtype":
		r.featureDType = strings.TrimSpace(value)
	default:
		err = fmt.Errorf("unhandled field %q", name)
	}
	return err
}
