package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement/egress"
)

// egressState is the part of the replicated state that holds egress grants
// (*fsm.FSM implements it).
type egressState interface {
	EgressGrants() []*fsm.EgressGrant
	EgressGrantFor(user, role string) *fsm.EgressGrant
}

// grantView is a grant as the API shows it.
type grantView struct {
	Subject string   `json:"subject"`
	Allow   []string `json:"allow"`
	// Open is true when Allow is empty: any public address.
	Open bool   `json:"open"`
	By   string `json:"by,omitempty"`
	At   string `json:"at,omitempty"`
}

func viewGrant(g *fsm.EgressGrant) grantView {
	v := grantView{Subject: g.Subject, Allow: g.Allow, Open: len(g.Allow) == 0, By: g.By}
	if v.Allow == nil {
		v.Allow = []string{}
	}
	if !g.At.IsZero() {
		v.At = g.At.UTC().Format("2006-01-02T15:04:05Z")
	}
	return v
}

func (s *Server) egressState() (egressState, error) {
	es, ok := s.state.(egressState)
	if !ok {
		return nil, errors.New("state does not hold egress grants")
	}
	return es, nil
}

// handleMyEgress tells the caller whether its sandboxes may have network
// and what they may reach.
func (s *Server) handleMyEgress(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	es, err := s.egressState()
	if err != nil {
		return err
	}
	out := struct {
		Granted bool       `json:"granted"`
		Grant   *grantView `json:"grant,omitempty"`
	}{}
	if g := es.EgressGrantFor(p.User, p.Role); g != nil {
		v := viewGrant(g)
		out.Granted, out.Grant = true, &v
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleListEgressGrants lists every grant (admin).
func (s *Server) handleListEgressGrants(w http.ResponseWriter, r *http.Request) error {
	if err := requireAdmin(r); err != nil {
		return err
	}
	es, err := s.egressState()
	if err != nil {
		return err
	}
	out := []grantView{}
	for _, g := range es.EgressGrants() {
		out = append(out, viewGrant(g))
	}
	writeJSON(w, http.StatusOK, map[string]any{"grants": out})
	return nil
}

type grantRequest struct {
	Allow []string `json:"allow"`
}

// handlePutEgressGrant sets the grant for user:<id> or role:<name> (admin).
// Every entry is checked here so that a bad one is a 422 naming it, not a
// sandbox that fails to start later.
func (s *Server) handlePutEgressGrant(w http.ResponseWriter, r *http.Request) error {
	p, subject, err := adminGrantSubject(r)
	if err != nil {
		return err
	}
	var req grantRequest
	if err := decodeJSON(r, &req, true); err != nil {
		return err
	}
	if len(req.Allow) > fsm.MaxEgressAllow {
		return errUnprocessable("allow lists %d destinations; at most %d", len(req.Allow), fsm.MaxEgressAllow)
	}
	allow := make([]string, 0, len(req.Allow))
	for _, a := range req.Allow {
		e, err := egress.ParseEntry(strings.TrimSpace(a))
		if err != nil {
			return errUnprocessable("allow: %v", err)
		}
		if e.Host != "" {
			allow = append(allow, e.Host)
		} else {
			allow = append(allow, e.Prefix.String())
		}
	}
	g := fsm.EgressGrant{Subject: subject, Allow: allow, By: p.User}
	if _, err := s.apply(r.Context(), &fsm.EgressGrantSet{Grant: g}, ""); err != nil {
		return err
	}
	s.log.Info("egress granted", "subject", subject, "allow", allow, "by", p.User)
	writeJSON(w, http.StatusOK, viewGrant(&g))
	return nil
}

// handleDeleteEgressGrant removes a grant (admin). Sandboxes created under
// it keep the firewall they were created with.
func (s *Server) handleDeleteEgressGrant(w http.ResponseWriter, r *http.Request) error {
	p, subject, err := adminGrantSubject(r)
	if err != nil {
		return err
	}
	if _, err := s.apply(r.Context(), &fsm.EgressGrantSet{Grant: fsm.EgressGrant{Subject: subject}, Delete: true}, ""); err != nil {
		return err
	}
	s.log.Info("egress grant removed", "subject", subject, "by", p.User)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// adminGrantSubject checks that the caller is an admin and returns it with
// the grant subject the path names.
func adminGrantSubject(r *http.Request) (*principal, string, error) {
	if err := requireAdmin(r); err != nil {
		return nil, "", err
	}
	subject := chi.URLParam(r, "subject")
	if !fsm.ValidEgressSubject(subject) {
		return nil, "", errUnprocessable("subject %q must be user:<id> or role:<name>", subject)
	}
	return principalFrom(r.Context()), subject, nil
}

func requireAdmin(r *http.Request) error {
	if !principalFrom(r.Context()).admin() {
		return &Error{Status: http.StatusForbidden, Code: codeForbidden, Msg: "admin role required"}
	}
	return nil
}
