package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// sandbox is the API's sandbox JSON; unknown fields are kept for -json.
type sandbox struct {
	SandboxID   string  `json:"sandbox_id"`
	ContainerID string  `json:"container_id"`
	Status      string  `json:"status"`
	IP          string  `json:"ip"`
	Image       string  `json:"image"`
	UserID      string  `json:"user_id"`
	SessionID   string  `json:"session_id"`
	CPUCount    float64 `json:"cpu_count"`
	MemoryMB    int64   `json:"memory_mb"`
	CreatedAt   string  `json:"created_at"`
}

// session is the API's session JSON.
type session struct {
	SessionID     string  `json:"session_id"`
	UserID        string  `json:"user_id"`
	Image         string  `json:"image"`
	CPUCount      float64 `json:"cpu_count"`
	MemoryMB      int64   `json:"memory_mb"`
	Network       bool    `json:"network"`
	Status        string  `json:"status"`
	SandboxID     string  `json:"sandbox_id"`
	SandboxStatus string  `json:"sandbox_status"`
	CreatedAt     string  `json:"created_at"`
	LastActiveAt  string  `json:"last_active_at"`
}

// rawList decodes a list answer keeping each object's raw JSON, so -json
// prints every field the server sent, including ones this build does not know.
type rawList[T any] struct {
	typed []T
	raw   []map[string]any
}

// maxListPages bounds how many pages a list follows (1000 items each).
const maxListPages = 1000

// getList reads every page of a list answer (following next_page_token),
// with the filters in query.
func getList[T any](ctx context.Context, c *client, path, key string, query url.Values) (*rawList[T], error) {
	l := &rawList[T]{}
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	for page := 0; page < maxListPages; page++ {
		var raw struct {
			Items map[string]json.RawMessage
		}
		target := path
		if enc := q.Encode(); enc != "" {
			target += "?" + enc
		}
		if _, err := c.do(ctx, http.MethodGet, target, nil, &raw.Items); err != nil {
			return nil, err
		}
		var items []map[string]any
		if err := json.Unmarshal(raw.Items[key], &items); err != nil {
			return nil, fmt.Errorf("decode %s: %w", key, err)
		}
		for _, m := range items {
			var v T
			if err := remarshal(m, &v); err != nil {
				return nil, fmt.Errorf("decode %s: %w", key, err)
			}
			l.raw, l.typed = append(l.raw, m), append(l.typed, v)
		}
		var next string
		if tok, ok := raw.Items["next_page_token"]; ok {
			if err := json.Unmarshal(tok, &next); err != nil {
				return nil, fmt.Errorf("decode next_page_token: %w", err)
			}
		}
		if next == "" {
			return l, nil
		}
		q.Set("page_token", next)
	}
	return nil, fmt.Errorf("list %s: more than %d pages", path, maxListPages)
}

// cmdSandboxesList lists sandboxes, every page. --state filters on the
// server; --owner here (the server lists an admin everyone's).
func cmdSandboxesList(e *env, args []string) error {
	fs := flag.NewFlagSet("sandboxes ls", flag.ContinueOnError)
	state := fs.String("state", "", "only sandboxes in this state (idle, pending, active, paused, resuming, terminating, failed)")
	owner := fs.String("owner", "", "only sandboxes of this user (an admin sees every user's)")
	if _, _, err := parseArgs(e, "sandboxes ls", fs, args, 0); err != nil {
		return err
	}
	query := url.Values{}
	if *state != "" {
		query.Set("state", *state)
	}
	l, err := getList[sandbox](context.Background(), e.client(true), "/api/v1/sandboxes", "sandboxes", query)
	if err != nil {
		return fail("sandboxes ls", err)
	}
	rows := []map[string]any{}
	t := &table{header: []string{"ID", "STATUS", "OWNER", "IMAGE", "CPU", "MEMORY", "SESSION", "CREATED"}}
	for i, s := range l.typed {
		if (*state != "" && s.Status != *state) || (*owner != "" && s.UserID != *owner) {
			continue
		}
		rows = append(rows, l.raw[i])
		t.add(s.SandboxID, s.Status, s.UserID, s.Image, formatCPU(s.CPUCount), formatMB(s.MemoryMB), s.SessionID, s.CreatedAt)
	}
	return e.output(rows, t)
}

// cmdSandboxInspect prints one sandbox.
func cmdSandboxInspect(e *env, args []string) error {
	pos, _, err := parseArgs(e, "sandboxes inspect", flag.NewFlagSet("sandboxes inspect", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	var raw map[string]any
	if _, err := e.client(true).do(context.Background(), http.MethodGet, "/api/v1/sandbox/"+url.PathEscape(pos[0]), nil, &raw); err != nil {
		return fail("sandbox "+pos[0], err)
	}
	var s sandbox
	if err := remarshal(raw, &s); err != nil {
		return err
	}
	return e.output(raw, kv{
		{"id", s.SandboxID}, {"status", s.Status}, {"owner", s.UserID}, {"session", s.SessionID},
		{"image", s.Image}, {"cpu", formatCPU(s.CPUCount)}, {"memory", formatMB(s.MemoryMB)},
		{"container", s.ContainerID}, {"ip", s.IP}, {"created", s.CreatedAt},
	})
}

// cmdSandboxKill releases a sandbox: the server destroys it.
func cmdSandboxKill(e *env, args []string) error {
	pos, _, err := parseArgs(e, "sandboxes kill", flag.NewFlagSet("sandboxes kill", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	var out map[string]any
	if _, err := e.client(true).do(context.Background(), http.MethodPost, "/api/v1/sandbox/release",
		map[string]string{"sandbox_id": pos[0]}, &out); err != nil {
		return fail("kill "+pos[0], err)
	}
	if e.json {
		return writeJSON(e.stdout, out)
	}
	_, err = fmt.Fprintf(e.stdout, "%s %v\n", pos[0], out["status"])
	return err
}

// cmdSessionsList lists sessions.
func cmdSessionsList(e *env, args []string) error {
	fs := flag.NewFlagSet("sessions ls", flag.ContinueOnError)
	state := fs.String("state", "", "only sessions in this state (active, paused, deleted)")
	owner := fs.String("owner", "", "only sessions of this user (an admin sees every user's)")
	if _, _, err := parseArgs(e, "sessions ls", fs, args, 0); err != nil {
		return err
	}
	query := url.Values{}
	if *state != "" {
		query.Set("state", *state) // deleted sessions are listed only when asked for
	}
	l, err := getList[session](context.Background(), e.client(true), "/api/v1/sessions", "sessions", query)
	if err != nil {
		return fail("sessions ls", err)
	}
	rows := []map[string]any{}
	t := &table{header: []string{"ID", "STATUS", "OWNER", "SANDBOX", "SANDBOX STATUS", "IMAGE", "CPU", "MEMORY", "CREATED"}}
	for i, s := range l.typed {
		if (*state != "" && s.Status != *state) || (*owner != "" && s.UserID != *owner) {
			continue
		}
		rows = append(rows, l.raw[i])
		t.add(s.SessionID, s.Status, s.UserID, s.SandboxID, s.SandboxStatus, s.Image, formatCPU(s.CPUCount), formatMB(s.MemoryMB), s.CreatedAt)
	}
	return e.output(rows, t)
}

func formatCPU(c float64) string {
	if c == 0 {
		return ""
	}
	return strconv.FormatFloat(c, 'f', -1, 64)
}

func formatMB(mb int64) string {
	if mb == 0 {
		return ""
	}
	return strconv.FormatInt(mb, 10) + "MB"
}

// remarshal converts a decoded JSON object into a typed value.
func remarshal(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}
