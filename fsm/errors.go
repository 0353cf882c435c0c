package fsm

import "fmt"

// Code classifies an FSM business error so that callers on any node (the error
// crosses the wire when a write is forwarded to the leader) can branch on it.
type Code string

// Error codes returned by Apply.
const (
	CodeNotFound      Code = "not_found"      // no such sandbox or session (or not the caller's)
	CodeConflict      Code = "conflict"       // invalid lifecycle transition
	CodeInvalid       Code = "invalid"        // the command is well-formed but its values are not
	CodePoolExhausted Code = "pool_exhausted" // POOL_MAX_SIZE reached
	CodeExists        Code = "exists"         // the id is already taken
	CodeForbidden     Code = "forbidden"      // the owner lacks a grant the command needs (egress)
	// CodeQuotaExceeded: the owner is at a quota limit; Limit names it and
	// RetryAfter says when trying again may succeed.
	CodeQuotaExceeded Code = "quota_exceeded"
)

// Error is a typed business error from Apply. It is returned, never panicked,
// and state is unchanged when it is returned.
type Error struct {
	Code Code   `json:"code"`
	Msg  string `json:"message"`
	// Limit and RetryAfter (seconds) are set with CodeQuotaExceeded.
	Limit      string `json:"limit,omitempty"`
	RetryAfter int    `json:"retry_after,omitempty"`
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return string(e.Code)
	}
	return e.Msg
}

// Is makes errors.Is(err, fsm.ErrNotFound) match any *Error with that code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Msg == ""
}

// Sentinels for errors.Is; they carry only a code.
var (
	ErrNotFound      = &Error{Code: CodeNotFound}
	ErrConflict      = &Error{Code: CodeConflict}
	ErrInvalid       = &Error{Code: CodeInvalid}
	ErrPoolExhausted = &Error{Code: CodePoolExhausted}
	ErrExists        = &Error{Code: CodeExists}
	ErrForbidden     = &Error{Code: CodeForbidden}
	ErrQuotaExceeded = &Error{Code: CodeQuotaExceeded}
)

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// retryable reports a refusal that says "not now" rather than "no": a
// quota, a full pool, a missing egress grant. It is not remembered under
// the command's request id, so a client retrying with the same
// Idempotency-Key is judged again, not told the old answer for the
// retention window. State was unchanged, so nothing is applied twice.
func (e *Error) retryable() bool {
	if e == nil {
		return false
	}
	switch e.Code {
	case CodeQuotaExceeded, CodePoolExhausted, CodeForbidden:
		return true
	}
	return false
}
