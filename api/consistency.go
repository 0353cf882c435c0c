package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Read-your-writes across nodes (api/DESIGN.md, "Consistency"). Every API
// answer carries the Raft index of the state it reflects; a request that
// carries an index is served only once the local FSM has applied it.
const (
	// headerIndex is the Raft index header, in both directions (as Consul's
	// X-Consul-Index and Nomad's X-Nomad-Index).
	headerIndex = "X-Cloud-Sandbox-Index"
	// queryIndex is the same as a query parameter, for clients that cannot
	// set headers.
	queryIndex = "index"
)

// indexHolder collects the highest Raft index written during one request.
type indexHolder struct{ write atomic.Uint64 }

func (h *indexHolder) raise(idx uint64) {
	for {
		cur := h.write.Load()
		if idx <= cur || h.write.CompareAndSwap(cur, idx) {
			return
		}
	}
}

type indexHolderKey struct{}

// noteWrite records that the request's write was applied at idx, so its
// answer says at least idx.
func noteWrite(ctx context.Context, idx uint64) {
	if h, ok := ctx.Value(indexHolderKey{}).(*indexHolder); ok {
		h.raise(idx)
	}
}

// indexWriter stamps headerIndex on the answer when its header is written:
// the request's own write index or the local applied index, whichever is
// higher (the answer was built from local state at least that new).
type indexWriter struct {
	http.ResponseWriter
	s       *Server
	h       *indexHolder
	stamped bool
}

func (w *indexWriter) WriteHeader(code int) {
	if !w.stamped {
		w.stamped = true
		idx := max(w.h.write.Load(), w.s.state.AppliedIndex())
		w.Header().Set(headerIndex, strconv.FormatUint(idx, 10))
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *indexWriter) Write(b []byte) (int, error) {
	if !w.stamped {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and the deadlines.
func (w *indexWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// consistency wraps every /api/v1 route: it refuses requests until the node
// has caught up at start (503 not_ready), waits (bounded) for an index the
// client names, and stamps the answer's index.
func (s *Server) consistency(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := &indexHolder{}
		iw := &indexWriter{ResponseWriter: w, s: s, h: h}
		if err := s.awaitReady(r.Context()); err != nil {
			writeError(iw, r, err)
			return
		}
		want, err := requestedIndex(r)
		if err != nil {
			writeError(iw, r, err)
			return
		}
		if err := s.waitIndex(r.Context(), want); err != nil {
			writeError(iw, r, err)
			return
		}
		next.ServeHTTP(iw, r.WithContext(context.WithValue(r.Context(), indexHolderKey{}, h)))
	})
}

// requestedIndex reads the index a client asks for (header first, then the
// query); 0 when it names none.
func requestedIndex(r *http.Request) (uint64, error) {
	v := r.Header.Get(headerIndex)
	name := headerIndex
	if v == "" {
		v, name = r.URL.Query().Get(queryIndex), queryIndex
	}
	if v == "" {
		return 0, nil
	}
	idx, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, errBadRequest("%s must be a non-negative integer", name)
	}
	return idx, nil
}

// waitIndex returns once the local FSM has applied idx, or a 503 after
// IndexWaitTimeout: the client then retries here or on another node.
func (s *Server) waitIndex(ctx context.Context, idx uint64) error {
	if idx == 0 || s.state.AppliedIndex() >= idx {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.IndexWaitTimeout)
	defer cancel()
	err := s.waitApplied(wctx, idx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err() // the client went away
	}
	s.metrics.indexWaitTimeouts.Inc()
	return &Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable, RetryAfter: 1, Err: err,
		Msg: fmt.Sprintf("this node has applied index %d, not yet %d; retry", s.state.AppliedIndex(), idx)}
}

// catchUp makes the next local read reflect every write acknowledged before
// it, bounded by IndexWaitTimeout. Handlers call it once before answering
// 404 or 409 for an id this node might not have caught up on; an error is
// a 503, never a wrong "not found".
func (s *Server) catchUp(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.IndexWaitTimeout)
	defer cancel()
	err := s.cluster.ConsistentRead(cctx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errUnavailable("cannot confirm the latest state with the cluster", err)
}

// readiness is the start-up gate: closed once the node has applied what the
// leader had committed when the node started (a single node: its whole log).
type readiness struct {
	done   chan struct{}
	reason atomic.Pointer[string]
	stop   context.CancelFunc
	exited chan struct{}
}

// errNotCaughtUp is the reason given before the first catch-up attempt ends.
var errNotCaughtUp = errors.New("catching up with the cluster")

// startReadiness runs the catch-up in the background until it succeeds or
// the server closes. Each attempt is bounded by the cluster's ConsistentRead
// (ApplyTimeout); between attempts it backs off up to two seconds.
func (s *Server) startReadiness() {
	ctx, cancel := context.WithCancel(context.Background())
	rd := &readiness{done: make(chan struct{}), stop: cancel, exited: make(chan struct{})}
	msg := errNotCaughtUp.Error()
	rd.reason.Store(&msg)
	s.ready = rd
	go func() {
		defer close(rd.exited)
		start := time.Now()
		delay := 50 * time.Millisecond
		for attempt := 1; ; attempt++ {
			err := s.cluster.ConsistentRead(ctx)
			if err == nil {
				close(rd.done)
				s.log.Info("caught up with the cluster; serving the API",
					"applied_index", s.state.AppliedIndex(), "attempts", attempt, "took", time.Since(start).Round(time.Millisecond))
				return
			}
			if ctx.Err() != nil {
				return
			}
			msg := fmt.Sprintf("%v: %v", errNotCaughtUp, err)
			rd.reason.Store(&msg)
			s.log.Info("not ready yet", "attempt", attempt, "err", err)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			delay = min(2*delay, 2*time.Second)
		}
	}()
}

// stopReadiness ends the catch-up goroutine and waits for it.
func (s *Server) stopReadiness() {
	s.ready.stop()
	<-s.ready.exited
}

// isReady reports whether the node has caught up, and if not, why.
func (s *Server) isReady() (bool, string) {
	select {
	case <-s.ready.done:
		return true, ""
	default:
		return false, *s.ready.reason.Load()
	}
}

// awaitReady lets a request that arrives during the catch-up wait for it,
// at most IndexWaitTimeout, and refuses it with 503 not_ready after that.
func (s *Server) awaitReady(ctx context.Context) error {
	if ok, _ := s.isReady(); ok {
		return nil
	}
	t := time.NewTimer(s.cfg.IndexWaitTimeout)
	defer t.Stop()
	select {
	case <-s.ready.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	_, reason := s.isReady()
	return &Error{Status: http.StatusServiceUnavailable, Code: codeNotReady, RetryAfter: 1,
		Msg: "node is starting: " + reason}
}
