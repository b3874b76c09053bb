package api

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/pipeline"
)

// The downstream-task endpoints: each needs a model fine-tuned for its task (GET /v1/models
// lists each model's task); another model answers 400 task_unavailable.

// VQARequest is POST /v1/vqa.
type VQARequest struct {
	Image    *ImageJSON   `json:"image,omitempty"`
	Regions  *RegionsJSON `json:"regions,omitempty"`
	Question string       `json:"question"`
	TopK     int          `json:"top_k,omitempty"` // answers returned, 1–50; default 5
	Model    string       `json:"model,omitempty"`
}

// TaskTextJSON is the request's text as the model read it.
type TaskTextJSON struct {
	Text         string        `json:"text"`
	Tokens       int           `json:"tokens"`
	Truncated    bool          `json:"truncated"`
	UnknownWords []UnknownWord `json:"unknown_words,omitempty"` // words outside the vocabulary
}

func newTaskText(t pipeline.TaskText) TaskTextJSON {
	return TaskTextJSON{Text: t.Text, Tokens: t.Tokens, Truncated: t.Truncated, UnknownWords: wireUnknownWords(t.UnknownWords)}
}

// AnswerJSON is one VQA answer: score = σ(logit), as the head was trained with binary
// cross-entropy per answer (scores of different answers do not sum to 1).
type AnswerJSON struct {
	Answer string  `json:"answer"`
	Score  float32 `json:"score"`
}

// VQAResponse answers POST /v1/vqa.
type VQAResponse struct {
	Question TaskTextJSON `json:"question"`
	Answers  []AnswerJSON `json:"answers"`
	Image    *ImageInfo   `json:"image,omitempty"`
	Model    string       `json:"model"`
	Timings  Timings      `json:"timings_ms"`
}

// EntailmentRequest is POST /v1/entailment.
type EntailmentRequest struct {
	Image      *ImageJSON   `json:"image,omitempty"`
	Regions    *RegionsJSON `json:"regions,omitempty"`
	Hypothesis string       `json:"hypothesis"`
	Model      string       `json:"model,omitempty"`
}

// EntailmentResponse answers POST /v1/entailment: the most probable class and the softmax
// over the three.
type EntailmentResponse struct {
	Hypothesis    TaskTextJSON       `json:"hypothesis"`
	Label         string             `json:"label"`
	Probabilities map[string]float32 `json:"probabilities"`
	Image         *ImageInfo         `json:"image,omitempty"`
	Model         string             `json:"model"`
	Timings       Timings            `json:"timings_ms"`
}

// NLVR2Request is POST /v1/nlvr2: a statement about two images, left then right.
type NLVR2Request struct {
	Images    []ImageJSON   `json:"images,omitempty"`
	Regions   []RegionsJSON `json:"regions,omitempty"`
	Statement string        `json:"statement"`
	Model     string        `json:"model,omitempty"`
}

// NLVR2Response answers POST /v1/nlvr2.
type NLVR2Response struct {
	Statement       TaskTextJSON `json:"statement"`
	TrueProbability float32      `json:"true_probability"`
	Label           bool         `json:"label"`
	Layout          string       `json:"layout"` // the official model: paired, triplet or paired_attn
	Images          []*ImageInfo `json:"images,omitempty"`
	Model           string       `json:"model"`
	Timings         Timings      `json:"timings_ms"`
}

// ReferRequest is POST /v1/refer.
type ReferRequest struct {
	Image      *ImageJSON   `json:"image,omitempty"`
	Regions    *RegionsJSON `json:"regions,omitempty"`
	Expression string       `json:"expression"`
	TopK       int          `json:"top_k,omitempty"` // regions returned, 1–50; default 5
	Model      string       `json:"model,omitempty"`
}

// ReferredRegionJSON is one region ranked for the expression.
type ReferredRegionJSON struct {
	Index       int          `json:"index"`
	Box         detector.Box `json:"box"`
	Score       float32      `json:"score"`       // the re_output logit
	Probability float32      `json:"probability"` // softmax over the image's regions
}

