package api

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

type tokenRequest struct {
	UserID string `json:"user_id"`
	Role   string `json:"role"`
	APIKey string `json:"api_key"`
}

// handleToken issues a token pair. Development mode trusts the body's user
// id (the guide's open flow) but never its role alone: admin is granted only
// to ADMIN_USERS (see grantedRole). Production mode takes identity and role
// only from an API key, never from the body.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) error {
	var req tokenRequest
	if err := decodeJSON(r, &req, s.cfg.Mode == ModeProduction); err != nil {
		return err
	}
	var user, role string
	if s.cfg.Mode == ModeProduction {
		key := r.Header.Get("X-API-Key")
		if key == "" {
			key = req.APIKey
		}
		if key == "" {
			return errUnauthorized("an API key is required (X-API-Key header or api_key field)", nil)
		}
		k, ok := s.lookupAPIKey(key)
		if !ok {
			return errUnauthorized("invalid API key", nil)
		}
		user, role = k.User, k.Role
	} else {
		if req.UserID == "" {
			return errBadRequest("user_id is required")
		}
		if !validUserID(req.UserID) {
			return errUnprocessable("user_id must be 1-128 characters of [A-Za-z0-9._@-]")
		}
		if req.Role != "" && req.Role != RoleUser && req.Role != RoleAdmin {
			return errUnprocessable("role must be %q or %q", RoleUser, RoleAdmin)
		}
		user, role = req.UserID, s.grantedRole(req.UserID, req.Role)
	}
	pair, err := s.tokens.issue(user, role)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, pair)
	return nil
}

// grantedRole is the role a development-mode token carries: what the body
// asks for, except that admin needs the operator's consent: only the users
// in ADMIN_USERS get it, and anyone else asking for it gets user (not an
// error, so the guide's body keeps working). With ADMIN_USERS unset nobody
// is admin.
func (s *Server) grantedRole(user, asked string) string {
	if asked != RoleAdmin {
		return RoleUser
	}
	if slices.Contains(s.cfg.AdminUsers, user) {
		return RoleAdmin
	}
	return RoleUser
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// revokeRequest names the tokens to revoke; at least one is required.
type revokeRequest struct {
	RefreshToken string `json:"refresh_token"`
	AccessToken  string `json:"access_token"`
}

// handleRefresh rotates a refresh token: the old one is revoked through Raft
// before the new pair is handed out, so a stolen refresh token works once.
func (s *Server) handleRefresh(w http.ResponseWriter, r *http.Request) error {
	var req refreshRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	if req.RefreshToken == "" {
		return errBadRequest("refresh_token is required")
	}
	c, err := s.tokens.verify(req.RefreshToken, typRefresh)
	if err != nil {
		return err
	}
	if s.cfg.Mode == ModeProduction && !s.userHasKey(c.Subject, c.Role) {
		return errUnauthorized("the API key behind this token was removed", nil)
	}
	if err := s.revokeRefresh(r, c); err != nil {
		return err
	}
	pair, err := s.tokens.issue(c.Subject, c.Role)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, pair)
	return nil
}

// handleRevoke revokes the caller's refresh and/or access tokens (admin:
// anyone's). Both kinds go into the FSM's revoked-token table by jti; every
// node refuses a revoked access token once it has applied the entry.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	var req revokeRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	if req.RefreshToken == "" && req.AccessToken == "" {
		return errBadRequest("refresh_token or access_token is required")
	}
	var victims []*claims
	for _, t := range []struct{ raw, typ string }{{req.RefreshToken, typRefresh}, {req.AccessToken, typAccess}} {
		if t.raw == "" {
			continue
		}
		c, err := s.tokens.verify(t.raw, t.typ)
		if errors.Is(err, errTokenExpired) {
			continue // an expired token is refused anyway: nothing to revoke
		}
		if err != nil {
			return errBadRequest("%s_token is not a valid %s token", t.typ, t.typ)
		}
		if c.Subject != p.User && !p.admin() {
			return &Error{Status: http.StatusForbidden, Code: codeForbidden, Msg: t.typ + " token belongs to another user"}
		}
		victims = append(victims, c)
	}
	for _, c := range victims {
		if err := s.revokeToken(r.Context(), c); err != nil {
			return err
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// revokeToken records c's jti as revoked until c expires. Revoking twice is
// fine here (the endpoint is idempotent), unlike in refresh rotation.
func (s *Server) revokeToken(ctx context.Context, c *claims) error {
	cmd := &fsm.TokenRevoke{TokenID: c.ID, ExpiresAt: c.ExpiresAt.Time.UTC()}
	if _, err := s.apply(ctx, cmd, ""); err != nil && !errors.Is(err, fsm.ErrExists) {
		return err
	}
	return nil
}

// revokeRefresh checks that c is not revoked (after a consistent read, so a
// token revoked on another node a moment ago counts) and revokes it. When the
// FSM answers a second revocation of one id with exists/conflict, two racing
// refreshes of one token cannot both win: the loser gets 401.
func (s *Server) revokeRefresh(r *http.Request, c *claims) error {
	ctx := r.Context()
	if err := s.cluster.ConsistentRead(ctx); err != nil {
		return errUnavailable("cluster unavailable", err)
	}
	if s.state.TokenRevoked(c.ID) {
		return errUnauthorized("refresh token revoked", nil)
	}
	cmd := &fsm.TokenRevoke{TokenID: c.ID, ExpiresAt: c.ExpiresAt.Time.UTC()}
	if _, err := s.apply(ctx, cmd, ""); err != nil {
		if errors.Is(err, fsm.ErrExists) || errors.Is(err, fsm.ErrConflict) {
			return errUnauthorized("refresh token revoked", nil)
		}
		return err
	}
	return nil
}

func (s *Server) userHasKey(user, role string) bool {
	for _, k := range s.cfg.APIKeys {
		if k.User == user && k.Role == role {
			return true
		}
	}
	return false
}
