package api

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// protectedRoutes is every endpoint that requires an access token.
var protectedRoutes = []struct{ method, path string }{
	{"POST", "/api/v1/auth/revoke"},
	{"POST", "/api/v1/sessions"},
	{"GET", "/api/v1/sessions"},
	{"GET", "/api/v1/sessions/0123456789abcdef"},
	{"POST", "/api/v1/sessions/0123456789abcdef/pause"},
	{"POST", "/api/v1/sessions/0123456789abcdef/resume"},
	{"DELETE", "/api/v1/sessions/0123456789abcdef"},
	{"POST", "/api/v1/sandbox/acquire"},
	{"POST", "/api/v1/sandbox/release"},
	{"GET", "/api/v1/sandbox/stats"},
	{"GET", "/api/v1/sandbox/0123456789abcdef"},
	{"GET", "/api/v1/sandboxes"},
	{"POST", "/api/v1/execute"},
	{"POST", "/api/v1/execute/stream"},
	{"PUT", "/api/v1/files"},
	{"GET", "/api/v1/files"},
	{"DELETE", "/api/v1/files"},
	{"GET", "/api/v1/files/content"},
	{"PUT", "/api/v1/files/content"},
	{"POST", "/api/v1/files/mkdir"},
	{"GET", "/api/v1/files/archive"},
	{"PUT", "/api/v1/files/archive"},
}

func signed(t *testing.T, method jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func TestBadTokensAre401(t *testing.T) {
	e := newEnv(t)
	secret := []byte(e.cfg.JWTSecret)
	now := time.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "alice", "role": "user", "iss": "cloud-sandbox", "aud": "cloud-sandbox", "typ": "access",
			"jti": "j1", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	}
	with := func(k string, v any) jwt.MapClaims {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	refresh := e.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": "alice"}).str("refresh_token")
	none := signed(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good())
	valid := signed(t, jwt.SigningMethodHS256, secret, good())
	parts := strings.Split(valid, ".")
	// Same claims, header switched to alg none and signature dropped.
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."

	tokens := []struct{ name, header string }{
		{"missing", ""},
		{"not bearer", "Basic " + valid},
		{"malformed", "Bearer not.a.jwt"},
		{"garbage", "Bearer " + strings.Repeat("x", 40)},
		{"expired", "Bearer " + signed(t, jwt.SigningMethodHS256, secret, with("exp", now.Add(-time.Hour).Unix()))},
		{"no exp", "Bearer " + signed(t, jwt.SigningMethodHS256, secret, with("exp", nil))},
		{"no iat", "Bearer " + signed(t, jwt.SigningMethodHS256, secret, with("iat", nil))},
		{"iat in future", "Bearer " + signed(t, jwt.SigningMethodHS256, secret, with("iat", now.Add(time.Hour).Unix()))},
		{"wrong issuer", "Bearer " + signed(t, jwt.SigningMethodHS256, secret, with("iss", "evil"))},
		{"no issuer", "Bearer " + signed(t, jwt.SigningMethodHS256, secret, with("iss", nil))},
		{"wrong audience", "Bearer " + signed(t, jwt.SigningMethodHS256, secret, with("aud", "another-service"))},
		{"no audience", "Bearer " + signed(t, jwt.SigningMethodHS256, secret, with("aud", nil))},
		{"wrong signature", "Bearer " + signed(t, jwt.SigningMethodHS256, []byte("another-secret"), good())},
		{"HS512", "Bearer " + signed(t, jwt.SigningMethodHS512, secret, good())},
		{"alg none", "Bearer " + none},
		{"alg none header swap", "Bearer " + noneHeader},
		{"refresh as access", "Bearer " + refresh},
		{"no typ", "Bearer " + signed(t, jwt.SigningMethodHS256, secret, with("typ", nil))},
		{"unknown role", "Bearer " + signed(t, jwt.SigningMethodHS256, secret, with("role", "root"))},
		{"no subject", "Bearer " + signed(t, jwt.SigningMethodHS256, secret, with("sub", nil))},
	}
	for _, tok := range tokens {
		t.Run(tok.name, func(t *testing.T) {
			for _, rt := range protectedRoutes {
				var hdr []string
				if tok.header != "" {
					hdr = []string{"Authorization", tok.header}
				}
				r := e.call(rt.method, rt.path, "", "{}", hdr...)
				if r.status != http.StatusUnauthorized || r.str("code") != codeUnauthorized {
					t.Errorf("%s %s: %d %s, want 401 unauthorized", rt.method, rt.path, r.status, r.raw)
				}
			}
		})
	}
	// The control: the same claims correctly signed are accepted.
	if r := e.call("GET", "/api/v1/sessions", valid, nil); r.status != http.StatusOK {
		t.Fatalf("valid token: %d %s", r.status, r.raw)
	}
}

func TestRefreshRotation(t *testing.T) {
	e := newEnv(t)
	r := e.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": "alice"})
	access, refresh := r.str("access_token"), r.str("refresh_token")

	r = e.call("POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": access})
	expect(t, r, http.StatusUnauthorized, codeUnauthorized) // an access token is not a refresh token

	r = e.call("POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": refresh})
	expect(t, r, http.StatusOK, "")
	next := r.str("refresh_token")
	if next == "" || next == refresh || r.str("access_token") == "" {
		t.Fatalf("refresh = %s", r.raw)
	}
	if r := e.call("GET", "/api/v1/sessions", r.str("access_token"), nil); r.status != http.StatusOK {
		t.Fatalf("refreshed access token refused: %s", r.raw)
	}

	r = e.call("POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": refresh})
	expect(t, r, http.StatusUnauthorized, codeUnauthorized) // rotated: the old one is revoked

	r = e.call("POST", "/api/v1/auth/revoke", access, map[string]string{"refresh_token": next})
	expect(t, r, http.StatusNoContent, "")
	r = e.call("POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": next})
	expect(t, r, http.StatusUnauthorized, codeUnauthorized)

	bob := e.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": "bob"}).str("refresh_token")
	r = e.call("POST", "/api/v1/auth/revoke", access, map[string]string{"refresh_token": bob})
	expect(t, r, http.StatusForbidden, codeForbidden)
}

