package fsm

import "time"

func applySessionCreate(t *tx, c *SessionCreate) *Response {
	switch {
	case c.ID == "":
		return fail(errorf(CodeInvalid, "session id is required"))
	case c.Owner == "":
		return fail(errorf(CodeInvalid, "owner is required"))
	case c.Image == "":
		return fail(errorf(CodeInvalid, "image is required"))
	case t.session(c.ID) != nil:
		return fail(errorf(CodeExists, "session %s already exists", c.ID))
	}
	pool := t.pool()
	res := Resources{CPUCount: c.CPUCount, MemoryMB: c.MemoryMB, DiskMB: pool.Resources.DiskMB}
	var allow []string
	if c.Network {
		var err *Error
		if allow, err = t.admitEgress(c.Owner, c.Role); err != nil {
			return fail(err)
		}
	}
	if err := t.admitCreate(c.Owner, res, true); err != nil {
		return fail(err)
	}

	var s *Sandbox
	var idle *Sandbox
	if !c.Network { // egress sandboxes are never pooled: each gets its owner's grant
		idle = t.pickIdle(c.Image, false, &res)
	}
	if idle != nil {
		s = idle.Copy()
		s.State = StateActive
		s.AcquiredAt = c.Now
		s.LastActiveAt = c.Now
	} else {
		switch {
		case t.poolFull():
			return fail(errorf(CodePoolExhausted, "no idle sandbox and the pool is at its maximum of %d live sandboxes", pool.MaxSize))
		case c.SandboxID == "":
			return fail(errorf(CodeInvalid, "sandbox_id is required to create a sandbox on demand"))
		case t.sandbox(c.SandboxID) != nil:
			return fail(errorf(CodeExists, "sandbox %s already exists", c.SandboxID))
		}
		s = &Sandbox{ID: c.SandboxID, Image: c.Image, Network: c.Network, EgressAllow: allow, State: StatePending, CreatedAt: c.Now}
	}
	s.Resources = res
	s.Owner = c.Owner
	s.SessionID = c.ID
	t.putSandbox(s)

	sess := &Session{
		ID:           c.ID,
		Owner:        c.Owner,
		Image:        c.Image,
		CPUCount:     c.CPUCount,
		MemoryMB:     c.MemoryMB,
		Network:      c.Network,
		State:        SessionActive,
		SandboxID:    s.ID,
		CreatedAt:    c.Now,
		UpdatedAt:    c.Now,
		LastActiveAt: c.Now,
		IdleTimeout:  c.IdleTimeout,
		MaxLifetime:  c.MaxLifetime,
	}
	t.putSession(sess)
	return &Response{Sandbox: s.Copy(), Session: sess.Copy()}
}

// ownedSession returns the session if the caller may act on it; another
// owner's session is reported as not found, never as forbidden.
func ownedSession(t *tx, id, owner string, admin bool) (*Session, *Error) {
	s := t.session(id)
	if s == nil || !(admin || (owner != "" && owner == s.Owner)) {
		return nil, errorf(CodeNotFound, "session %s not found", id)
	}
	return s, nil
}

func applySessionPause(t *tx, c *SessionPause) *Response {
	old, err := ownedSession(t, c.ID, c.Owner, c.Admin)
	if err != nil {
		return fail(err)
	}
	switch old.State {
	case SessionPaused:
		return &Response{Session: old.Copy(), Sandbox: t.sandbox(old.SandboxID).Copy()}
	case SessionDeleted:
		return fail(errorf(CodeConflict, "session %s is deleted", c.ID))
	}
	sb := t.sandbox(old.SandboxID)
	if sb == nil || sb.State != StateActive {
		return fail(errorf(CodeConflict, "session %s: sandbox is %s, not active", c.ID, stateOf(sb)))
	}
	return setSessionState(t, old, sb, SessionPaused, StatePaused, c.Now)
}

func applySessionResume(t *tx, c *SessionResume) *Response {
	old, err := ownedSession(t, c.ID, c.Owner, c.Admin)
	if err != nil {
		return fail(err)
	}
	switch old.State {
	case SessionActive:
		return &Response{Session: old.Copy(), Sandbox: t.sandbox(old.SandboxID).Copy()}
	case SessionDeleted:
		return fail(errorf(CodeConflict, "session %s is deleted", c.ID))
	}
	sb := t.sandbox(old.SandboxID)
	if sb == nil || sb.State != StatePaused {
		return fail(errorf(CodeConflict, "session %s: sandbox is %s, not paused", c.ID, stateOf(sb)))
	}
	// The session is active at once; its sandbox is resuming until the
	// reconciler records it running (SandboxResumed).
	return setSessionState(t, old, sb, SessionActive, StateResuming, c.Now)
}

// setSessionState moves a session and its sandbox together; both count as
// active at that moment.
func setSessionState(t *tx, old *Session, oldSB *Sandbox, st SessionState, sbState SandboxState, now time.Time) *Response {
	sb := oldSB.Copy()
	sb.State = sbState
	sb.LastActiveAt = now
	t.putSandbox(sb)
	sess := old.Copy()
	sess.State = st
	sess.UpdatedAt = now
	sess.LastActiveAt = now
	t.putSession(sess)
	return &Response{Session: sess.Copy(), Sandbox: sb.Copy()}
}

func applySessionDelete(t *tx, c *SessionDelete) *Response {
	old, err := ownedSession(t, c.ID, c.Owner, c.Admin)
	if err != nil {
		return fail(err)
	}
	if old.State == SessionDeleted {
		return &Response{Session: old.Copy()}
	}
	sess := old.Copy()
	sess.State = SessionDeleted
	sess.UpdatedAt = c.Now
	t.putSession(sess)
	resp := &Response{Session: sess.Copy()}
	if sb := t.sandbox(old.SandboxID); sb != nil && sb.State != StateTerminating {
		ns := sb.Copy()
		ns.State = StateTerminating
		ns.EndReason = c.Reason
		t.putSandbox(ns)
		resp.Sandbox = ns.Copy()
	}
	return resp
}

func applySessionsPurge(t *tx, c *SessionsPurge) *Response {
	for _, s := range t.sessionsInState(SessionDeleted) {
		if s.UpdatedAt.Before(c.Before) {
			t.deleteSession(s)
		}
	}
	return &Response{}
}

func stateOf(s *Sandbox) SandboxState {
	if s == nil {
		return "removed"
	}
	return s.State
}
