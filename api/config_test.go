package api

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestConfigFromEnv(t *testing.T) {
	const strong = "0123456789abcdef0123456789abcdef"
	cases := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", env: nil, check: func(t *testing.T, c Config) {
			if c.Mode != ModeDevelopment || c.JWTSecret != DefaultJWTSecret || c.AccessTTL != 15*time.Minute ||
				c.RefreshTTL != 7*24*time.Hour || c.MaxBodyBytes != 10<<20 || c.MaxExecTimeout != 300*time.Second ||
				c.RateLimitRPS != 50 || c.RateLimitBurst != 100 || c.ReadyTimeout != 60*time.Second {
				t.Fatalf("defaults = %+v", c)
			}
		}},
		{name: "all set", env: map[string]string{
			"JWT_SECRET": strong, "SANDBOX_MODE": "production", "API_KEYS": "k1:alice, k2:ops:admin",
			"SANDBOX_IMAGE": "img:2", "MAX_BODY_BYTES": "1024", "MAX_UPLOAD_BYTES": "2048", "MAX_OUTPUT_BYTES": "512",
			"MAX_EXEC_TIMEOUT": "10", "RATE_LIMIT_RPS": "2.5", "RATE_LIMIT_BURST": "7", "SANDBOX_READY_TIMEOUT": "5s",
		}, check: func(t *testing.T, c Config) {
			want := []APIKey{{"k1", "alice", RoleUser}, {"k2", "ops", RoleAdmin}}
			if len(c.APIKeys) != 2 || c.APIKeys[0] != want[0] || c.APIKeys[1] != want[1] {
				t.Fatalf("keys = %+v", c.APIKeys)
			}
			if c.DefaultImage != "img:2" || c.MaxBodyBytes != 1024 || c.MaxUploadBytes != 2048 || c.MaxOutputBytes != 512 ||
				c.MaxExecTimeout != 10*time.Second || c.DefaultExecTimeout != 10*time.Second || c.RateLimitRPS != 2.5 ||
				c.RateLimitBurst != 7 || c.ReadyTimeout != 5*time.Second {
				t.Fatalf("config = %+v", c)
			}
		}},
		{name: "token and image settings", env: map[string]string{
			"ADMIN_USERS": "root, ops", "ACCESS_TOKEN_TTL": "3", "SANDBOX_ALLOWED_IMAGES": "python:3.11-slim, ghcr.io/acme/*",
		}, check: func(t *testing.T, c Config) {
			if strings.Join(c.AdminUsers, ",") != "root,ops" || c.AccessTTL != 3*time.Second ||
				strings.Join(c.AllowedImages, ",") != "python:3.11-slim,ghcr.io/acme/*" || c.Audience != "cloud-sandbox" {
				t.Fatalf("config = %+v", c)
			}
		}},
		{name: "server bounds", env: map[string]string{
			"HTTP_READ_TIMEOUT": "30", "HTTP_WRITE_TIMEOUT": "90s", "HTTP_IDLE_TIMEOUT": "1m", "HTTP_TRANSFER_TIMEOUT": "2h", "MAX_STREAMS_PER_USER": "3",
		}, check: func(t *testing.T, c Config) {
			if c.ReadTimeout != 30*time.Second || c.WriteTimeout != 90*time.Second || c.IdleTimeout != time.Minute ||
				c.TransferTimeout != 2*time.Hour || c.MaxStreamsPerUser != 3 {
				t.Fatalf("config = %+v", c)
			}
		}},
		{name: "bad stream cap", env: map[string]string{"MAX_STREAMS_PER_USER": "0"}, wantErr: "MAX_STREAMS_PER_USER"},
		{name: "bad write timeout", env: map[string]string{"HTTP_WRITE_TIMEOUT": "never"}, wantErr: "HTTP_WRITE_TIMEOUT"},
		{name: "bad admin user", env: map[string]string{"ADMIN_USERS": "a b"}, wantErr: "ADMIN_USERS"},
		{name: "bad access ttl", env: map[string]string{"ACCESS_TOKEN_TTL": "forever"}, wantErr: "ACCESS_TOKEN_TTL"},
		{name: "access ttl over refresh ttl", env: map[string]string{"ACCESS_TOKEN_TTL": "8760h"}, wantErr: "refresh TTL"},
		{name: "access ttl under a second", env: map[string]string{"ACCESS_TOKEN_TTL": "500ms"}, wantErr: "at least 1s"},
		{name: "empty image list", env: map[string]string{"SANDBOX_ALLOWED_IMAGES": " , "}, wantErr: "SANDBOX_ALLOWED_IMAGES"},
		{name: "production refuses default secret", env: map[string]string{"SANDBOX_MODE": "production", "API_KEYS": "k:a"}, wantErr: "default secret"},
		{name: "production refuses short secret", env: map[string]string{"SANDBOX_MODE": "production", "JWT_SECRET": "short", "API_KEYS": "k:a"}, wantErr: "at least 32"},
		{name: "production needs api keys", env: map[string]string{"SANDBOX_MODE": "production", "JWT_SECRET": strong}, wantErr: "API_KEYS"},
		{name: "unknown mode", env: map[string]string{"SANDBOX_MODE": "staging"}, wantErr: "SANDBOX_MODE"},
		{name: "bad api key entry", env: map[string]string{"API_KEYS": "justakey"}, wantErr: "API_KEYS"},
		{name: "bad api key role", env: map[string]string{"API_KEYS": "k:alice:root"}, wantErr: "role"},
		{name: "bad body limit", env: map[string]string{"MAX_BODY_BYTES": "ten"}, wantErr: "MAX_BODY_BYTES"},
		{name: "negative output", env: map[string]string{"MAX_OUTPUT_BYTES": "-1"}, wantErr: "MAX_OUTPUT_BYTES"},
		{name: "bad exec timeout", env: map[string]string{"MAX_EXEC_TIMEOUT": "soon"}, wantErr: "MAX_EXEC_TIMEOUT"},
		{name: "zero rps", env: map[string]string{"RATE_LIMIT_RPS": "0"}, wantErr: "RATE_LIMIT_RPS"},
		{name: "bad burst", env: map[string]string{"RATE_LIMIT_BURST": "1.5"}, wantErr: "RATE_LIMIT_BURST"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ConfigFromEnv(func(k string) string { return c.env[k] })
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ConfigFromEnv: %v", err)
			}
			c.check(t, cfg)
		})
	}
}