func TestTokenEndpointDevelopment(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"user", map[string]string{"user_id": "alice", "role": "user"}, 200, ""},
		{"default role", map[string]string{"user_id": "alice"}, 200, ""},
		{"admin", map[string]string{"user_id": "root", "role": "admin"}, 200, ""},
		{"missing user", map[string]string{"role": "user"}, 400, codeBadRequest},
		{"bad user chars", map[string]string{"user_id": "a b/c"}, 422, codeUnprocessable},
		{"unknown role", map[string]string{"user_id": "alice", "role": "root"}, 422, codeUnprocessable},
		{"wrong type", `{"user_id": 5}`, 400, codeBadRequest},
		{"malformed", `{"user_id": "alice"`, 400, codeBadRequest},
		{"empty body", "", 400, codeBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expect(t, e.call("POST", "/api/v1/auth/token", "", c.body), c.status, c.code)
		})
	}
}

func TestProductionMode(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-prod"
	keys := []APIKey{{Key: "k-alice", User: "alice", Role: RoleUser}, {Key: "k-ops", User: "ops", Role: RoleAdmin}}
	e := newEnv(t, func(c *Config, _ *fsmPool) {
		c.Mode, c.JWTSecret, c.APIKeys = ModeProduction, secret, keys
	})
	cases := []struct {
		name     string
		body     any
		headers  []string
		status   int
		wantUser string
		wantRole string
	}{
		{"no key", map[string]string{"user_id": "alice", "role": "admin"}, nil, 401, "", ""},
		{"wrong key", map[string]string{"api_key": "nope"}, nil, 401, "", ""},
		{"key in body ignores body role", map[string]string{"api_key": "k-alice", "user_id": "root", "role": "admin"}, nil, 200, "alice", "user"},
		{"key in header", nil, []string{"X-API-Key", "k-ops"}, 200, "ops", "admin"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.call("POST", "/api/v1/auth/token", "", c.body, c.headers...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.raw)
			}
			if c.status != 200 {
				return
			}
			tok, err := jwt.ParseWithClaims(r.str("access_token"), &claims{}, func(*jwt.Token) (any, error) { return []byte(secret), nil })
			if err != nil {
				t.Fatalf("parse issued token: %v", err)
			}
			cl := tok.Claims.(*claims)
			if cl.Subject != c.wantUser || cl.Role != c.wantRole {
				t.Fatalf("token for %s/%s, want %s/%s", cl.Subject, cl.Role, c.wantUser, c.wantRole)
			}
		})
	}
	// A token signed with the development default is worthless here.
	dev := signed(t, jwt.SigningMethodHS256, []byte(DefaultJWTSecret), jwt.MapClaims{"sub": "alice", "role": "admin",
		"iss": "cloud-sandbox", "aud": "cloud-sandbox", "typ": "access", "jti": "x", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	expect(t, e.call("GET", "/api/v1/sessions", dev, nil), http.StatusUnauthorized, codeUnauthorized)
}
