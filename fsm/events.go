package fsm

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// Event is one step in a sandbox's life, as the Raft log decided it. Every
// node derives the same events from the same entries (a pure function of
// each entry's writes and its time), so an event's ID names it on any node
// and a client that reconnects elsewhere resumes exactly where it stopped.
type Event struct {
	// ID is "<raft index>-<position within the entry>".
	ID        string    `json:"id"`
	Index     uint64    `json:"index"`
	Seq       int       `json:"seq"`
	Time      time.Time `json:"time"`
	Type      EventType `json:"type"`
	SandboxID string    `json:"sandbox_id"`
	SessionID string    `json:"session_id,omitempty"`
	Owner     string    `json:"owner,omitempty"`
	// State is the sandbox's state after the event ("" once removed).
	State SandboxState `json:"state,omitempty"`
	// Reason is the cause of a failure or of a timeout.
	Reason string `json:"reason,omitempty"`
	// Node is where the sandbox runs after a placement or a move.
	Node string `json:"node,omitempty"`
}

// EventType names a step in a sandbox's life.
type EventType string

// Event types.
const (
	EventCreated  EventType = "created"   // a sandbox was asked for
	EventPlaced   EventType = "placed"    // its container runs
	EventActive   EventType = "active"    // an owner took it from the pool
	EventPaused   EventType = "paused"    // frozen (or saved, on Nomad)
	EventResumed  EventType = "resumed"   // running again
	EventMoved    EventType = "moved"     // running again elsewhere
	EventReleased EventType = "released"  // given back; being destroyed
	EventTimedOut EventType = "timed_out" // released by its lifetime or idle timeout
	EventFailed   EventType = "failed"    // its container died or never started
	EventRemoved  EventType = "removed"   // gone from the state
)

// maxEvents bounds the replicated event log: the oldest go first. A client
// further behind is told so (EventsAfter's complete) and rereads the state.
const maxEvents = 20000

// eventKey orders events by index, then position: zero-padded, so the
// string index sorts as the numbers do.
func eventKey(index uint64, seq int) string { return fmt.Sprintf("%020d-%06d", index, seq) }

// ParseEventID reads an event ID as a client sends it back (Last-Event-ID):
// "<index>-<seq>", or "<index>" for everything up to and including that
// index.
func ParseEventID(id string) (index uint64, seq int, err error) {
	idx, pos, found := strings.Cut(id, "-")
	index, err = strconv.ParseUint(idx, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("event id %q: want <index>-<seq>", id)
	}
	if !found {
		return index, maxEventSeq, nil
	}
	seq, err = strconv.Atoi(pos)
	if err != nil || seq < 0 || seq > maxEventSeq {
		return 0, 0, fmt.Errorf("event id %q: want <index>-<seq>", id)
	}
	return index, seq, nil
}

const maxEventSeq = 999999

// eventRow is an Event as stored, under its sortable key.
type eventRow struct {
	Key string `json:"key"`
	Event
}

// recordEvents derives this entry's events from the sandbox rows it wrote
// and stores them, dropping the oldest past maxEvents.
func (t *tx) recordEvents(changes memdb.Changes) {
	seq := 0
	for _, c := range changes {
		if c.Table != tableSandboxes {
			continue
		}
		var before, after *Sandbox
		if c.Before != nil {
			before = c.Before.(*Sandbox)
		}
		if c.After != nil {
			after = c.After.(*Sandbox)
		}
		for _, typ := range transitions(before, after) {
			if seq > maxEventSeq {
				break
			}
			ev := eventOf(typ, before, after)
			ev.Index, ev.Seq, ev.Time = t.index, seq, t.now
			ev.ID = fmt.Sprintf("%d-%d", t.index, seq)
			must(t.txn.Insert(tableEvents, &eventRow{Key: eventKey(t.index, seq), Event: ev}))
			t.meta.Events++
			seq++
		}
	}
	for t.meta.Events > maxEvents {
		raw, err := t.txn.First(tableEvents, "id")
		must(err)
		must(t.txn.Delete(tableEvents, raw))
		t.meta.Events--
		t.meta.EventsDroppedThrough = raw.(*eventRow).Key
	}
}

// transitions names the steps from before to after (nil: no row).
func transitions(before, after *Sandbox) []EventType {
	switch {
	case before == nil && after == nil:
		return nil
	case before == nil:
		return []EventType{EventCreated}
	case after == nil:
		return []EventType{EventRemoved}
	}
	var out []EventType
	if before.State == after.State {
		if after.State == StateActive && before.Placement.ContainerID != after.Placement.ContainerID && before.Placement.ContainerID != "" {
			out = append(out, EventMoved)
		}
		if before.Owner == "" && after.Owner != "" {
			out = append(out, EventActive)
		}
		return out
	}
	switch after.State {
	case StateIdle:
		if before.State == StatePending {
			out = append(out, EventPlaced)
		}
	case StateActive:
		switch before.State {
		case StatePending:
			out = append(out, EventPlaced)
		case StateIdle:
			out = append(out, EventActive)
		case StatePaused, StateResuming:
			if before.Placement.ContainerID != "" && after.Placement.ContainerID != before.Placement.ContainerID {
				out = append(out, EventMoved)
			}
			out = append(out, EventResumed)
		}
	case StatePaused:
		out = append(out, EventPaused)
	case StateTerminating:
		if after.EndReason != "" && isTimeout(after.EndReason) {
			out = append(out, EventTimedOut)
		} else {
			out = append(out, EventReleased)
		}
	case StateFailed:
		out = append(out, EventFailed)
	}
	return out
}

// isTimeout tells the reasons the reconciler gives for ending a sandbox or
// a session on a clock from every other reason.
func isTimeout(reason string) bool {
	switch reason {
	case "lifetime expired", "idle timeout", "max lifetime reached":
		return true
	}
	return false
}

func eventOf(typ EventType, before, after *Sandbox) Event {
	s := after
	if s == nil {
		s = before
	}
	ev := Event{Type: typ, SandboxID: s.ID, SessionID: s.SessionID, Owner: s.Owner}
	if after != nil {
		ev.State = after.State
	}
	switch typ {
	case EventFailed:
		ev.Reason = s.FailReason
	case EventTimedOut, EventReleased:
		ev.Reason = s.EndReason
	case EventPlaced, EventMoved, EventResumed:
		ev.Node = s.Placement.Node
	}
	return ev
}

// EventsAfter returns up to limit events after the one at (index, seq),
// oldest first, and the applied index they were read at. complete is
// false when events after that point were already dropped (the log keeps
// the newest maxEvents): the caller has missed some.
func (f *FSM) EventsAfter(index uint64, seq int, limit int) (events []Event, applied uint64, complete bool) {
	start := eventKey(index+1, 0)
	if seq < maxEventSeq {
		start = eventKey(index, seq+1)
	}
	return f.eventsFrom(start, limit)
}

// eventsFrom reads up to limit events stored at or after key start.
func (f *FSM) eventsFrom(start string, limit int) (events []Event, applied uint64, complete bool) {
	txn := f.read()
	meta := readMeta(txn)
	complete = meta.EventsDroppedThrough == "" || start > meta.EventsDroppedThrough
	it, err := txn.LowerBound(tableEvents, "id", start)
	must(err)
	for raw := it.Next(); raw != nil && len(events) < limit; raw = it.Next() {
		events = append(events, raw.(*eventRow).Event)
	}
	return events, meta.AppliedIndex, complete
}
