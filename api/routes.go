package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// handlerFunc is a handler that returns its error for writeError to render,
// so every failure path goes through the one error renderer.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (h handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h(w, r); err != nil {
		writeError(w, r, err)
	}
}

// routes builds the public API. Middleware order: request id → logger →
// recoverer → metrics, then per group authentication, rate limit and a body
// limit sized for what the group accepts; long-running routes then move
// their own deadlines, and streams count against the per-user stream cap.
func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(requestID, s.logRequests, recoverer, s.instrument)
	r.NotFound(handlerFunc(func(http.ResponseWriter, *http.Request) error { return errNotFound("route") }).ServeHTTP)
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, &Error{Status: http.StatusMethodNotAllowed, Code: codeBadRequest, Msg: "method not allowed"})
	})

	r.Method(http.MethodGet, "/health", handlerFunc(s.handleHealth))
	// /metrics is open as on every Prometheus target: it carries counts, no
	// user data, and scrapers rarely hold tokens.
	r.Method(http.MethodGet, "/metrics", s.metricsHandler())
	r.Method(http.MethodGet, "/api/v1/openapi.json", http.HandlerFunc(handleOpenAPI)) // the contract (openapi.go)

	r.Route("/api/v1", func(r chi.Router) {
		// Not ready → 503; a named index is waited for; every answer says
		// its index (consistency.go).
		r.Use(s.consistency)
		r.Group(func(r chi.Router) {
			r.Use(s.limitByIP, limitBody(s.cfg.MaxBodyBytes))
			r.Method(http.MethodPost, "/auth/token", handlerFunc(s.handleToken))
			r.Method(http.MethodPost, "/auth/refresh", handlerFunc(s.handleRefresh))
		})
		r.Group(func(r chi.Router) {
			r.Use(s.authenticate, s.limitByUser)
			r.Group(func(r chi.Router) {
				r.Use(limitBody(s.cfg.MaxBodyBytes))
				r.Method(http.MethodPost, "/auth/revoke", handlerFunc(s.handleRevoke))

				r.Route("/sessions", func(r chi.Router) {
					r.Method(http.MethodPost, "/", s.withDeadline(s.placementBudget, handlerFunc(s.handleCreateSession)))
					r.Method(http.MethodGet, "/", handlerFunc(s.handleListSessions))
					r.Route("/{session_id}", func(r chi.Router) {
						r.Method(http.MethodGet, "/", handlerFunc(s.handleGetSession))
						r.Method(http.MethodDelete, "/", s.handleDeleteSession())
						r.Method(http.MethodPost, "/pause", s.handlePauseSession())
						r.Method(http.MethodPost, "/resume", s.withDeadline(s.placementBudget, s.handleResumeSession()))
					})
				})

				r.Route("/sandbox", func(r chi.Router) {
					r.Method(http.MethodPost, "/acquire", s.withDeadline(s.placementBudget, handlerFunc(s.handleAcquire)))
					r.Method(http.MethodPost, "/release", handlerFunc(s.handleRelease))
					r.Method(http.MethodGet, "/stats", handlerFunc(s.handleStats))
					r.Method(http.MethodGet, "/{sandbox_id}", handlerFunc(s.handleGetSandbox))
					// One lifecycle for every sandbox (lifecycle.go).
					r.Method(http.MethodPost, "/{sandbox_id}/timeout", handlerFunc(s.handleSetTimeout))
					r.Method(http.MethodPost, "/{sandbox_id}/pause", handlerFunc(s.handlePauseSandbox))
					r.Method(http.MethodPost, "/{sandbox_id}/resume", s.withDeadline(s.placementBudget, handlerFunc(s.handleResumeSandbox)))
					r.Method(http.MethodPost, "/{sandbox_id}/connect", s.withDeadline(s.placementBudget, handlerFunc(s.handleResumeSandbox)))
				})
				r.Method(http.MethodGet, "/sandboxes", handlerFunc(s.handleListSandboxes))
				r.Method(http.MethodGet, "/quota", handlerFunc(s.handleQuota))
				r.Method(http.MethodGet, "/egress", handlerFunc(s.handleMyEgress))
				r.Method(http.MethodGet, "/egress/grants", handlerFunc(s.handleListEgressGrants))
				r.Method(http.MethodPut, "/egress/grants/{subject}", handlerFunc(s.handlePutEgressGrant))
				r.Method(http.MethodDelete, "/egress/grants/{subject}", handlerFunc(s.handleDeleteEgressGrant))
				// Stateful code contexts (contexts.go).
				r.Route("/contexts", s.contextRoutes)

				// The caller's webhook (webhooks.go).
				r.Method(http.MethodPut, "/webhook", handlerFunc(s.handlePutWebhook))
				r.Method(http.MethodGet, "/webhook", handlerFunc(s.handleGetWebhook))
				r.Method(http.MethodDelete, "/webhook", handlerFunc(s.handleDeleteWebhook))
				// Lifecycle events as Server-Sent Events (events.go).
				r.With(s.limitStreams).Method(http.MethodGet, "/events", handlerFunc(s.handleEvents))

				r.Method(http.MethodPost, "/execute", s.withDeadline(s.execBudget, handlerFunc(s.handleExecute)))
				r.With(s.limitStreams).Method(http.MethodPost, "/execute/stream",
					s.withDeadline(s.execBudget, handlerFunc(s.handleExecuteStream)))

				// Background processes and terminals (processes.go).
				r.Route("/processes", s.processRoutes)

				r.Method(http.MethodPut, "/files", handlerFunc(s.handleWriteFile))
				r.Method(http.MethodGet, "/files", handlerFunc(s.handleListFiles))
				r.Method(http.MethodDelete, "/files", handlerFunc(s.handleDeleteFile))
				r.Method(http.MethodGet, "/files/content", s.withDeadline(s.transferBudget, handlerFunc(s.handleReadContent)))
				r.Method(http.MethodPost, "/files/mkdir", handlerFunc(s.handleMkdir))
				r.With(s.limitStreams).Method(http.MethodGet, "/files/archive",
					s.withDeadline(s.transferBudget, handlerFunc(s.handleDownload)))
				// Stat, exists, rename, and watch streams (files_ops.go).
				r.Method(http.MethodGet, "/files/stat", handlerFunc(s.handleStat))
				r.Method(http.MethodGet, "/files/exists", handlerFunc(s.handleExists))
				r.Method(http.MethodPost, "/files/rename", handlerFunc(s.handleRename))
				r.With(s.limitStreams).Method(http.MethodGet, "/files/watch",
					s.withDeadline(s.transferBudget, handlerFunc(s.handleWatch)))
			})
			// Raw and tar uploads are bounded by their sandbox's disk (and
			// MAX_UPLOAD_BYTES when set): see limitUpload.
			r.Group(func(r chi.Router) {
				r.Use(s.limitUpload)
				r.Method(http.MethodPut, "/files/content", s.withDeadline(s.transferBudget, handlerFunc(s.handleWriteContent)))
				r.With(s.limitStreams).Method(http.MethodPut, "/files/archive",
					s.withDeadline(s.transferBudget, handlerFunc(s.handleUpload)))
			})
			// Operator endpoints, admin only (admin.go); a snapshot restore
			// takes the snapshot limit.
			r.Route("/admin", func(r chi.Router) {
				r.Use(adminOnly)
				r.With(limitBody(s.cfg.MaxBodyBytes)).Method(http.MethodGet, "/members", handlerFunc(s.handleMembers))
				r.With(limitBody(s.cfg.MaxBodyBytes)).Method(http.MethodPost, "/nodes/{node}/drain", handlerFunc(s.handleDrain))
				r.With(limitBody(s.cfg.MaxBodyBytes)).Method(http.MethodDelete, "/nodes/{node}/drain", handlerFunc(s.handleUndrain))
				r.With(limitBody(s.cfg.MaxBodyBytes)).Method(http.MethodGet, "/snapshot", s.withDeadline(s.transferBudget, handlerFunc(s.handleSnapshot)))
				r.With(limitBody(s.snapshotLimit())).Method(http.MethodPost, "/snapshot/restore", s.withDeadline(s.transferBudget, handlerFunc(s.handleRestore)))
			})
		})
	})
	return r
}

// opsRoutes is the operator listener: read-only, no token, no user data.
func (s *Server) opsRoutes() http.Handler {
	r := chi.NewRouter()
	r.Use(requestID, s.logRequests, recoverer)
	r.NotFound(handlerFunc(func(http.ResponseWriter, *http.Request) error { return errNotFound("route") }).ServeHTTP)
	r.Method(http.MethodGet, "/health", handlerFunc(s.handleHealth))
	r.Method(http.MethodGet, "/metrics", s.metricsHandler())
	r.With(s.consistency).Method(http.MethodGet, "/api/v1/sandbox/stats", handlerFunc(s.handleStats))
	r.Method(http.MethodGet, "/api/v1/cluster", handlerFunc(s.handleCluster))
	r.Method(http.MethodGet, "/api/v1/openapi.json", http.HandlerFunc(handleOpenAPI))
	return r
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{ErrorLog: nil})
}
