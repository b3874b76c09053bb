package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/pipeline"
)

// requestError is a problem with the HTTP request itself, with its status.
type requestError struct {
	status  int
	code    string
	message string
}

func (e *requestError) Error() string { return e.message }

func badRequest(code, format string, a ...any) error {
	return &requestError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, a...)}
}

// statusOf is the one place that maps errors to HTTP statuses and client-safe bodies.
// Internal errors are logged in full and answered with a generic message.
func statusOf(err error, log *slog.Logger) (int, ErrorDetail) {
	var re *requestError
	var ie *pipeline.InputError
	switch {
	case errors.As(err, &re):
		return re.status, ErrorDetail{Code: re.code, Message: re.message}
	case errors.As(err, &ie) && errors.Is(err, detector.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, ErrorDetail{Code: ie.Code, Message: ie.Message}
	case errors.As(err, &ie) && errors.Is(err, detector.ErrUnsupportedFormat):
		return http.StatusUnsupportedMediaType, ErrorDetail{Code: ie.Code, Message: ie.Message}
	case errors.As(err, &ie):
		return http.StatusBadRequest, ErrorDetail{Code: ie.Code, Message: ie.Message}
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, ErrorDetail{Code: "timeout", Message: "the request took too long"}
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer (499 is nginx's "client closed request").
		return 499, ErrorDetail{Code: "canceled", Message: "request canceled"}
	}
	log.Error("internal error", "err", err)
	return http.StatusInternalServerError, ErrorDetail{Code: "internal", Message: "internal error"}
}
