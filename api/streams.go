package api

import (
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
