package api

import (
	"net/http"
	"strings"
	"testing"
)

func TestImageMatches(t *testing.T) {
	cases := []struct {
		pattern, image string
		want           bool
	}{
		{"python:3.11-slim", "python:3.11-slim", true},
		{"python:3.11-slim", "python:3.11", false},
		{"python:*", "python:3.12", true},
		{"python:*", "pythonx:3.12", false},
		{"ghcr.io/acme/*", "ghcr.io/acme/tools/x:1", true},
		{"ghcr.io/acme/*", "ghcr.io/acmeevil/x:1", false},
		{"*", "10.0.0.1:5000/anything", true},
		{"registry/[a]", "registry/a", false}, // only * is special
		{"registry/[a]", "registry/[a]", true},
		{"a?c", "abc", false},
	}
	for _, c := range cases {
		if got := imageMatches(c.pattern, c.image); got != c.want {
			t.Errorf("imageMatches(%q, %q) = %v, want %v", c.pattern, c.image, got, c.want)
		}
	}
}

func TestImageAllowList(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *fsmPool) {
		c.AllowedImages = []string{"registry.example/team/*"}
	})
	tok := e.token("alice", "user")
	refused := []string{
		"python:3.12",
		"10.0.0.1:2375/probe:1",    // an internal address, open port or not
		"127.0.0.1:1/closed:1",     // a closed port
		"registry.example/other:1", // near miss
		failImage,                  // allowed in other tests, not here
	}
	var first string
	for _, path := range []string{"/api/v1/sandbox/acquire", "/api/v1/sessions"} {
		for _, img := range refused {
			r := e.call("POST", path, tok, map[string]any{"image": img})
			expect(t, r, http.StatusForbidden, codeForbidden)
			// One message whatever the reference: nothing to tell probes apart.
			if first == "" {
				first = string(r.raw)
			}
			if string(r.raw) != first || strings.Contains(string(r.raw), img) {
				t.Errorf("%s %s: %s, want the same message as %s and no reference", path, img, r.raw, first)
			}
		}
	}
	if n := len(e.fsm.Sandboxes()); n != 0 {
		t.Errorf("%d sandboxes created for refused images", n)
	}
	// The pool image is always allowed, and so is a listed pattern (its
	// placement is another matter: the test reconciler does not know it).
	expect(t, e.call("POST", "/api/v1/sandbox/acquire", tok, map[string]any{"image": testImage}), http.StatusOK, "")
	expect(t, e.call("POST", "/api/v1/sessions", tok, nil), http.StatusCreated, "")
	// A malformed reference is still 422 before any allow-list question.
	expect(t, e.call("POST", "/api/v1/sessions", tok, map[string]any{"image": "a b;rm"}), http.StatusUnprocessableEntity, codeUnprocessable)
}

// TestImagesDefaultToThePoolImage: with no allow-list only the pool's image
// runs; anything else is refused before a pull is tried.
func TestImagesDefaultToThePoolImage(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *fsmPool) { c.AllowedImages = nil })
	tok := e.token("alice", "user")
	for _, img := range []string{"python:3.12", "127.0.0.1:1/closed:1", failImage} {
		expect(t, e.call("POST", "/api/v1/sandbox/acquire", tok, map[string]any{"image": img}), http.StatusForbidden, codeForbidden)
	}
	expect(t, e.call("POST", "/api/v1/sandbox/acquire", tok, map[string]any{"image": testImage}), http.StatusOK, "")
}

// TestPlacementFailureMessage: an allowed image that cannot start answers
// with the driver's own reason, whether allowed by name or by "*".
func TestPlacementFailureMessage(t *testing.T) {
	cases := []struct {
		name       string
		allowed    []string
		wantReason bool
	}{
		{"allowed by name", []string{failImage}, true},
		{"open", []string{"*"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(cfg *Config, _ *fsmPool) { cfg.AllowedImages = c.allowed })
			tok := e.token("alice", "user")
			r := e.call("POST", "/api/v1/sandbox/acquire", tok, map[string]any{"image": failImage})
			expect(t, r, http.StatusServiceUnavailable, codeUnavailable)
			if got := strings.Contains(r.str("error"), "not found"); got != c.wantReason {
				t.Errorf("error %q: reason shown = %v, want %v", r.str("error"), got, c.wantReason)
			}
		})
	}
}
