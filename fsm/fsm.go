package fsm

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// FSM is the replicated state machine. Raft calls Apply, Snapshot and Restore
// from one goroutine; the read methods (query.go) are safe to call from any
// goroutine at any time and see a committed state.
type FSM struct {
	// db is swapped whole by Restore; readers load it once per query.
	db atomic.Pointer[memdb.MemDB]

	watchMu sync.Mutex
	watchCh chan struct{}
	// restoreCh is closed at each Restore (watch.go).
	restoreCh chan struct{}

	// changes feeds the reconciler what each apply changed (changes.go).
	changes *changeLog

	// corrupt counts log entries skipped because they could not be decoded.
	corrupt atomic.Uint64

	log *slog.Logger
}

var _ raft.FSM = (*FSM)(nil)

// Option configures an FSM.
type Option func(*FSM)

// WithLogger sets the logger (default slog.Default()); Apply logs only
// skipped unknown commands and corrupt entries.
func WithLogger(l *slog.Logger) Option {
	return func(f *FSM) { f.log = l.With("component", "fsm") }
}

// New returns an empty state machine.
func New(opts ...Option) *FSM {
	f := &FSM{watchCh: make(chan struct{}), restoreCh: make(chan struct{}), changes: newChangeLog(), log: slog.Default().With("component", "fsm")}
	for _, o := range opts {
		o(f)
	}
	f.db.Store(newDB())
	return f
}

func newDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		// The schema is a constant; a failure is a programming error.
		panic(fmt.Sprintf("fsm: invalid memdb schema: %v", err))
	}
	return db
}

// Apply applies one committed log entry and always returns a *Response. A
// business error is returned in Response.Err with state unchanged. A type
// that carries IgnoreUnknownTypeFlag and that this version does not know is
// skipped with a warning. Any other entry that cannot be decoded is a corrupt
// log: it is logged at ERROR, counted (CorruptEntries) and skipped with state
// unchanged and an invalid error in the response. It never panics: a panic
// would come back at every replay of the log and no restart could recover
// the node, while skipping is deterministic — every node decodes the same
// bytes the same way, so all of them skip the same entry (see DESIGN.md).
func (f *FSM) Apply(l *raft.Log) interface{} {
	cmd, err := Decode(l.Data)
	if err != nil {
		if len(l.Data) > 0 && CommandType(l.Data[0])&IgnoreUnknownTypeFlag != 0 && errors.Is(err, ErrUnknownCommand) {
			f.log.Warn("skipping unknown command type", "raft.index", l.Index, "command.type", l.Data[0])
			f.skip(l.Index)
			return &Response{Index: l.Index}
		}
		return f.skipCorrupt(l, err)
	}
	return f.applyCommand(l.Index, cmd)
}

// skipCorrupt records an entry that cannot be decoded as applied without
// effect. An unknown type without the ignore flag usually means a newer node
// proposed a command this one does not know: the message says to upgrade,
// since this node's state now lacks that command.
func (f *FSM) skipCorrupt(l *raft.Log, err error) *Response {
	n := f.corrupt.Add(1)
	var typ any = "none"
	if len(l.Data) > 0 {
		typ = l.Data[0]
	}
	msg := "skipping corrupt log entry: it cannot be decoded"
	if errors.Is(err, ErrUnknownCommand) {
		msg = "skipping log entry of an unknown command type: upgrade this node to the version of the node that proposed it"
	}
	f.log.Error(msg, "raft.index", l.Index, "raft.term", l.Term, "command.type", typ,
		"bytes", len(l.Data), "error", err, "corrupt_entries", n)
	f.skip(l.Index)
	return &Response{Index: l.Index, Err: errorf(CodeInvalid, "log entry %d cannot be decoded and was skipped: %v", l.Index, err)}
}

// CorruptEntries is how many log entries this FSM skipped because they could
// not be decoded (entries replayed after a restart count again).
func (f *FSM) CorruptEntries() uint64 { return f.corrupt.Load() }