// TestNewRefusesProductionDefaults checks the server itself will not start
// in production with the default secret, whatever built the Config.
func TestNewRefusesProductionDefaults(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name string
		cfg  Config
	}{
		{"default secret", Config{Mode: ModeProduction, JWTSecret: DefaultJWTSecret, APIKeys: []APIKey{{"k", "a", RoleUser}}}},
		{"empty secret", Config{Mode: ModeProduction, APIKeys: []APIKey{{"k", "a", RoleUser}}}},
		{"no keys", Config{Mode: ModeProduction, JWTSecret: strings.Repeat("s", 40)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := New(c.cfg, Deps{Cluster: e.node, State: e.fsm, Registry: prometheus.NewRegistry()}); err == nil {
				t.Fatal("New accepted a production config it must refuse")
			}
		})
	}
}

func TestUnsafeSettings(t *testing.T) {
	locked := DefaultConfig()
	locked.JWTSecret = strings.Repeat("s", 40)
	locked.AdminUsers = []string{"root"}
	locked.AllowedImages = []string{"python:*"}
	locked.AccessTTL = 15 * time.Minute
	cases := []struct {
		name   string
		cfg    Config
		listen string
		want   []string // substrings, one per warning, in order
	}{
		{"development defaults on all interfaces", DefaultConfig(), ":8080",
			[]string{"JWT_SECRET", "LISTEN_ADDR"}},
		{"development defaults on loopback", DefaultConfig(), "127.0.0.1:8080",
			[]string{"JWT_SECRET"}},
		{"day-long access tokens", func() Config { c := locked; c.AccessTTL = 24 * time.Hour; return c }(), "127.0.0.1:8080",
			[]string{"ACCESS_TOKEN_TTL"}},
		{"every image allowed", func() Config { c := locked; c.AllowedImages = []string{"*"}; return c }(), "127.0.0.1:8080",
			[]string{"SANDBOX_ALLOWED_IMAGES"}},
		{"locked down on localhost", locked, "localhost:8080", nil},
		{"locked down on ::1", locked, "[::1]:8080", nil},
		{"locked down but public in development", locked, "0.0.0.0:8080", []string{"LISTEN_ADDR"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.cfg.UnsafeSettings(c.listen)
			if len(got) != len(c.want) {
				t.Fatalf("warnings = %q, want %d mentioning %q", got, len(c.want), c.want)
			}
			for i, w := range c.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d = %q, want it to mention %s", i, got[i], w)
				}
			}
		})
	}
}
