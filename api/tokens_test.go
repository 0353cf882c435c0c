package api

import (
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// claimsOf reads a token's claims without checking it: the test only looks.
func claimsOf(t *testing.T, raw string) jwt.MapClaims {
	t.Helper()
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, c); err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	return c
}

func TestDevelopmentAdminNeedsOperatorConsent(t *testing.T) {
	cases := []struct {
		name       string
		adminUsers []string
		user, role string
		want       string
	}{
		{"listed user asking admin", []string{"root", "ops"}, "ops", "admin", RoleAdmin},
		{"unlisted user asking admin", []string{"root"}, "mallory", "admin", RoleUser},
		{"listed user asking user", []string{"root"}, "root", "user", RoleUser},
		{"listed user asking nothing", []string{"root"}, "root", "", RoleUser},
		// No ADMIN_USERS: the open development behaviour stays (start-up warns).
		{"no admin users configured: nobody is admin", nil, "anyone", "admin", RoleUser},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(cfg *Config, _ *fsmPool) { cfg.AdminUsers = c.adminUsers })
			r := e.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": c.user, "role": c.role})
			expect(t, r, http.StatusOK, "")
			for _, field := range []string{"access_token", "refresh_token"} {
				if got := claimsOf(t, r.str(field))["role"]; got != c.want {
					t.Errorf("%s role = %v, want %s", field, got, c.want)
				}
			}
			// The role holds where it matters: only an admin lists everyone's sandboxes.
			other := e.token("bob", "user")
			e.acquire(other)
			n := len(e.call("GET", "/api/v1/sandboxes", r.str("access_token"), nil).body["sandboxes"].([]any))
			if wantN := map[string]int{RoleAdmin: 1, RoleUser: 0}[c.want]; n != wantN {
				t.Errorf("sandboxes listed = %d, want %d for role %s", n, wantN, c.want)
			}
		})
	}
}

func TestAccessTokenClaims(t *testing.T) {
	e := newEnv(t)
	r := e.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": "alice"})
	c := claimsOf(t, r.str("access_token"))
	aud, err := c.GetAudience()
	if err != nil || len(aud) != 1 || aud[0] != "cloud-sandbox" {
		t.Errorf("aud = %v (%v), want [cloud-sandbox]", aud, err)
	}
	// expires_in is the configured lifetime in seconds: 15 minutes by
	// default, not the guide's example day.
	if got := r.str("expires_in"); got != "900" {
		t.Errorf("expires_in = %q, want 900", got)
	}
	short := newEnv(t, func(cfg *Config, _ *fsmPool) { cfg.AccessTTL = 3 * time.Second })
	r = short.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": "alice"})
	exp, _ := claimsOf(t, r.str("access_token")).GetExpirationTime()
	iat, _ := claimsOf(t, r.str("access_token")).GetIssuedAt()
	if got := r.str("expires_in"); got != "3" || exp.Sub(iat.Time).Seconds() != 3 {
		t.Errorf("ACCESS_TOKEN_TTL=3: expires_in %q, exp-iat %v; want 3 both", got, exp.Sub(iat.Time))
	}
}

// TestExpiredAccessTokenRefreshes is the short-lived token's cycle: once the
// access token the server issued is past its lifetime (and the clock-drift
// leeway) it is refused with "token expired", the message the SDK refreshes
// on, and the pair the refresh token buys works.
func TestExpiredAccessTokenRefreshes(t *testing.T) {
	e := newEnv(t)
	// Issue as if 15 min + 1 min ago: the access token expired a minute
	// ago, beyond the 30 s leeway; the refresh token has days left.
	e.srv.tokens.now = func() time.Time { return time.Now().Add(-e.cfg.AccessTTL - time.Minute) }
	old := e.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": "alice"})
	expect(t, old, http.StatusOK, "")
	e.srv.tokens.now = time.Now

	r := e.call("GET", "/api/v1/sessions", old.str("access_token"), nil)
	expect(t, r, http.StatusUnauthorized, codeUnauthorized)
	if got := r.str("error"); got != "token expired" {
		t.Errorf("expired token refused with %q, want \"token expired\"", got)
	}

	r = e.call("POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": old.str("refresh_token")})
	expect(t, r, http.StatusOK, "")
	if r.str("expires_in") != "900" || r.str("refresh_token") == old.str("refresh_token") {
		t.Fatalf("refresh answer %s: want expires_in 900 and a new refresh token", r.raw)
	}
	expect(t, e.call("GET", "/api/v1/sessions", r.str("access_token"), nil), http.StatusOK, "")
	// Rotation: the refresh token just used is spent.
	expect(t, e.call("POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": old.str("refresh_token")}),
		http.StatusUnauthorized, codeUnauthorized)
}

func TestRevokeAccessToken(t *testing.T) {
	e := newEnv(t)
	alice := e.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": "alice"})
	stolen, refresh := alice.str("access_token"), alice.str("refresh_token")
	other := e.token("alice", "user") // another of alice's sessions
	bob := e.token("bob", "user")

	expect(t, e.call("GET", "/api/v1/sessions", stolen, nil), http.StatusOK, "")
	// Bob cannot revoke alice's token.
	expect(t, e.call("POST", "/api/v1/auth/revoke", bob, map[string]string{"access_token": stolen}), http.StatusForbidden, codeForbidden)
	expect(t, e.call("GET", "/api/v1/sessions", stolen, nil), http.StatusOK, "")

	expect(t, e.call("POST", "/api/v1/auth/revoke", other, map[string]string{"access_token": stolen}), http.StatusNoContent, "")
	r := e.call("GET", "/api/v1/sessions", stolen, nil)
	expect(t, r, http.StatusUnauthorized, codeUnauthorized)
	// Only that token: alice's other token and the refresh token still work.
	expect(t, e.call("GET", "/api/v1/sessions", other, nil), http.StatusOK, "")
	// Revoking again is fine (idempotent); a garbage token is 400.
	expect(t, e.call("POST", "/api/v1/auth/revoke", other, map[string]string{"access_token": stolen}), http.StatusNoContent, "")
	expect(t, e.call("POST", "/api/v1/auth/revoke", other, map[string]string{"access_token": "x.y.z"}), http.StatusBadRequest, codeBadRequest)
	expect(t, e.call("POST", "/api/v1/auth/revoke", other, map[string]string{}), http.StatusBadRequest, codeBadRequest)

	// A token can revoke itself (logout), together with its refresh token.
	expect(t, e.call("POST", "/api/v1/auth/revoke", other, map[string]string{"access_token": other, "refresh_token": refresh}), http.StatusNoContent, "")
	expect(t, e.call("GET", "/api/v1/sessions", other, nil), http.StatusUnauthorized, codeUnauthorized)
	expect(t, e.call("POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": refresh}), http.StatusUnauthorized, codeUnauthorized)

	// The revocation is replicated state: the FSM holds the jti.
	if jti, _ := claimsOf(t, stolen)["jti"].(string); !e.fsm.TokenRevoked(jti) {
		t.Errorf("jti %s not in the FSM's revoked table", jti)
	}
}
