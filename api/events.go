package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// Server-Sent Events of sandbox lifecycles, read from the replicated event
// log (fsm/events.go). An event's id is "<raft index>-<position>", the same
// on every node, so a client that reconnects anywhere with Last-Event-ID
// gets every later event once, in order. A node that lags simply sends
// them once it has applied them.
const (
	// eventsHeartbeat keeps proxies from closing an idle stream.
	eventsHeartbeat = 15 * time.Second
	// eventsMaxStream ends a stream after this long; the client
	// reconnects with Last-Event-ID and loses nothing.
	eventsMaxStream = time.Hour
	// eventsBatch bounds one read of the log.
	eventsBatch = 256
)

// eventsState is what the stream reads; *fsm.FSM provides it.
type eventsState interface {
	EventsAfter(index uint64, seq int, limit int) (events []fsm.Event, applied uint64, complete bool)
}

// eventFilter is what a client asked to see.
type eventFilter struct {
	user      string // "" for an admin: every sandbox
	sandboxID string
	types     []fsm.EventType
}

func (f eventFilter) match(e fsm.Event) bool {
	return (f.user == "" || e.Owner == f.user) &&
		(f.sandboxID == "" || e.SandboxID == f.sandboxID) &&
		(len(f.types) == 0 || slices.Contains(f.types, e.Type))
}

// handleEvents answers GET /api/v1/events. Where to start: Last-Event-ID
// (or ?after=<id>; ?after=0 is the oldest event kept), else now.
// ?follow=false ends the stream once it has caught up. Filters:
// sandbox_id, type (comma-separated).
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) error {
	log, ok := s.state.(eventsState)
	if !ok {
		return &Error{Status: http.StatusNotImplemented, Code: codeInternal, Msg: "this node keeps no event log"}
	}
	p := principalFrom(r.Context())
	q := r.URL.Query()
	filter := eventFilter{sandboxID: q.Get("sandbox_id")}
	if !p.admin() {
		filter.user = p.User
	}
	for _, t := range strings.Split(q.Get("type"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			filter.types = append(filter.types, fsm.EventType(t))
		}
	}
	follow := q.Get("follow") != "false" && q.Get("follow") != "0"
	after := r.Header.Get("Last-Event-ID")
	if v := q.Get("after"); v != "" {
		after = v
	}
	if after == "" {
		// From now: after everything this node has applied.
		after = strconv.FormatUint(s.state.AppliedIndex(), 10)
	}
	index, seq, err := fsm.ParseEventID(after)
	if err != nil {
		return errBadRequest("Last-Event-ID: %v", err)
	}
	if after == "0" {
		seq = -1 // the oldest event kept
	}

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	write := func(format string, args ...any) error {
		_ = rc.SetWriteDeadline(time.Now().Add(2 * eventsHeartbeat))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return err
		}
		return rc.Flush()
	}
	// Tell the client how to reconnect, and that the stream is open.
	if err := write("retry: 1000\n: stream open\n\n"); err != nil {
		return nil
	}

	heartbeat := time.NewTicker(eventsHeartbeat)
	defer heartbeat.Stop()
	end := time.NewTimer(eventsMaxStream)
	defer end.Stop()
	for {
		watch := s.state.Watch()
		for {
			events, _, complete := log.EventsAfter(index, seq, eventsBatch)
			if !complete && after != "0" {
				// Some were dropped from the bounded log: say so, then go
				// on from the oldest kept (the events read).
				if err := write("event: gap\ndata: {\"after\":%q,\"message\":\"events after this id were dropped from the log; reread the sandboxes\"}\n\n",
					fmt.Sprintf("%d-%d", index, max(seq, 0))); err != nil {
					return nil
				}
			}
			for _, e := range events {
				index, seq = e.Index, e.Seq
				if !filter.match(e) {
					continue
				}
				b, err := json.Marshal(e)
				if err != nil {
					return fmt.Errorf("encode event %s: %w", e.ID, err)
				}
				if err := write("id: %s\nevent: %s\ndata: %s\n\n", e.ID, e.Type, b); err != nil {
					return nil // the client went away
				}
			}
			if len(events) < eventsBatch {
				break
			}
		}
		if !follow {
			return nil
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-end.C:
			return nil
		case <-heartbeat.C:
			if err := write(": keepalive\n\n"); err != nil {
				return nil
			}
		case <-watch:
		}
	}
}