// ReferResponse answers POST /v1/refer: the regions best first.
type ReferResponse struct {
	Expression TaskTextJSON         `json:"expression"`
	Regions    []ReferredRegionJSON `json:"regions"`
	Image      *ImageInfo           `json:"image,omitempty"`
	Model      string               `json:"model"`
	Timings    Timings              `json:"timings_ms"`
}

func (s *Server) vqa(c *gin.Context) (any, error) {
	var body VQARequest
	return s.serveModel(c, &body, func() (request, error) {
		in, err := toInput(body.Image, body.Regions, false)
		return request{input: in, text: body.Question, topK: body.TopK, model: body.Model}, err
	}, map[string]bool{"question": true, "top_k": true}, func(ctx context.Context, m *served, req request) (any, pipeline.Timing, *float64, error) {
		top, err := fieldTopK.resolve(req.topK)
		if err != nil {
			return nil, pipeline.Timing{}, nil, err
		}
		out, err := m.model.VQA(ctx, req.input, req.text, top)
		if err != nil {
			return nil, pipeline.Timing{}, nil, s.withTaskHint(err, pipeline.TaskVQA)
		}
		resp := NewVQAResponse(out, m.info.Name)
		return &resp, out.Timing, &resp.Timings.Total, nil
	})
}

func (s *Server) entailment(c *gin.Context) (any, error) {
	var body EntailmentRequest
	return s.serveModel(c, &body, func() (request, error) {
		in, err := toInput(body.Image, body.Regions, false)
		return request{input: in, text: body.Hypothesis, model: body.Model}, err
	}, map[string]bool{"hypothesis": true}, func(ctx context.Context, m *served, req request) (any, pipeline.Timing, *float64, error) {
		out, err := m.model.Entail(ctx, req.input, req.text)
		if err != nil {
			return nil, pipeline.Timing{}, nil, s.withTaskHint(err, pipeline.TaskVE)
		}
		resp := NewEntailmentResponse(out, m.info.Name)
		return &resp, out.Timing, &resp.Timings.Total, nil
	})
}

func (s *Server) nlvr2(c *gin.Context) (any, error) {
	var body NLVR2Request
	return s.serveModel(c, &body, func() (request, error) {
		req := request{text: body.Statement, model: body.Model}
		switch {
		case body.Images != nil && body.Regions != nil:
			return req, badRequest("invalid_input", "give either images or regions, not both")
		case body.Images != nil:
			for i := range body.Images {
				in, err := toInput(&body.Images[i], nil, true)
				if err != nil {
					return req, err
				}
				req.images = append(req.images, in.Image)
			}
		case body.Regions != nil:
			for i := range body.Regions {
				in, err := toInput(nil, &body.Regions[i], false)
				if err != nil {
					return req, err
				}
				req.pair = append(req.pair, in)
			}
		default:
			return req, badRequest("missing_input", "give images (two, base64: left, right) or regions (two sets of regions with features)")
		}
		return req, nil
	}, map[string]bool{"statement": true, "images": true}, func(ctx context.Context, m *served, req request) (any, pipeline.Timing, *float64, error) {
		for _, img := range req.images {
			req.pair = append(req.pair, pipeline.Input{Image: img})
		}
		if len(req.pair) != 2 {
			field := "images"
			if len(req.images) == 0 {
				field = "regions"
			}
			return nil, pipeline.Timing{}, nil, badRequest("invalid_pair", "%s: NLVR2 takes two images (left, right), got %d", field, len(req.pair))
		}
		out, err := m.model.NLVR2(ctx, [2]pipeline.Input{req.pair[0], req.pair[1]}, req.text)
		if err != nil {
			return nil, pipeline.Timing{}, nil, s.withTaskHint(err, pipeline.TaskNLVR2)
		}
		resp := NewNLVR2Response(out, m.info.Name)
		return &resp, out.Timing, &resp.Timings.Total, nil
	})
}

