package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/hasched/hasched/scheduler/model"
)

// ErrorBody is the JSON of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	// Field names the request field that was refused, if one was.
	Field string `json:"field,omitempty"`
}

// retryAfterNoLeader is what a 503 tells a client to wait: an election
// takes about a session TTL at worst, but usually much less.
const retryAfterNoLeader = 2 * time.Second

// rateLimitError refuses a request made too soon after the last one.
type rateLimitError struct {
	msg        string
	retryAfter time.Duration
}

func (e *rateLimitError) Error() string { return e.msg }

// unavailableError is a 503 the API decides on itself.
type unavailableError struct{ msg string }

func (e *unavailableError) Error() string { return e.msg }

// badRequestError is a request the API could not read.
type badRequestError struct {
	field string
	err   error
}

func (e *badRequestError) Error() string { return e.err.Error() }
func (e *badRequestError) Unwrap() error { return e.err }

// writeError answers with the status err maps to. Errors of the scheduler
// are matched with errors.Is; anything unknown is a 500.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	// An error may quote a URL the client sent, credentials included.
	code, body := http.StatusInternalServerError, ErrorBody{Error: redactText(err.Error())}
	var (
		verr     *model.ValidationError
		bad      *badRequestError
		tooLarge *http.MaxBytesError
		limited  *rateLimitError
		unavail  *unavailableError
	)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		code = http.StatusUnauthorized
		// A script (the console) asks for no challenge: on a Basic one
		// the browser would pop up its own password dialog over the
		// page's login form.
		if r.Header.Get(HeaderRequestedWith) == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="hasched", charset="UTF-8"`)
		}
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrCrossOrigin):
		code = http.StatusForbidden
	case errors.Is(err, ErrUnsupportedMediaType):
		code = http.StatusUnsupportedMediaType
	case errors.As(err, &tooLarge):
		code = http.StatusRequestEntityTooLarge
		body = ErrorBody{Error: fmt.Sprintf("request body is larger than %d bytes", tooLarge.Limit), Field: "body"}
	case errors.As(err, &verr):
		code, body.Field = http.StatusBadRequest, verr.Field
	case errors.As(err, &bad):
		code, body.Field = http.StatusBadRequest, bad.field
	case errors.Is(err, model.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, model.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrHistoryOff):
		code = http.StatusNotImplemented
	case errors.Is(err, model.ErrExists), errors.Is(err, model.ErrConflict):
		code = http.StatusConflict
	case errors.As(err, &limited):
		code = http.StatusTooManyRequests
		setRetryAfter(w, limited.retryAfter)
	case errors.Is(err, model.ErrNoLeader), errors.Is(err, model.ErrNotLeader),
		errors.Is(err, model.ErrUnavailable), errors.Is(err, ErrInsecureForward), errors.As(err, &unavail):
		// ErrNotLeader reaches here only from a read, which no Service
		// should refuse that way; the client can still retry.
		code = http.StatusServiceUnavailable
		setRetryAfter(w, retryAfterNoLeader)
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	}
	switch {
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		s.log.Debug("client went away", "method", r.Method, "path", r.URL.Path, "error", body.Error)
	case code >= 500:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", code, "error", body.Error)
	}
	writeJSON(w, code, body)
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	secs := int(math.Ceil(d.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	if l, ok := v.(jsonList); ok {
		writeJSONList(w, code, l)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorBody{Error: "encode response: " + err.Error()})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// readBody reads a whole request body of at most limit bytes; a larger one
// fails with *http.MaxBytesError.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, err
		}
		return nil, &badRequestError{field: "body", err: fmt.Errorf("read request body: %w", err)}
	}
	return b, nil
}
