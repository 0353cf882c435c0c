package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// Error codes sent in the "code" field of every error body (api/DESIGN.md).
const (
	codeBadRequest    = "bad_request"
	codeUnauthorized  = "unauthorized"
	codeForbidden     = "forbidden"
	codeNotFound      = "not_found"
	codeConflict      = "conflict"
	codeTooLarge      = "too_large"
	codeUnprocessable = "unprocessable"
	codeRateLimited   = "rate_limited"
	codeUnavailable   = "unavailable"
	codePoolExhausted = "pool_exhausted"
	codeQuota         = "quota_exceeded"
	codeNotReady      = "not_ready" // catching up at start (DESIGN.md, "Consistency")
	codeInternal      = "internal"
)

// Error is an error with an HTTP status and a machine code. Handlers return
// it (or any error that wraps one) and writeError renders it.
type Error struct {
	Status int
	Code   string
	Msg    string
	// RetryAfter, when set, is sent as the Retry-After header in seconds.
	RetryAfter int
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func errBadRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: codeBadRequest, Msg: fmt.Sprintf(format, args...)}
}

func errUnprocessable(format string, args ...any) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: codeUnprocessable, Msg: fmt.Sprintf(format, args...)}
}

func errUnauthorized(msg string, err error) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: codeUnauthorized, Msg: msg, Err: err}
}

func errNotFound(what string) *Error {
	return &Error{Status: http.StatusNotFound, Code: codeNotFound, Msg: what + " not found"}
}

func errConflict(format string, args ...any) *Error {
	return &Error{Status: http.StatusConflict, Code: codeConflict, Msg: fmt.Sprintf(format, args...)}
}

func errUnavailable(msg string, err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable, Msg: msg, Err: err, RetryAfter: 1}
}

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// classify maps every error the API can meet to status, code and message.
// It is the one place where errors become HTTP answers.
func classify(err error) *Error {
	var apiErr *Error
	var fsmErr *fsm.Error
	var agentErr *agent.Error
	var maxBytes *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &apiErr):
		return apiErr
	case errors.As(err, &maxBytes):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: codeTooLarge,
			Msg: fmt.Sprintf("request body larger than %d bytes", maxBytes.Limit)}
	case errors.As(err, &fsmErr):
		switch fsmErr.Code {
		case fsm.CodeNotFound:
			return &Error{Status: http.StatusNotFound, Code: codeNotFound, Msg: fsmErr.Error()}
		case fsm.CodeConflict, fsm.CodeExists:
			return &Error{Status: http.StatusConflict, Code: codeConflict, Msg: fsmErr.Error()}
		case fsm.CodeInvalid:
			return &Error{Status: http.StatusUnprocessableEntity, Code: codeUnprocessable, Msg: fsmErr.Error()}
		case fsm.CodePoolExhausted:
			return &Error{Status: http.StatusServiceUnavailable, Code: codePoolExhausted, Msg: fsmErr.Error(), RetryAfter: 5}
		case fsm.CodeForbidden:
			return &Error{Status: http.StatusForbidden, Code: codeForbidden, Msg: fsmErr.Error()}
		case fsm.CodeQuotaExceeded:
			return &Error{Status: http.StatusTooManyRequests, Code: codeQuota, Msg: fsmErr.Error(), RetryAfter: max(1, fsmErr.RetryAfter)}
		}
		return &Error{Status: http.StatusInternalServerError, Code: codeInternal, Msg: "internal error", Err: err}
	case errors.As(err, &agentErr):
		// The agent speaks the same codes; keep its status so a write outside
		// /workspace stays a 403 and a missing file a 404.
		status := agentErr.Status
		if status < 400 || status > 599 {
			status = http.StatusBadGateway
		}
		code := agentErr.Code
		if code == "" {
			code = codeInternal
		}
		return &Error{Status: status, Code: code, Msg: agentErr.Message}
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return errBadRequest("malformed JSON body")
	case errors.As(err, &typeErr):
		if typeErr.Field != "" {
			return errBadRequest("field %q must be %s, not %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
		}
		return errBadRequest("body must be a JSON object")
	case errors.Is(err, context.DeadlineExceeded):
		return errUnavailable("timed out", err)
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return &Error{Status: 499, Code: codeUnavailable, Msg: "request canceled"}
	}
	return &Error{Status: http.StatusInternalServerError, Code: codeInternal, Msg: "internal error", Err: err}
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "float32", "float64":
		return "a number"
	}
	return "an integer"
}

// writeError renders err as {"error","code"} with its status, and logs
// server-side failures (5xx) with the request's logger.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err)
	if e.Status >= 500 {
		logFrom(r.Context()).Error("request failed", "status", e.Status, "code", e.Code, "err", err)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	msg := e.Msg
	if e.Status == http.StatusServiceUnavailable && e.Err != nil && e.Code == codeUnavailable {
		// Say why: "sandbox placement failed: image not found" helps the user.
		msg = e.Error()
	}
	writeJSON(w, e.Status, errorBody{Error: msg, Code: e.Code})
}

// writeJSON writes v with status. Encoding errors can only come from a
// broken connection at this point, so they are dropped.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// logFrom returns the request's logger (with its request id), or the default.
func logFrom(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

type loggerKey struct{}
