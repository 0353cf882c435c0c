package api

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Modes of the API. Development trusts the token endpoint's body (the guide's
// open flow); production issues tokens only against an API key.
const (
	ModeDevelopment = "development"
	ModeProduction  = "production"
)

// DefaultJWTSecret is the guide's default; it is refused in production mode.
const DefaultJWTSecret = "cloud-sandbox-secret"

// minProductionSecret is the shortest HS256 secret production accepts: a
// shorter one is brute-forceable from a single captured token.
const minProductionSecret = 32

// Roles a token can carry.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
)

// APIKey maps a production API key to the identity its tokens carry.
type APIKey struct {
	Key  string
	User string
	Role string
}

// Config configures the REST API.
type Config struct {
	// JWTSecret signs and verifies HS256 tokens.
	JWTSecret string
	// Mode is ModeDevelopment or ModeProduction.
	Mode string
	// APIKeys are the keys production mode issues tokens for.
	APIKeys []APIKey
	// AdminUsers are the user ids that may hold the admin role in
	// development mode (ADMIN_USERS). Production takes roles from APIKeys.
	AdminUsers []string
	// Issuer is the iss claim written and required.
	Issuer string
	// Audience is the aud claim written and required: a token minted for
	// another service that shares the secret is refused here.
	Audience string
	// AccessTTL is the access token lifetime (ACCESS_TOKEN_TTL).
	AccessTTL  time.Duration
	RefreshTTL time.Duration

	// AllowedImages are the image patterns acquire and session create accept
	// besides DefaultImage and the pool's image (SANDBOX_ALLOWED_IMAGES, "*"
	// matches any run of characters). Empty: the pool's image only. A bare
	// "*" opens every image, and start-up warns (api/DESIGN.md, "Images").
	AllowedImages []string

	// DefaultImage is used when a session or acquire names no image.
	DefaultImage    string
	DefaultCPUCount float64
	DefaultMemoryMB int64

	// NoNetworkRuntime names the runtime sandboxes run under when it gives
	// them no network (gVisor with --network=none): acquire and session
	// create with network true are then a 422 naming it, not a sandbox
	// whose placement fails later. Empty: network is offered.
	NoNetworkRuntime string

	// ReadyTimeout bounds how long acquire and session create wait for a
	// sandbox created on demand to become active.
	ReadyTimeout time.Duration
	// MaxBodyBytes bounds JSON bodies. MaxUploadBytes bounds raw and tar
	// uploads on top of the bound every upload has anyway, its sandbox's
	// disk size; zero (the default) leaves the disk as the only bound.
	MaxBodyBytes   int64
	MaxUploadBytes int64
	// MaxOutputBytes caps each of stdout and stderr of one execution.
	MaxOutputBytes int64
	// MaxExecTimeout is the largest timeout an execution may ask for.
	MaxExecTimeout time.Duration
	// DefaultExecTimeout applies when a request names none.
	DefaultExecTimeout time.Duration

	// ReadTimeout bounds reading a whole request, WriteTimeout answering it,
	// IdleTimeout a keep-alive connection between requests (HTTP_*_TIMEOUT).
	// Routes that legitimately take longer move their own deadlines
	// (deadlines.go): exec by its timeout, transfers by TransferTimeout.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// TransferTimeout bounds one archive or raw file transfer, either way.
	TransferTimeout time.Duration
	// MaxStreamsPerUser caps one user's concurrent streaming execs and
	// archive transfers (429 beyond).
	MaxStreamsPerUser int

	// RateLimitRPS and RateLimitBurst shape each user's token bucket.
	RateLimitRPS   float64
	RateLimitBurst int

	// DefaultIdleTimeout releases an acquired sandbox (or deletes a session)
	// unused for this long when the request names no timeout; zero: never.
	// It is what keeps an agent that forgets to release from holding a
	// sandbox forever.
	DefaultIdleTimeout time.Duration
	// DefaultLifetime is the hard end of an acquired sandbox's or a session's
	// life when the request names none; zero: none.
	DefaultLifetime time.Duration

	// TouchInterval is the least time between two activity records of one sandbox.
	TouchInterval time.Duration
	// IndexWaitTimeout (INDEX_WAIT_TIMEOUT) bounds each consistency wait: for
	// an index a request names, for the catch-up before a 404 or 409, and for
	// a request that arrives while the node is still catching up at start.
	IndexWaitTimeout time.Duration

	// WebhookAllowPrivate (WEBHOOK_ALLOW_PRIVATE) lets webhooks reach
	// loopback, private and link-local addresses: on in development mode,
	// off in production unless set.
	WebhookAllowPrivate bool

	Logger *slog.Logger
}

