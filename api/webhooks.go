package api

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"

	"github.com/cloud-sandbox/cloud-sandbox/api/webhook"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// A user's webhook: the leader POSTs each of the user's sandbox events to
// it, signed, in order, at least once (api/webhook). One per user.

type webhookRequest struct {
	URL string `json:"url"`
	// Secret signs deliveries; the server makes one when it is empty.
	Secret string `json:"secret"`
}

// webhookView is a webhook without its secret; PUT adds the secret once.
type webhookView struct {
	URL           string `json:"url"`
	Secret        string `json:"secret,omitempty"`
	CreatedAt     string `json:"created_at"`
	Delivered     uint64 `json:"delivered"`
	Failures      int    `json:"failures"`
	LastError     string `json:"last_error,omitempty"`
	LastAttemptAt string `json:"last_attempt_at,omitempty"`
}

func viewWebhook(w *fsm.Webhook) webhookView {
	return webhookView{URL: w.URL, CreatedAt: rfc3339(w.CreatedAt), Delivered: w.Delivered, Failures: w.Failures,
		LastError: w.LastError, LastAttemptAt: rfc3339(w.LastAttemptAt)}
}

const (
	maxWebhookURL     = 2048
	minWebhookSecret  = 16
	maxWebhookSecret  = 256
	webhookSecretSize = 32
)

// checkWebhookURL refuses what the deliverer could not or must not post
// to. A host that is an address is checked here too (a name is checked
// when it resolves, at every delivery).
func (s *Server) checkWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "" || len(raw) > maxWebhookURL:
		return errUnprocessable("url is required, at most %d bytes", maxWebhookURL)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil:
		return errUnprocessable("url must be an absolute http(s) URL without credentials")
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && !s.cfg.WebhookAllowPrivate && !webhook.PublicIP(ip) {
		return errUnprocessable("url %s is not a public address; an operator may allow private ones with WEBHOOK_ALLOW_PRIVATE=true", u.Hostname())
	}
	return nil
}

// handlePutWebhook answers PUT /api/v1/webhook: make or replace the
// caller's webhook. The answer carries the secret, the only time it is shown.
func (s *Server) handlePutWebhook(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	var req webhookRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	if err := s.checkWebhookURL(req.URL); err != nil {
		return err
	}
	if req.Secret == "" {
		b := make([]byte, webhookSecretSize)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		req.Secret = hex.EncodeToString(b)
	} else if len(req.Secret) < minWebhookSecret || len(req.Secret) > maxWebhookSecret {
		return errUnprocessable("secret must be %d-%d bytes (or absent: the server makes one)", minWebhookSecret, maxWebhookSecret)
	}
	resp, err := s.apply(r.Context(), &fsm.WebhookSet{User: p.User, URL: req.URL, Secret: req.Secret}, "")
	if err != nil {
		return err
	}
	v := viewWebhook(resp.Webhook)
	v.Secret = req.Secret
	writeJSON(w, http.StatusOK, v)
	return nil
}

// handleGetWebhook answers GET /api/v1/webhook with the caller's webhook
// and how its deliveries go.
func (s *Server) handleGetWebhook(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	hook := s.webhooks().Webhook(p.User)
	if hook == nil {
		return errNotFound("webhook")
	}
	writeJSON(w, http.StatusOK, viewWebhook(hook))
	return nil
}

func (s *Server) handleDeleteWebhook(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	if _, err := s.apply(r.Context(), &fsm.WebhookSet{User: p.User, Delete: true}, ""); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// webhookState is the read side of webhooks; *fsm.FSM provides it.
type webhookState interface {
	Webhook(user string) *fsm.Webhook
}

type noWebhooks struct{}

func (noWebhooks) Webhook(string) *fsm.Webhook { return nil }

func (s *Server) webhooks() webhookState {
	if ws, ok := s.state.(webhookState); ok {
		return ws
	}
	return noWebhooks{}
}
