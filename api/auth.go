package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token types carried in the typ claim: a refresh token is never accepted
// where an access token is required, nor the other way round.
const (
	typAccess  = "access"
	typRefresh = "refresh"
)

// errTokenExpired is wrapped by verify's 401 for an expired token, so revoke
// can tell "nothing left to revoke" from "not a token".
var errTokenExpired = errors.New("token expired")

// claims are the JWT claims we issue and require.
type claims struct {
	Role string `json:"role"`
	Typ  string `json:"typ"`
	jwt.RegisteredClaims
}

// principal is the authenticated caller.
type principal struct {
	User    string
	Role    string
	TokenID string
	// Expires is when the access token expires: a revocation of it is kept
	// that long and no longer.
	Expires time.Time
}

func (p *principal) admin() bool { return p.Role == RoleAdmin }

type principalKey struct{}

func principalFrom(ctx context.Context) *principal {
	p, _ := ctx.Value(principalKey{}).(*principal)
	return p
}

// tokenIssuer signs and verifies HS256 tokens.
type tokenIssuer struct {
	secret     []byte
	issuer     string
	audience   string
	accessTTL  time.Duration
	refreshTTL time.Duration
	parser     *jwt.Parser
	now        func() time.Time
}

func newTokenIssuer(cfg Config) *tokenIssuer {
	return &tokenIssuer{
		secret:     []byte(cfg.JWTSecret),
		issuer:     cfg.Issuer,
		audience:   cfg.Audience,
		accessTTL:  cfg.AccessTTL,
		refreshTTL: cfg.RefreshTTL,
		now:        time.Now,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithIssuedAt(),
			jwt.WithExpirationRequired(),
			// Nodes' clocks drift a little; a token minted on another node
			// a moment "in the future" is still good.
			jwt.WithLeeway(30*time.Second),
		),
	}
}

// tokenPair is the token endpoint's answer (the guide's shape).
type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    string `json:"expires_in"`
}

func (t *tokenIssuer) sign(user, role, typ string, now time.Time, ttl time.Duration) (string, error) {
	c := claims{
		Role: role,
		Typ:  typ,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   user,
			Issuer:    t.issuer,
			Audience:  jwt.ClaimStrings{t.audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        newID() + newID(),
		},
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.secret)
	if err != nil {
		return "", fmt.Errorf("sign %s token: %w", typ, err)
	}
	return s, nil
}

// issue makes an access and a refresh token for user.
func (t *tokenIssuer) issue(user, role string) (tokenPair, error) {
	now := t.now()
	access, err := t.sign(user, role, typAccess, now, t.accessTTL)
	if err != nil {
		return tokenPair{}, err
	}
	refresh, err := t.sign(user, role, typRefresh, now, t.refreshTTL)
	if err != nil {
		return tokenPair{}, err
	}
	return tokenPair{
		AccessToken:  access,
		RefreshToken: refresh,
		TokenType:    "Bearer",
		ExpiresIn:    strconv.FormatInt(int64(t.accessTTL/time.Second), 10),
	}, nil
}

// verify parses raw and checks signature, algorithm, iss, aud, iat, exp, sub,
// jti, role and that typ is want.
func (t *tokenIssuer) verify(raw, want string) (*claims, error) {
	var c claims
	_, err := t.parser.ParseWithClaims(raw, &c, func(tok *jwt.Token) (any, error) {
		if _, ok := tok.Method.(*jwt.SigningMethodHMAC); !ok {
			return nil, fmt.Errorf("unexpected signing method %v", tok.Header["alg"])
		}
		return t.secret, nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, errUnauthorized("token expired", errTokenExpired)
	case err != nil:
		return nil, errUnauthorized("invalid token", err)
	case c.IssuedAt == nil:
		return nil, errUnauthorized("invalid token: iat missing", nil)
	case c.Subject == "" || c.ID == "":
		return nil, errUnauthorized("invalid token: sub or jti missing", nil)
	case c.Role != RoleUser && c.Role != RoleAdmin:
		return nil, errUnauthorized("invalid token: unknown role", nil)
	case c.Typ != want:
		return nil, errUnauthorized(fmt.Sprintf("invalid token: a %s token is required", want), nil)
	}
	return &c, nil
}

// authenticate requires a valid access token and puts the caller in the context.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cloud-sandbox"`)
			writeError(w, r, errUnauthorized("missing bearer token", nil))
			return
		}
		c, err := s.tokens.verify(raw, typAccess)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cloud-sandbox", error="invalid_token"`)
			writeError(w, r, err)
			return
		}
		// A local read, no consistent read: a revocation reaches this node's
		// FSM as soon as the node applies it (milliseconds behind the
		// leader), and every request paying a leader round trip is not worth
		// closing that gap.
		if s.state.TokenRevoked(c.ID) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cloud-sandbox", error="invalid_token"`)
			writeError(w, r, errUnauthorized("token revoked", nil))
			return
		}
		p := &principal{User: c.Subject, Role: c.Role, TokenID: c.ID, Expires: c.ExpiresAt.Time.UTC()}
		if info, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
			info.user = p.User
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// lookupAPIKey finds key in constant time per entry, so timing does not leak
// how much of a key matched.
func (s *Server) lookupAPIKey(key string) (APIKey, bool) {
	var found APIKey
	ok := false
	for _, k := range s.cfg.APIKeys {
		if subtle.ConstantTimeCompare([]byte(k.Key), []byte(key)) == 1 {
			found, ok = k, true
		}
	}
	return found, ok
}
