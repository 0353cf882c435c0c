package api

import (
	"encoding/json"
	"net/http"
	"sync"
)

// streamLimiter caps the long-lived requests (streaming exec, archive
// transfers) one user holds at once: each ties up a connection, an agent
// stream and a goroutine for as long as the client likes, which the
// per-request rate limit cannot see.
type streamLimiter struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func newStreamLimiter(max int) *streamLimiter {
	return &streamLimiter{max: max, n: map[string]int{}}
}

// acquire takes a slot for user; false when the user holds max already.
func (l *streamLimiter) acquire(user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[user] >= l.max {
		return false
	}
	l.n[user]++
	return true
}

func (l *streamLimiter) release(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[user]--; l.n[user] <= 0 {
		delete(l.n, user) // the map holds only users with streams open
	}
}

// limitStreams answers 429 with Retry-After to a user who already holds
// MaxStreamsPerUser long-lived requests. It runs after authenticate.
func (s *Server) limitStreams(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := principalFrom(r.Context()).User
		if !s.streams.acquire(user) {
			writeError(w, r, &Error{Status: http.StatusTooManyRequests, Code: codeRateLimited,
				Msg: "too many concurrent streams for this user", RetryAfter: 1})
			return
		}
		defer s.streams.release(user)
		next.ServeHTTP(w, r)
	})
}

// ndjsonStream writes one JSON value per line, flushed as it goes. The 200
// header goes out with the first line, so a handler can still answer an
// error status until then (started says whether it can). Safe for
// concurrent emitters: an agent's stdout and stderr arrive on two.
type ndjsonStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	enc     *json.Encoder
	mu      sync.Mutex
	started bool
}

func newNDJSON(w http.ResponseWriter) *ndjsonStream {
	return &ndjsonStream{w: w, rc: http.NewResponseController(w), enc: json.NewEncoder(w)}
}

// begin sends the 200 header if it has not gone yet.
func (n *ndjsonStream) begin() {
	if !n.started {
		n.w.Header().Set("Content-Type", "application/x-ndjson")
		n.w.Header().Set("X-Content-Type-Options", "nosniff")
		n.w.WriteHeader(http.StatusOK)
		n.started = true
	}
}

// emit writes v as one line and flushes it.
func (n *ndjsonStream) emit(v any) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.begin()
	if err := n.enc.Encode(v); err != nil {
		return err
	}
	return n.rc.Flush()
}

// Started reports whether the header (and so the status) has gone out.
func (n *ndjsonStream) Started() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.started
}

// finish sends the header of an empty stream if nothing was written.
func (n *ndjsonStream) finish() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.begin()
}
