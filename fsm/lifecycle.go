package fsm

import (
	"maps"
	"time"
)

// One lifecycle for every sandbox (issue 14): a sandbox from the pool and
// one behind a session pause, resume and take a new lifetime alike. A
// session is a named view over its sandbox, so these commands move a
// session's state with its sandbox's.

// Command types of the lifecycle commands.
const (
	TypeSandboxSetTimeout CommandType = 18
	TypeSandboxPause      CommandType = 19
	TypeSandboxResume     CommandType = 20
)

// SandboxSetTimeout gives a running sandbox a new lifetime counted from
// now: Lifetime 0 removes the hard end (the API allows it only where the
// operator does). Owner must match unless Admin is set.
type SandboxSetTimeout struct {
	Header
	ID       string        `json:"id"`
	Owner    string        `json:"owner"`
	Admin    bool          `json:"admin,omitempty"`
	Lifetime time.Duration `json:"lifetime"`
}

// SandboxPause freezes a sandbox, whichever way it was obtained.
type SandboxPause struct {
	Header
	ID    string `json:"id"`
	Owner string `json:"owner"`
	Admin bool   `json:"admin,omitempty"`
}

// SandboxResume brings a paused sandbox back; it is resuming until the
// reconciler records it running (SandboxResumed).
type SandboxResume struct {
	Header
	ID    string `json:"id"`
	Owner string `json:"owner"`
	Admin bool   `json:"admin,omitempty"`
}

func (*SandboxSetTimeout) Type() CommandType { return TypeSandboxSetTimeout }
func (*SandboxPause) Type() CommandType      { return TypeSandboxPause }
func (*SandboxResume) Type() CommandType     { return TypeSandboxResume }

// ownedSandbox returns the sandbox id if owner may act on it; another
// owner's sandbox is not found, exactly like an unknown one.
func ownedSandbox(t *tx, id, owner string, admin bool) (*Sandbox, *Error) {
	s := t.sandbox(id)
	if s == nil || s.Owner == "" || !(admin || (owner != "" && owner == s.Owner)) {
		return nil, errorf(CodeNotFound, "sandbox %s not found", id)
	}
	return s, nil
}

func applySandboxSetTimeout(t *tx, c *SandboxSetTimeout) *Response {
	old, err := ownedSandbox(t, c.ID, c.Owner, c.Admin)
	if err != nil {
		return fail(err)
	}
	switch {
	case c.Lifetime < 0:
		return fail(errorf(CodeInvalid, "lifetime must not be negative"))
	case !old.Live():
		return fail(errorf(CodeConflict, "sandbox %s is %s", c.ID, old.State))
	}
	s := old.Copy()
	s.ExpiresAt = time.Time{}
	if c.Lifetime > 0 {
		s.ExpiresAt = c.Now.Add(c.Lifetime)
	}
	s.LastActiveAt = c.Now
	t.putSandbox(s)
	return &Response{Sandbox: s.Copy()}
}

func applySandboxPause(t *tx, c *SandboxPause) *Response {
	old, err := ownedSandbox(t, c.ID, c.Owner, c.Admin)
	if err != nil {
		return fail(err)
	}
	if sess := t.session(old.SessionID); sess != nil {
		return applySessionPause(t, &SessionPause{Header: c.Header, ID: sess.ID, Owner: c.Owner, Admin: c.Admin})
	}
	switch old.State {
	case StatePaused:
		return &Response{Sandbox: old.Copy()}
	case StateActive:
	default:
		return fail(errorf(CodeConflict, "sandbox %s is %s, not active", c.ID, old.State))
	}
	s := old.Copy()
	s.State = StatePaused
	s.LastActiveAt = c.Now
	t.putSandbox(s)
	return &Response{Sandbox: s.Copy()}
}

func applySandboxResume(t *tx, c *SandboxResume) *Response {
	old, err := ownedSandbox(t, c.ID, c.Owner, c.Admin)
	if err != nil {
		return fail(err)
	}
	if sess := t.session(old.SessionID); sess != nil {
		return applySessionResume(t, &SessionResume{Header: c.Header, ID: sess.ID, Owner: c.Owner, Admin: c.Admin})
	}
	switch old.State {
	case StateActive, StateResuming:
		return &Response{Sandbox: old.Copy()}
	case StatePaused:
	default:
		return fail(errorf(CodeConflict, "sandbox %s is %s, not paused", c.ID, old.State))
	}
	s := old.Copy()
	s.State = StateResuming
	s.LastActiveAt = c.Now
	t.putSandbox(s)
	return &Response{Sandbox: s.Copy()}
}

// cloneStrings copies a string map; nil stays nil.
func cloneStrings(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	return maps.Clone(m)
}
