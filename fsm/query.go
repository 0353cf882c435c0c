package fsm

import memdb "github.com/hashicorp/go-memdb"

// The read API. Each query runs in its own memdb read transaction, so it sees
// one committed state and never blocks Apply; results are copies.

func (f *FSM) read() *memdb.Txn { return f.db.Load().Txn(false) }

// Sandbox returns the sandbox with id, or an error matching ErrNotFound.
func (f *FSM) Sandbox(id string) (*Sandbox, error) {
	raw, err := f.read().First(tableSandboxes, "id", id)
	must(err)
	if raw == nil {
		return nil, errorf(CodeNotFound, "sandbox %s not found", id)
	}
	return raw.(*Sandbox).Copy(), nil
}

// Sandboxes returns every sandbox, ordered by id.
func (f *FSM) Sandboxes() []*Sandbox { return collectSandboxes(f.read(), "id") }

// SandboxesByOwner returns the owner's sandboxes, ordered by id.
func (f *FSM) SandboxesByOwner(owner string) []*Sandbox {
	if owner == "" {
		return nil // unowned sandboxes are not indexed by owner
	}
	return collectSandboxes(f.read(), "owner", owner)
}

// SandboxesByState returns the sandboxes in state st, ordered by id.
func (f *FSM) SandboxesByState(st SandboxState) []*Sandbox {
	return collectSandboxes(f.read(), "state", string(st))
}

func collectSandboxes(txn *memdb.Txn, index string, args ...any) []*Sandbox {
	it, err := txn.Get(tableSandboxes, index, args...)
	must(err)
	var out []*Sandbox
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Sandbox).Copy())
	}
	return out
}

// Session returns the session with id, or an error matching ErrNotFound.
func (f *FSM) Session(id string) (*Session, error) {
	raw, err := f.read().First(tableSessions, "id", id)
	must(err)
	if raw == nil {
		return nil, errorf(CodeNotFound, "session %s not found", id)
	}
	return raw.(*Session).Copy(), nil
}

// Sessions returns every session (deleted ones until purged), ordered by id.
func (f *FSM) Sessions() []*Session { return collectSessions(f.read(), "id") }

// SessionsByOwner returns the owner's sessions, ordered by id.
func (f *FSM) SessionsByOwner(owner string) []*Session {
	return collectSessions(f.read(), "owner", owner)
}

func collectSessions(txn *memdb.Txn, index string, args ...any) []*Session {
	it, err := txn.Get(tableSessions, index, args...)
	must(err)
	var out []*Session
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Session).Copy())
	}
	return out
}

// Pool returns the pool configuration (zero until the first SetPool).
func (f *FSM) Pool() PoolConfig { return readPool(f.read()) }

// PoolStats counts sandboxes by state, with the pool's min and max. O(1):
// the counts are maintained by Apply.
func (f *FSM) PoolStats() PoolStats {
	txn := f.read()
	st := readMeta(txn).Counts
	p := readPool(txn)
	st.MinSize, st.MaxSize = p.MinSize, p.MaxSize
	return st
}

// TokenRevoked reports whether the refresh token id was revoked (and has not
// yet passed its expiry as of the last applied command).
func (f *FSM) TokenRevoked(id string) bool {
	raw, err := f.read().First(tableTokens, "id", id)
	must(err)
	return raw != nil
}

// Created returns how many sandboxes and sessions were ever created in the
// cluster (monotonic; replicated, so every node reports the same numbers).
func (f *FSM) Created() (sandboxes, sessions uint64) {
	m := readMeta(f.read())
	return m.SandboxesCreated, m.SessionsCreated
}

// AppliedIndex is the Raft index of the last entry applied or restored.
func (f *FSM) AppliedIndex() uint64 { return readMeta(f.read()).AppliedIndex }