// DefaultConfig returns the development defaults of api/DESIGN.md.
func DefaultConfig() Config {
	return Config{
		JWTSecret: DefaultJWTSecret,
		Mode:      ModeDevelopment,
		Issuer:    "cloud-sandbox",
		Audience:  "cloud-sandbox",
		// Minutes, not the guide's example day ("expires_in": "86400"): a
		// leaked access token is good only this long, and clients refresh
		// with the refresh token (the SDK does it for them). expires_in
		// reports the real value ("900"); ACCESS_TOKEN_TTL changes it
		// (api/DESIGN.md, "Tokens").
		AccessTTL:          15 * time.Minute,
		RefreshTTL:         7 * 24 * time.Hour,
		DefaultImage:       "python:3.11-slim",
		DefaultCPUCount:    1,
		DefaultMemoryMB:    512,
		ReadyTimeout:       60 * time.Second,
		MaxBodyBytes:       10 << 20,
		MaxUploadBytes:     0, // each sandbox's disk size
		MaxOutputBytes:     1 << 20,
		MaxExecTimeout:     300 * time.Second,
		DefaultExecTimeout: 30 * time.Second,
		ReadTimeout:        time.Minute,
		// WriteTimeout 0: derived, 2 min or SANDBOX_READY_TIMEOUT + 30 s if
		// longer, since any sandbox call may wait that long for a resume.
		WriteTimeout:      0,
		IdleTimeout:       2 * time.Minute,
		TransferTimeout:   time.Hour,
		MaxStreamsPerUser: 8,
		RateLimitRPS:      50,
		RateLimitBurst:    100,
		TouchInterval:     10 * time.Second,
		IndexWaitTimeout:  5 * time.Second,
		// Development: a webhook receiver on this machine is the usual case.
		WebhookAllowPrivate: true,
		DefaultIdleTimeout:  30 * time.Minute,
		DefaultLifetime:     24 * time.Hour,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.JWTSecret == "" && c.Mode != ModeProduction {
		c.JWTSecret = d.JWTSecret
	}
	if c.Mode == "" {
		c.Mode = d.Mode
	}
	if c.Issuer == "" {
		c.Issuer = d.Issuer
	}
	if c.Audience == "" {
		c.Audience = d.Audience
	}
	if c.AccessTTL == 0 {
		c.AccessTTL = d.AccessTTL
	}
	if c.RefreshTTL == 0 {
		c.RefreshTTL = d.RefreshTTL
	}
	if c.DefaultImage == "" {
		c.DefaultImage = d.DefaultImage
	}
	if c.DefaultCPUCount == 0 {
		c.DefaultCPUCount = d.DefaultCPUCount
	}
	if c.DefaultMemoryMB == 0 {
		c.DefaultMemoryMB = d.DefaultMemoryMB
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = d.ReadyTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.MaxUploadBytes == 0 {
		c.MaxUploadBytes = d.MaxUploadBytes
	}
	if c.MaxOutputBytes == 0 {
		c.MaxOutputBytes = d.MaxOutputBytes
	}
	if c.MaxExecTimeout == 0 {
		c.MaxExecTimeout = d.MaxExecTimeout
	}
	if c.DefaultExecTimeout == 0 {
		c.DefaultExecTimeout = min(d.DefaultExecTimeout, c.MaxExecTimeout)
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = d.ReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = max(2*time.Minute, c.ReadyTimeout+deadlineMargin)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.TransferTimeout == 0 {
		c.TransferTimeout = d.TransferTimeout
	}
	if c.MaxStreamsPerUser == 0 {
		c.MaxStreamsPerUser = d.MaxStreamsPerUser
	}
	if c.RateLimitRPS == 0 {
		c.RateLimitRPS = d.RateLimitRPS
	}
	if c.RateLimitBurst == 0 {
		c.RateLimitBurst = d.RateLimitBurst
	}
	if c.TouchInterval == 0 {
		c.TouchInterval = d.TouchInterval
	}
	if c.IndexWaitTimeout == 0 {
		c.IndexWaitTimeout = d.IndexWaitTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first setting that cannot work. New calls it after
// filling defaults.
func (c Config) Validate() error {
	switch c.Mode {
	case ModeDevelopment:
	case ModeProduction:
		if c.JWTSecret == DefaultJWTSecret {
			return errors.New("JWT_SECRET: the default secret is refused in production mode; set a random secret of at least 32 bytes")
		}
		if len(c.JWTSecret) < minProductionSecret {
			return fmt.Errorf("JWT_SECRET: production mode needs at least %d bytes, got %d", minProductionSecret, len(c.JWTSecret))
		}
		if len(c.APIKeys) == 0 {
			return errors.New("API_KEYS: production mode issues tokens only against an API key; set API_KEYS=key:user[:role],...")
		}
	default:
		return fmt.Errorf("SANDBOX_MODE: %q is neither %q nor %q", c.Mode, ModeDevelopment, ModeProduction)
	}
	if c.JWTSecret == "" {
		return errors.New("JWT_SECRET: empty")
	}
	seen := map[string]bool{}
	for _, u := range c.AdminUsers {
		if !validUserID(u) {
			return fmt.Errorf("ADMIN_USERS: user %q must be 1-128 characters of [A-Za-z0-9._@-]", u)
		}
	}
	for i, k := range c.APIKeys {
		if k.Key == "" {
			return fmt.Errorf("API_KEYS: entry %d has an empty key", i+1)
		}
		if seen[k.Key] {
			return fmt.Errorf("API_KEYS: entry %d repeats a key", i+1)
		}
		seen[k.Key] = true
		if !validUserID(k.User) {
			return fmt.Errorf("API_KEYS: entry %d: user %q must be 1-128 characters of [A-Za-z0-9._@-]", i+1, k.User)
		}
		if k.Role != RoleUser && k.Role != RoleAdmin {
			return fmt.Errorf("API_KEYS: entry %d: role %q must be user or admin", i+1, k.Role)
		}
	}
	switch {
	case c.Issuer == "":
		return errors.New("issuer: empty")
	case c.Audience == "":
		return errors.New("audience: empty")
	case c.AccessTTL < time.Second || c.RefreshTTL < time.Second:
		// expires_in counts whole seconds: below one it would say "0".
		return errors.New("ACCESS_TOKEN_TTL and the refresh TTL must be at least 1s")
	case c.RefreshTTL < c.AccessTTL:
		return errors.New("refresh TTL must not be shorter than access TTL")
	case c.ReadyTimeout <= 0:
		return errors.New("SANDBOX_READY_TIMEOUT must be positive")
	case c.IndexWaitTimeout <= 0:
		return errors.New("INDEX_WAIT_TIMEOUT must be positive")
	case c.MaxBodyBytes <= 0:
		return errors.New("MAX_BODY_BYTES must be positive")
	case c.MaxUploadBytes < 0:
		return errors.New("MAX_UPLOAD_BYTES must not be negative")
	case c.MaxOutputBytes <= 0:
		return errors.New("MAX_OUTPUT_BYTES must be positive")
	case c.MaxExecTimeout < time.Second:
		return errors.New("MAX_EXEC_TIMEOUT must be at least 1s")
	case c.DefaultExecTimeout < time.Second || c.DefaultExecTimeout > c.MaxExecTimeout:
		return fmt.Errorf("default exec timeout %s must be within 1s..%s", c.DefaultExecTimeout, c.MaxExecTimeout)
	case c.ReadTimeout <= 0 || c.WriteTimeout < 0 || c.IdleTimeout <= 0 || c.TransferTimeout <= 0:
		return errors.New("HTTP_READ_TIMEOUT, HTTP_WRITE_TIMEOUT, HTTP_IDLE_TIMEOUT and HTTP_TRANSFER_TIMEOUT must be positive")
	case c.MaxStreamsPerUser < 1:
		return errors.New("MAX_STREAMS_PER_USER must be at least 1")
	case c.RateLimitRPS <= 0:
		return errors.New("RATE_LIMIT_RPS must be positive")
	case c.RateLimitBurst < 1:
		return errors.New("RATE_LIMIT_BURST must be at least 1")
	case c.DefaultCPUCount < minCPU || c.DefaultCPUCount > maxCPU:
		return fmt.Errorf("default cpu_count %g out of range %g-%g", c.DefaultCPUCount, minCPU, maxCPU)
	case c.DefaultMemoryMB < minMemoryMB || c.DefaultMemoryMB > maxMemoryMB:
		return fmt.Errorf("default memory_mb %d out of range %d-%d", c.DefaultMemoryMB, minMemoryMB, maxMemoryMB)
	}
	return nil
}

// ConfigFromEnv reads the environment variables of api/DESIGN.md over the
// defaults. getenv is os.Getenv in main and a map in tests. Unset or empty
// variables keep their default; a bad value is an error naming the variable.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := DefaultConfig()
	var err error
	set := func(name string, parse func(string) error) {
		v := strings.TrimSpace(getenv(name))
		if v == "" || err != nil {
			return
		}
		if perr := parse(v); perr != nil {
			err = fmt.Errorf("%s=%q: %w", name, v, perr)
		}
	}
	set("JWT_SECRET", func(v string) error { c.JWTSecret = v; return nil })
	set("SANDBOX_MODE", func(v string) error {
		if v != ModeDevelopment && v != ModeProduction {
			return fmt.Errorf("must be %q or %q", ModeDevelopment, ModeProduction)
		}
		c.Mode = v
		c.WebhookAllowPrivate = v == ModeDevelopment
		return nil
	})
	set("API_KEYS", func(v string) (e error) { c.APIKeys, e = ParseAPIKeys(v); return e })
	set("SANDBOX_IMAGE", func(v string) error { c.DefaultImage = v; return nil })
	set("ADMIN_USERS", func(v string) (e error) { c.AdminUsers, e = parseUserList(v); return e })
	set("ACCESS_TOKEN_TTL", func(v string) (e error) { c.AccessTTL, e = parseSeconds(v); return e })
	set("SANDBOX_ALLOWED_IMAGES", func(v string) (e error) { c.AllowedImages, e = parseImagePatterns(v); return e })
	set("MAX_BODY_BYTES", func(v string) (e error) { c.MaxBodyBytes, e = parsePositiveInt(v); return e })
	set("MAX_UPLOAD_BYTES", func(v string) (e error) { c.MaxUploadBytes, e = parsePositiveInt(v); return e })
	set("MAX_OUTPUT_BYTES", func(v string) (e error) { c.MaxOutputBytes, e = parsePositiveInt(v); return e })
	set("MAX_EXEC_TIMEOUT", func(v string) (e error) { c.MaxExecTimeout, e = parseSeconds(v); return e })
	set("SANDBOX_IDLE_TIMEOUT", func(v string) (e error) { c.DefaultIdleTimeout, e = parseSecondsOrZero(v); return e })
	set("SANDBOX_MAX_LIFETIME", func(v string) (e error) { c.DefaultLifetime, e = parseSecondsOrZero(v); return e })
	set("SANDBOX_READY_TIMEOUT", func(v string) (e error) { c.ReadyTimeout, e = parseSeconds(v); return e })
	set("INDEX_WAIT_TIMEOUT", func(v string) (e error) { c.IndexWaitTimeout, e = parseSeconds(v); return e })
	set("HTTP_READ_TIMEOUT", func(v string) (e error) { c.ReadTimeout, e = parseSeconds(v); return e })
	set("HTTP_WRITE_TIMEOUT", func(v string) (e error) { c.WriteTimeout, e = parseSeconds(v); return e })
	set("HTTP_IDLE_TIMEOUT", func(v string) (e error) { c.IdleTimeout, e = parseSeconds(v); return e })
	set("HTTP_TRANSFER_TIMEOUT", func(v string) (e error) { c.TransferTimeout, e = parseSeconds(v); return e })
	set("MAX_STREAMS_PER_USER", func(v string) error {
		n, perr := parsePositiveInt(v)
		c.MaxStreamsPerUser = int(n)
		return perr
	})
	set("RATE_LIMIT_RPS", func(v string) error {
		f, perr := strconv.ParseFloat(v, 64)
		if perr != nil || f <= 0 {
			return errors.New("must be a positive number")
		}
		c.RateLimitRPS = f
		return nil
	})
	set("RATE_LIMIT_BURST", func(v string) error {
		n, perr := parsePositiveInt(v)
		c.RateLimitBurst = int(n)
		return perr
	})
	set("WEBHOOK_ALLOW_PRIVATE", func(v string) (e error) { c.WebhookAllowPrivate, e = strconv.ParseBool(v); return e })
	if err != nil {
		return Config{}, err
	}
	c.DefaultExecTimeout = min(c.DefaultExecTimeout, c.MaxExecTimeout)
	return c, c.Validate()
}

// ParseAPIKeys parses API_KEYS: "key:user[:role],..." (role defaults to user).
func ParseAPIKeys(v string) ([]APIKey, error) {
	var keys []APIKey
	for i, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		parts := strings.Split(entry, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("entry %d: want key:user[:role]", i+1)
		}
		k := APIKey{Key: parts[0], User: parts[1], Role: RoleUser}
		if len(parts) == 3 {
			k.Role = parts[2]
		}
		if !validUserID(k.User) {
			return nil, fmt.Errorf("entry %d: user must be 1-128 characters of [A-Za-z0-9._@-]", i+1)
		}
		if k.Role != RoleUser && k.Role != RoleAdmin {
			return nil, fmt.Errorf("entry %d: role %q must be user or admin", i+1, k.Role)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	return keys, nil
}

// parseUserList parses ADMIN_USERS: "alice,bob".
func parseUserList(v string) ([]string, error) {
	var users []string
	for _, u := range strings.Split(v, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if !validUserID(u) {
			return nil, fmt.Errorf("user %q must be 1-128 characters of [A-Za-z0-9._@-]", u)
		}
		users = append(users, u)
	}
	return users, nil
}

// parseImagePatterns parses SANDBOX_ALLOWED_IMAGES: "python:3.11-slim,ghcr.io/acme/*".
func parseImagePatterns(v string) ([]string, error) {
	var pats []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if strings.ContainsAny(p, " \t") {
			return nil, fmt.Errorf("pattern %q contains whitespace", p)
		}
		pats = append(pats, p)
	}
	if len(pats) == 0 {
		return nil, errors.New("no patterns")
	}
	return pats, nil
}

func parsePositiveInt(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("must be a positive integer")
	}
	return n, nil
}

// parseSecondsOrZero is parseSeconds that also accepts "0" for "none".
func parseSecondsOrZero(v string) (time.Duration, error) {
	if v == "0" {
		return 0, nil
	}
	return parseSeconds(v)
}

// parseSeconds accepts "300" (seconds) or a Go duration such as "5m".
func parseSeconds(v string) (time.Duration, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0, errors.New("must be positive")
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, errors.New("must be a positive number of seconds or a duration like 5m")
	}
	return d, nil
}

var userIDPattern = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,128}$`)

func validUserID(s string) bool { return userIDPattern.MatchString(s) }
