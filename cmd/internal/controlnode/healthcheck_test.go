package controlnode

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHealthCheck: the compose healthcheck passes on 200 only, so a node
// that is still catching up (503 "starting") is not healthy.
func TestHealthCheck(t *testing.T) {
	status := http.StatusServiceUnavailable
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"service":"gateway","status":"starting"}`))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	env := func(k string) string {
		if k == "LISTEN_ADDR" {
			return addr
		}
		return ""
	}
	if err := HealthCheck(nil, env); err == nil || !strings.Contains(err.Error(), "starting") {
		t.Errorf("starting node: err = %v, want one naming the status", err)
	}
	status = http.StatusOK
	if err := HealthCheck(nil, env); err != nil {
		t.Errorf("ready node: %v", err)
	}
	if err := HealthCheck([]string{srv.URL + "/health"}, func(string) string { return "" }); err != nil {
		t.Errorf("explicit URL: %v", err)
	}
}
