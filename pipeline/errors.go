package pipeline

import (
	"errors"
	"fmt"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/textproc"
)

// InputError is a problem with the caller's input. Code is stable and machine-readable;
// the message names the field and the problem and is safe to show to clients.
type InputError struct {
	Code    string
	Message string
	Err     error // the underlying cause, if any
}

func (e *InputError) Error() string { return e.Message }
func (e *InputError) Unwrap() error { return e.Err }

// Input error codes.
const (
	CodeInvalidRegions   = "invalid_regions"
	CodeEmptyText        = "empty_text"
	CodeInvalidText      = "invalid_text"
	CodeTooManyTexts     = "too_many_texts"
	CodeNoTexts          = "no_texts"
	CodeUnsupported      = "unsupported"
	CodeInvalidImage     = "invalid_image"
	CodeUnsupportedImage = "unsupported_image_format"
	CodeImageTooLarge    = "image_too_large"
	CodeImageTooSmall    = "image_too_small" // a resized side below the detector's min_input_side
	CodeInvalidInput     = "invalid_input"
	CodeNoRegions        = "no_regions"
	CodeTaskUnavailable  = "task_unavailable" // the bundle has no head for what was asked
)

// imageCode names an image decoding failure; the API maps the wrapped detector error to
// 413, 415 or 400.
func imageCode(err error) string {
	switch {
	case errors.Is(err, detector.ErrTooLarge):
		return CodeImageTooLarge
	case errors.Is(err, detector.ErrUnsupportedFormat):
		return CodeUnsupportedImage
	case errors.Is(err, detector.ErrImageTooSmall):
		return CodeImageTooSmall
	}
	return CodeInvalidImage
}

func inputErr(code, format string, a ...any) *InputError {
	return &InputError{Code: code, Message: fmt.Sprintf(format, a...)}
}

// classify turns the input errors of the packages below into InputErrors, prefixing the field they concern.
func classify(field string, err error) error {
	prefix := ""
	if field != "" {
		prefix = field + ": "
	}
	switch {
	case errors.Is(err, detector.ErrInvalidRegions):
		return &InputError{Code: CodeInvalidRegions, Message: prefix + err.Error(), Err: err}
	case errors.Is(err, detector.ErrTooLarge), errors.Is(err, detector.ErrUnsupportedFormat), errors.Is(err, detector.ErrNotImage),
		errors.Is(err, detector.ErrImageTooSmall):
		return &InputError{Code: imageCode(err), Message: prefix + err.Error(), Err: err}
	case errors.Is(err, detector.ErrNoProposals):
		return &InputError{Code: CodeNoRegions, Message: prefix + err.Error(), Err: err}
	case errors.Is(err, textproc.ErrEmptyText):
		return &InputError{Code: CodeEmptyText, Message: prefix + "text is empty", Err: err}
	case errors.Is(err, textproc.ErrTokenize):
		return &InputError{Code: CodeInvalidText, Message: prefix + err.Error(), Err: err}
	}
	return err
}