func (s *Server) refer(c *gin.Context) (any, error) {
	var body ReferRequest
	return s.serveModel(c, &body, func() (request, error) {
		in, err := toInput(body.Image, body.Regions, false)
		return request{input: in, text: body.Expression, topK: body.TopK, model: body.Model}, err
	}, map[string]bool{"expression": true, "top_k": true}, func(ctx context.Context, m *served, req request) (any, pipeline.Timing, *float64, error) {
		top, err := fieldTopK.resolve(req.topK)
		if err != nil {
			return nil, pipeline.Timing{}, nil, err
		}
		out, err := m.model.Refer(ctx, req.input, req.text, top)
		if err != nil {
			return nil, pipeline.Timing{}, nil, s.withTaskHint(err, pipeline.TaskRE)
		}
		resp := NewReferResponse(out, m.info.Name)
		return &resp, out.Timing, &resp.Timings.Total, nil
	})
}

// NewVQAResponse converts a VQA answer to the wire form (Timings.Total left to the caller).
func NewVQAResponse(out *pipeline.VQAOutput, model string) VQAResponse {
	resp := VQAResponse{Question: newTaskText(out.Question), Image: newImageInfo(out.Image, out.Timing.CacheHit),
		Model: model, Timings: newTimings(out.Timing), Answers: []AnswerJSON{}}
	for _, a := range out.Answers {
		resp.Answers = append(resp.Answers, AnswerJSON{Answer: a.Answer, Score: a.Score})
	}
	return resp
}

// NewEntailmentResponse converts an entailment answer to the wire form.
func NewEntailmentResponse(out *pipeline.EntailmentOutput, model string) EntailmentResponse {
	resp := EntailmentResponse{Hypothesis: newTaskText(out.Hypothesis), Label: out.Label, Probabilities: map[string]float32{},
		Image: newImageInfo(out.Image, out.Timing.CacheHit), Model: model, Timings: newTimings(out.Timing)}
	for _, p := range out.Probabilities {
		resp.Probabilities[p.Label] = p.Probability
	}
	return resp
}

// NewNLVR2Response converts an NLVR2 answer to the wire form.
func NewNLVR2Response(out *pipeline.NLVR2Output, model string) NLVR2Response {
	resp := NLVR2Response{Statement: newTaskText(out.Statement), TrueProbability: out.TrueProbability, Label: out.True,
		Layout: out.Layout, Model: model, Timings: newTimings(out.Timing)}
	if out.Images[0] != nil && out.Images[1] != nil {
		for k, d := range out.Images {
			resp.Images = append(resp.Images, newImageInfo(d, out.CacheHits[k]))
		}
	}
	return resp
}

// NewReferResponse converts a referring-expression answer to the wire form.
func NewReferResponse(out *pipeline.ReferOutput, model string) ReferResponse {
	resp := ReferResponse{Expression: newTaskText(out.Expression), Image: newImageInfo(out.Image, out.Timing.CacheHit),
		Model: model, Timings: newTimings(out.Timing), Regions: []ReferredRegionJSON{}}
	for _, r := range out.Regions {
		resp.Regions = append(resp.Regions, ReferredRegionJSON{Index: r.Index, Box: r.Box, Score: r.Score, Probability: r.Probability})
	}
	return resp
}

// withTaskHint adds to a task_unavailable error the served models fine-tuned for task, which
// the request can name in its "model" field.
func (s *Server) withTaskHint(err error, task string) error {
	var ie *pipeline.InputError
	if !errors.As(err, &ie) || ie.Code != pipeline.CodeTaskUnavailable {
		return err
	}
	var names []string
	for _, m := range s.models {
		if m.info.Task.Name == task {
			names = append(names, strconv.Quote(m.info.Name))
		}
	}
	hint := "; no model served here is fine-tuned for it"
	if len(names) > 0 {
		hint = fmt.Sprintf("; served models that can: %s (send \"model\": %s)", strings.Join(names, ", "), names[0])
	}
	return &pipeline.InputError{Code: ie.Code, Message: ie.Message + hint, Err: ie.Err}
}
