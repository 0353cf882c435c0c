package api

import (
	"net/http"
	"time"
)

// readHeaderTimeout bounds a request's header: slowloris defence on both
// listeners, whatever the other timeouts are.
const readHeaderTimeout = 10 * time.Second

// deadlineMargin is added to a route's own bound so that the answer to a
// request that hit that bound (a timed-out exec) still gets written.
const deadlineMargin = 30 * time.Second

// HTTPServer returns the public listener's server for addr: the header,
// the whole request, the answer and an idle keep-alive are each bounded
// (HTTP_READ_TIMEOUT, HTTP_WRITE_TIMEOUT, HTTP_IDLE_TIMEOUT). Routes that
// legitimately run longer move their own deadlines (withDeadline).
func (s *Server) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
	}
}

// OpsHTTPServer returns the operator listener's server for addr: small
// read-only answers, so the public bounds fit it as they are.
func (s *Server) OpsHTTPServer(addr string) *http.Server {
	srv := s.HTTPServer(addr)
	srv.Handler = s.ops
	return srv
}

// execBudget is the longest an execute may legitimately take: waiting for a
// resuming sandbox, then the longest execution allowed.
func (s *Server) execBudget() time.Duration {
	return s.cfg.ReadyTimeout + s.cfg.MaxExecTimeout + deadlineMargin
}

// placementBudget is the longest an acquire, session create or resume may
// take: up to placementAttempts sandboxes, each waited for.
func (s *Server) placementBudget() time.Duration {
	return placementAttempts*s.cfg.ReadyTimeout + deadlineMargin
}

// transferBudget bounds one raw or archive file transfer.
func (s *Server) transferBudget() time.Duration { return s.cfg.TransferTimeout }

// withDeadline gives one route budget for reading its body and writing its
// answer instead of the server-wide ReadTimeout and WriteTimeout, through
// http.ResponseController: streaming exec and archive transfers would
// otherwise be cut off mid-stream. A budget shorter than the server's own
// timeouts is not applied: this only ever lengthens.
func (s *Server) withDeadline(budget func() time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := budget()
		rc := http.NewResponseController(w)
		now := time.Now()
		// Errors mean the writer cannot move deadlines (a test recorder):
		// then there were none to move.
		if b > s.cfg.ReadTimeout {
			_ = rc.SetReadDeadline(now.Add(b))
		}
		if b > s.cfg.WriteTimeout {
			_ = rc.SetWriteDeadline(now.Add(b))
		}
		h.ServeHTTP(w, r)
	})
}
