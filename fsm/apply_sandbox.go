package fsm

func applySandboxCreate(t *tx, c *SandboxCreate) *Response {
	if c.ID == "" {
		return fail(errorf(CodeInvalid, "sandbox id is required"))
	}
	pool := t.pool()
	s := &Sandbox{
		ID:        c.ID,
		Image:     c.Image,
		Resources: c.Resources,
		Network:   c.Network,
		State:     StatePending,
		Pool:      true,
		CreatedAt: c.Now,
	}
	if s.Image == "" {
		s.Image = pool.Image
	}
	if s.Resources == (Resources{}) {
		s.Resources = pool.Resources
	}
	switch {
	case s.Image == "":
		return fail(errorf(CodeInvalid, "sandbox %s: image is required (no pool image configured)", c.ID))
	case t.sandbox(c.ID) != nil:
		return fail(errorf(CodeExists, "sandbox %s already exists", c.ID))
	case t.poolFull():
		return fail(errorf(CodePoolExhausted, "pool is at its maximum of %d live sandboxes", pool.MaxSize))
	}
	t.putSandbox(s)
	return &Response{Sandbox: s.Copy()}
}

func applySandboxPlaced(t *tx, c *SandboxPlaced) *Response {
	old := t.sandbox(c.ID)
	if old == nil {
		return fail(errorf(CodeNotFound, "sandbox %s not found", c.ID))
	}
	s := old.Copy()
	s.Placement = c.Placement
	switch {
	case old.State == StateTerminating:
		// Released while being placed: keep the placement so the reconciler
		// can find and destroy the container.
	case old.State != StatePending:
		return fail(errorf(CodeConflict, "sandbox %s is %s, not pending", c.ID, old.State))
	case old.Owner == "":
		s.State = StateIdle
	default:
		s.State = StateActive
		s.AcquiredAt = c.Now
		s.LastActiveAt = c.Now
	}
	t.putSandbox(s)
	return &Response{Sandbox: s.Copy()}
}

func applySandboxMoved(t *tx, c *SandboxMoved) *Response {
	old := t.sandbox(c.ID)
	switch {
	case c.Placement.AgentEndpoint == "":
		// A driver bug must not leave the API with nowhere to go.
		return fail(errorf(CodeInvalid, "sandbox %s: a move needs the new agent endpoint", c.ID))
	case old == nil:
		return fail(errorf(CodeNotFound, "sandbox %s not found", c.ID))
	case old.State == StatePending || old.State == StateFailed:
		// Pending has no placement to replace (SandboxPlaced records the
		// first); a failed sandbox's container is being destroyed.
		return fail(errorf(CodeConflict, "sandbox %s is %s; only a placed sandbox can move", c.ID, old.State))
	}
	// Idle, active, paused: the API follows the new placement at once.
	// Terminating: recorded so that the reconciler destroys the new allocation.
	s := old.Copy()
	s.Placement = c.Placement
	t.putSandbox(s)
	return &Response{Sandbox: s.Copy()}
}

func applySandboxResumed(t *tx, c *SandboxResumed) *Response {
	old := t.sandbox(c.ID)
	switch {
	case c.Moved && c.Placement.AgentEndpoint == "":
		return fail(errorf(CodeInvalid, "sandbox %s: a move needs the new agent endpoint", c.ID))
	case old == nil:
		return fail(errorf(CodeNotFound, "sandbox %s not found", c.ID))
	case old.State == StateActive && (!c.Moved || old.Placement == c.Placement):
		return &Response{Sandbox: old.Copy()} // a retry of this very command
	case old.State != StateResuming:
		return fail(errorf(CodeConflict, "sandbox %s is %s, not resuming", c.ID, old.State))
	}
	s := old.Copy()
	s.State = StateActive
	if c.Moved {
		s.Placement = c.Placement
	}
	t.putSandbox(s)
	return &Response{Sandbox: s.Copy()}
}

func applySandboxFailed(t *tx, c *SandboxFailed) *Response {
	old := t.sandbox(c.ID)
	switch {
	case old == nil:
		return fail(errorf(CodeNotFound, "sandbox %s not found", c.ID))
	case !old.Live():
		// Terminating is going anyway; failed is already failed.
		return &Response{Sandbox: old.Copy()}
	}
	s := old.Copy()
	s.State = StateFailed
	s.FailReason = c.Reason
	t.putSandbox(s)
	return &Response{Sandbox: s.Copy()}
}

