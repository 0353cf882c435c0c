package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"syscall"
)

// Error is a non-2xx answer of the agent. The server builds them for the
// client's mistakes; the client returns them so the API can map Status to its
// own answer with errors.As.
type Error struct {
	Status  int    // HTTP status
	Code    string // one of the Code* constants
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("agent: %d %s: %s", e.Status, e.Code, e.Message)
}

func errBadRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

func errUnprocessable(format string, args ...any) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: CodeUnprocessable, Message: fmt.Sprintf(format, args...)}
}

// toError maps any error the handlers meet to the answer the caller gets:
// typed agent errors pass through, file system errors map by errno, and the
// rest is internal.
func toError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: fmt.Sprintf("body over the limit of %d bytes", mbe.Limit)}
	}
	msg := err.Error()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: msg}
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EPERM):
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: msg}
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: msg}
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENOTEMPTY),
		errors.Is(err, fs.ErrExist), errors.Is(err, syscall.EBUSY):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: msg}
	case errors.Is(err, syscall.ENAMETOOLONG), errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ELOOP):
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: msg}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: msg}
}
