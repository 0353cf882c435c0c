package fsm

import (
	"sync"

	memdb "github.com/hashicorp/go-memdb"
)

// ChangeKind says what kind of object a Change names.
type ChangeKind uint8

// The objects whose changes the feed reports.
const (
	ChangeSandbox ChangeKind = iota + 1
	ChangeSession
	ChangePool
)

// Change names one object an applied command wrote or deleted. It carries
// no value: a consumer reads the object's current state, so a change it
// sees late or twice costs a read, never a wrong action.
type Change struct {
	Index uint64
	Kind  ChangeKind
	// ID is the sandbox's or session's id; empty for the pool.
	ID string
}

// changeLogSize bounds the feed's memory. A consumer that falls further
// behind than this, or that was behind a snapshot restore, learns that the
// feed is incomplete and rereads the whole state.
const changeLogSize = 1 << 15

// changeLog is a ring of the latest changes. It is derived from applies and
// is not part of the replicated state: nothing in Apply reads it.
type changeLog struct {
	mu    sync.Mutex
	ring  []Change
	head  int // next slot to write
	count int
	// floor is the highest index whose changes may be missing: the feed is
	// complete for every index above it.
	floor uint64
	// last is the index of the latest apply recorded, with or without changes.
	last uint64
}

func newChangeLog() *changeLog { return &changeLog{ring: make([]Change, changeLogSize)} }

// record appends what one committed transaction at index changed.
func (l *changeLog) record(index uint64, changes memdb.Changes) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range changes {
		ch, ok := changeOf(c)
		if !ok {
			continue
		}
		ch.Index = index
		if l.count == len(l.ring) {
			// Overwriting the oldest: its index is no longer complete.
			l.floor = max(l.floor, l.ring[l.head].Index)
		} else {
			l.count++
		}
		l.ring[l.head] = ch
		l.head = (l.head + 1) % len(l.ring)
	}
	l.last = max(l.last, index)
}

// reset forgets everything up to index: a restore replaced the state.
// A consumer whose cursor is the last index recorded must learn that too:
// when the restored state is not newer than that (an operator's restore of
// a saved state, which raft applies at an index past the log's end), the
// floor goes one past it. Entries applied after such a restore come later
// still, so none of them is hidden below the floor.
func (l *changeLog) reset(index uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.head, l.count = 0, 0
	if l.last > 0 && l.last >= index {
		l.floor = l.last + 1
	} else {
		l.floor = max(index, l.floor)
	}
	l.last = l.floor
}

func (l *changeLog) since(after uint64) (changes []Change, last uint64, complete bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if after < l.floor {
		return nil, l.last, false
	}
	// Newest first back to the first change past after, then in order.
	n := 0
	for n < l.count && l.ring[(l.head-1-n+2*len(l.ring))%len(l.ring)].Index > after {
		n++
	}
	changes = make([]Change, n)
	for i := 0; i < n; i++ {
		changes[i] = l.ring[(l.head-n+i+2*len(l.ring))%len(l.ring)]
	}
	return changes, l.last, true
}

func changeOf(c memdb.Change) (Change, bool) {
	obj := c.After
	if obj == nil {
		obj = c.Before
	}
	switch c.Table {
	case tableSandboxes:
		return Change{Kind: ChangeSandbox, ID: obj.(*Sandbox).ID}, true
	case tableSessions:
		return Change{Kind: ChangeSession, ID: obj.(*Session).ID}, true
	case tablePool:
		return Change{Kind: ChangePool}, true
	}
	return Change{}, false
}

// Changes returns the changes applied after index after, oldest first, and
// the index they run to: pass it as after next time. complete is false
// when some changes after after are no longer held (the consumer fell far
// behind, or a snapshot was restored since): reread the whole state. Call
// Watch before Changes to wait for what comes next without missing any.
func (f *FSM) Changes(after uint64) (changes []Change, last uint64, complete bool) {
	return f.changes.since(after)
}
