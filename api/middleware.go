package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

type requestIDKey struct{}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// requestID takes a sane incoming X-Request-ID (so a proxy's id follows the
// request through our logs) or makes one, and echoes it in the answer.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !requestIDPattern.MatchString(id) {
			id = newID()
		}
		w.Header().Set("X-Request-ID", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

// logRequests puts a per-request logger in the context and logs one line per
// request once it is answered.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := r.Context().Value(requestIDKey{}).(string)
		l := s.log.With("request_id", id)
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		start := time.Now()
		info := &requestInfo{}
		ctx := context.WithValue(context.WithValue(r.Context(), loggerKey{}, l), requestInfoKey{}, info)
		next.ServeHTTP(ww, r.WithContext(ctx))
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status,
			"bytes", ww.BytesWritten(), "duration_ms", time.Since(start).Milliseconds()}
		if info.user != "" {
			attrs = append(attrs, "user", info.user)
		}
		level := s.logLevel(r, status)
		l.Log(r.Context(), level, "http request", attrs...)
	})
}

// requestInfo lets inner middleware (authentication) report facts to the
// request log line, which is written by an outer one.
type requestInfo struct{ user string }

type requestInfoKey struct{}

// recoverer turns a handler panic into a 500 JSON answer instead of a dropped
// connection, and logs the stack.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			rec := recover()
			if rec == nil {
				return
			}
			if rec == http.ErrAbortHandler {
				panic(rec) // the stdlib's way to abort a response on purpose
			}
			logFrom(r.Context()).Error("handler panic", "panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
			writeError(w, r, &Error{Status: http.StatusInternalServerError, Code: codeInternal, Msg: "internal error"})
		}()
		next.ServeHTTP(w, r)
	})
}

// instrument records http_requests_total and http_request_duration_seconds by
// route pattern (never the raw path, whose ids would explode cardinality).
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww, ok := w.(middleware.WrapResponseWriter)
		if !ok {
			ww = middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		}
		start := time.Now()
		next.ServeHTTP(ww, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		s.metrics.httpRequests.WithLabelValues(r.Method, route, strconv.Itoa(status)).Inc()
		s.metrics.httpDuration.WithLabelValues(r.Method, route).Observe(time.Since(start).Seconds())
	})
}

// limitBody caps the request body at n bytes; reading past it fails with
// *http.MaxBytesError, which the error renderer answers with 413.
func limitBody(n int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > n {
				writeError(w, r, &http.MaxBytesError{Limit: n})
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, n)
			next.ServeHTTP(w, r)
		})
	}
}

// newID returns 16 lowercase hex characters from crypto/rand.
func newID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand never fails on supported platforms; if it does, ids are unsafe.
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// logLevel keeps probes and scrapes out of the default log. A /health 503
// while the node catches up is a probe too: the readiness goroutine logs the
// progress once per attempt instead of once per probe.
func (s *Server) logLevel(r *http.Request, status int) slog.Level {
	if r.URL.Path == "/health" && (status < 400 || status == http.StatusServiceUnavailable) {
		return slog.LevelDebug
	}
	if status < 400 && r.URL.Path == "/metrics" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