func (f *FSM) applyCommand(index uint64, cmd Command) *Response {
	h := Hdr(cmd)
	db := f.db.Load()
	t := newTx(db, index, h.Now)
	// Expired request IDs are dropped before the lookup, so retention is
	// exactly requestRetention whatever else is applied.
	t.prune()
	if h.RequestID != "" {
		if prior := t.request(h.RequestID); prior != nil {
			f.changes.record(index, t.commit())
			f.notify()
			if prior.Response == nil {
				return &Response{Index: prior.Index}
			}
			return prior.Response.copy()
		}
	}
	resp := dispatch(t, cmd)
	resp.Index = index
	if resp.Err != nil {
		// Business errors leave state unchanged: drop the half-done writes
		// and only do the bookkeeping.
		t.abort()
		t = newTx(db, index, h.Now)
	}
	if h.RequestID != "" && !resp.Err.retryable() {
		t.putRequest(h.RequestID, resp.copy())
	}
	t.prune()
	f.changes.record(index, t.commit())
	f.notify()
	return resp
}

// skip records that the entry at index was applied without effect.
func (f *FSM) skip(index uint64) {
	t := newTx(f.db.Load(), index, time.Time{})
	f.changes.record(index, t.commit())
	f.notify()
}

// dispatch runs the command's apply function. Adding a command: a type and a
// line in newCommand (command.go), one line in appliers, one applyX function.
func dispatch(t *tx, cmd Command) *Response {
	fn, ok := appliers[cmd.Type()]
	if !ok {
		// newCommand knows the type but nobody wired its apply function.
		panic(fmt.Sprintf("fsm: no apply function for command type %d", cmd.Type()))
	}
	return fn(t, cmd)
}

var appliers = map[CommandType]func(*tx, Command) *Response{
	TypeSetPool:        handler(applySetPool),
	TypeSandboxCreate:  handler(applySandboxCreate),
	TypeSandboxPlaced:  handler(applySandboxPlaced),
	TypeSandboxFailed:  handler(applySandboxFailed),
	TypeSandboxAcquire: handler(applySandboxAcquire),
	TypeSandboxRelease: handler(applySandboxRelease),
	TypeSandboxRemoved: handler(applySandboxRemoved),
	TypeSandboxTouch:   handler(applySandboxTouch),
	TypeSessionCreate:  handler(applySessionCreate),
	TypeSessionPause:   handler(applySessionPause),
	TypeSessionResume:  handler(applySessionResume),
	TypeSessionDelete:  handler(applySessionDelete),
	TypeSessionsPurge:  handler(applySessionsPurge),
	TypeTokenRevoke:    handler(applyTokenRevoke),
	TypeSandboxMoved:   handler(applySandboxMoved),
	TypeSandboxResumed: handler(applySandboxResumed),
	TypeEgressGrantSet: handler(applyEgressGrantSet),

	TypeSandboxSetTimeout: handler(applySandboxSetTimeout),
	TypeSandboxPause:      handler(applySandboxPause),
	TypeSandboxResume:     handler(applySandboxResume),
	TypeWebhookSet:        handler(applyWebhookSet),
	TypeWebhookDelivered:  handler(applyWebhookDelivered),
}

func handler[C Command](fn func(*tx, C) *Response) func(*tx, Command) *Response {
	return func(t *tx, c Command) *Response { return fn(t, c.(C)) }
}

// Watch returns a channel that is closed at the next Apply or Restore after
// the call, so waiters block on change instead of polling.
func (f *FSM) Watch() <-chan struct{} {
	f.watchMu.Lock()
	defer f.watchMu.Unlock()
	return f.watchCh
}

func (f *FSM) notify() {
	f.watchMu.Lock()
	defer f.watchMu.Unlock()
	close(f.watchCh)
	f.watchCh = make(chan struct{})
}

// fail is the response of a command refused with a business error.
func fail(err *Error) *Response { return &Response{Err: err} }

// copy returns a response whose objects the caller may change freely.
func (r *Response) copy() *Response {
	if r == nil {
		return nil
	}
	c := *r
	c.Sandbox = r.Sandbox.Copy()
	c.Session = r.Session.Copy()
	c.Webhook = r.Webhook.Copy()
	if r.Err != nil {
		e := *r.Err
		c.Err = &e
	}
	return &c
}
