package api

import (
	"math"
	"net"
	"net/http"
	"sync"
	"time"
)

// rateLimiter is a token bucket per key (user id, or client IP for the
// unauthenticated token endpoints). Buckets idle long enough to be full are
// dropped, so memory follows the active users, not every user ever seen.
type rateLimiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rps float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rps, burst: float64(burst), now: time.Now, buckets: map[string]*bucket{}}
}

// allow takes one token for key. When none is left it returns false and how
// long until one is.
func (l *rateLimiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// sweep drops buckets that have refilled completely; it runs at most once a
// minute so allow stays O(1) amortised.
func (l *rateLimiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Minute {
		return
	}
	l.lastSweep = now
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.last) > full {
			delete(l.buckets, k)
		}
	}
}

// limitByUser rate-limits authenticated requests per user.
func (s *Server) limitByUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := "user:" + principalFrom(r.Context()).User
		if !s.checkRate(w, r, key) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// limitByIP rate-limits the unauthenticated token endpoints per client IP,
// so they cannot be used to mint tokens or guess API keys at full speed.
func (s *Server) limitByIP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		if !s.checkRate(w, r, "ip:"+host) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) checkRate(w http.ResponseWriter, r *http.Request, key string) bool {
	ok, wait := s.limiter.allow(key)
	if ok {
		return true
	}
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	writeError(w, r, &Error{Status: http.StatusTooManyRequests, Code: codeRateLimited,
		Msg: "rate limit exceeded", RetryAfter: secs})
	return false
}