func applySandboxAcquire(t *tx, c *SandboxAcquire) *Response {
	pool := t.pool()
	image := c.Image
	if image == "" {
		image = pool.Image
	}
	switch {
	case c.Owner == "":
		return fail(errorf(CodeInvalid, "owner is required"))
	case image == "":
		return fail(errorf(CodeInvalid, "image is required (no pool image configured)"))
	}

	var allow []string
	var idle *Sandbox
	if c.Network {
		// Egress sandboxes are never pooled: each gets its owner's grant.
		var err *Error
		if allow, err = t.admitEgress(c.Owner, c.Role); err != nil {
			return fail(err)
		}
	} else {
		idle = t.pickIdle(image, false, c.Resources)
	}
	if err := t.admitCreate(c.Owner, acquiredResources(c, idle, pool), false); err != nil {
		return fail(err)
	}
	if idle != nil {
		s := idle.Copy()
		if c.Resources != nil {
			// The reconciler applies changed limits to the running container.
			s.Resources = *c.Resources
		}
		s.State = StateActive
		claim(s, c)
		s.AcquiredAt = c.Now
		s.LastActiveAt = c.Now
		t.putSandbox(s)
		return &Response{Sandbox: s.Copy()}
	}

	switch {
	case t.poolFull():
		return fail(errorf(CodePoolExhausted, "no idle sandbox and the pool is at its maximum of %d live sandboxes", pool.MaxSize))
	case c.NewID == "":
		return fail(errorf(CodeInvalid, "new_id is required to create a sandbox on demand"))
	case t.sandbox(c.NewID) != nil:
		return fail(errorf(CodeExists, "sandbox %s already exists", c.NewID))
	}
	s := &Sandbox{
		ID:        c.NewID,
		Image:     image,
		Resources: pool.Resources,
		Network:   c.Network,
		State:     StatePending,
		CreatedAt: c.Now,

		EgressAllow: allow,
	}
	if c.Resources != nil {
		s.Resources = *c.Resources
	}
	claim(s, c)
	t.putSandbox(s)
	return &Response{Sandbox: s.Copy()}
}

// acquiredResources are the resources the acquired sandbox will have, for
// the quota check: the requested ones, else the idle sandbox's, else the pool's.
func acquiredResources(c *SandboxAcquire, idle *Sandbox, pool PoolConfig) Resources {
	switch {
	case c.Resources != nil:
		return *c.Resources
	case idle != nil:
		return idle.Resources
	}
	return pool.Resources
}

// claim gives s to the acquiring owner with the requested timeouts.
func claim(s *Sandbox, c *SandboxAcquire) {
	s.Owner = c.Owner
	s.Metadata = cloneStrings(c.Metadata)
	s.Env = cloneStrings(c.Env)
	s.IdleTimeout = c.IdleTimeout
	if c.Lifetime > 0 {
		s.ExpiresAt = c.Now.Add(c.Lifetime)
	}
}

func applySandboxRelease(t *tx, c *SandboxRelease) *Response {
	old := t.sandbox(c.ID)
	if old == nil || !(c.Admin || (c.Owner != "" && c.Owner == old.Owner)) {
		// Never reveal that another owner's sandbox exists.
		return fail(errorf(CodeNotFound, "sandbox %s not found", c.ID))
	}
	if c.IdleOnly && old.State != StateIdle {
		return fail(errorf(CodeConflict, "sandbox %s is %s, not idle", c.ID, old.State))
	}
	if old.State == StateTerminating {
		return &Response{Sandbox: old.Copy()}
	}
	s := old.Copy()
	s.State = StateTerminating
	s.EndReason = c.Reason
	t.putSandbox(s)
	resp := &Response{Sandbox: s.Copy()}
	if sess := t.session(s.SessionID); sess != nil && sess.State != SessionDeleted {
		ns := sess.Copy()
		ns.State = SessionDeleted
		ns.UpdatedAt = c.Now
		t.putSession(ns)
		resp.Session = ns.Copy()
	}
	return resp
}

func applySandboxRemoved(t *tx, c *SandboxRemoved) *Response {
	old := t.sandbox(c.ID)
	switch {
	case old == nil:
		return &Response{}
	case old.State != StateTerminating && old.State != StateFailed:
		return fail(errorf(CodeConflict, "sandbox %s is %s; only terminating or failed sandboxes can be removed", c.ID, old.State))
	}
	t.deleteSandbox(old)
	return &Response{Sandbox: old.Copy()}
}

// applySandboxTouch also refreshes the owning session's LastActiveAt so that
// session idle timeouts see the same activity.
func applySandboxTouch(t *tx, c *SandboxTouch) *Response {
	for _, id := range c.IDs {
		old := t.sandbox(id)
		if old == nil || old.State != StateActive {
			continue
		}
		s := old.Copy()
		s.LastActiveAt = c.Now
		t.putSandbox(s)
		if sess := t.session(s.SessionID); sess != nil && sess.State == SessionActive {
			ns := sess.Copy()
			ns.LastActiveAt = c.Now
			t.putSession(ns)
		}
	}
	return &Response{}
}
