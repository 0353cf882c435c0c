package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A hostile agent (the sandbox can replace its own) answers without end:
// the control plane's client stops at its bound with ErrReplyTooLarge.
func TestClientBoundsWhatAnAgentAnswers(t *testing.T) {
	endless := func(prefix string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(prefix))
			chunk := []byte(strings.Repeat("x", 64<<10))
			for i := 0; i < 2048 && r.Context().Err() == nil; i++ { // at most 128 MiB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/files/list", endless(`[{"name":"`))
	mux.HandleFunc("/exec", endless(`{"stdout":"`))
	mux.HandleFunc("/exec/stream", endless(`{"type":"stdout","data":"`))
	mux.HandleFunc("/files/walk", endless(`{"entries":[{"name":"`))
	mux.HandleFunc("/files/stat", endless(`{"name":"`))
	mux.HandleFunc("/files/watch", endless(`{"type":"create","path":"`))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := NewClient(srv.URL, "s")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	small := ExecRequest{Argv: []string{"true"}, MaxOutputBytes: 1 << 10}
	cases := []struct {
		name string
		call func() error
	}{
		{"listing", func() error { _, err := c.ListFiles(ctx, "/workspace"); return err }},
		{"exec result", func() error { _, err := c.Exec(ctx, small); return err }},
		{"exec stream", func() error { _, err := c.ExecStream(ctx, small, nil); return err }},
		{"walk", func() error { _, err := c.Walk(ctx, "/workspace", 2, 0); return err }},
		{"stat", func() error { _, err := c.Stat(ctx, "/workspace"); return err }},
		{"watch line", func() error {
			return c.Watch(ctx, "/workspace", false, func(WatchEvent) error { return nil })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, ErrReplyTooLarge) {
				t.Fatalf("err = %v, want ErrReplyTooLarge", err)
			}
		})
	}
}

// An honest reply at the bound's edge still decodes.
func TestClientReadsAReplyUpToItsBound(t *testing.T) {
	out := strings.Repeat("\x01", 1<<10) // each byte escapes to \u0001
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(ExecResult{Stdout: out, Stderr: out})
	}))
	defer srv.Close()
	c := NewClient(srv.URL, "s")
	defer c.Close()
	res, err := c.Exec(context.Background(), ExecRequest{Argv: []string{"true"}, MaxOutputBytes: 1 << 10})
	if err != nil || res.Stdout != out || res.Stderr != out {
		t.Fatalf("exec = %v, %v", res != nil, err)
	}
}
