package main

import (
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestTableWrite(t *testing.T) {
	tests := []struct {
		name string
		tab  table
		want string
	}{
		{"aligned on two spaces",
			table{header: []string{"ID", "STATUS", "OWNER"}, rows: [][]string{{"0123456789abcdef", "active", "alice"}, {"ab", "idle", "bob"}}},
			"ID                STATUS  OWNER\n" +
				"0123456789abcdef  active  alice\n" +
				"ab                idle    bob\n"},
		{"an empty cell is a dash, so columns stay countable",
			table{header: []string{"ID", "OWNER", "IMAGE"}, rows: [][]string{{"a", "", "python"}}},
			"ID  OWNER  IMAGE\n" +
				"a   -      python\n"},
		{"tabs and newlines in a cell do not break the row",
			table{header: []string{"ID", "REASON"}, rows: [][]string{{"a", "line one\nline\ttwo"}}},
			"ID  REASON\n" +
				"a   line one line two\n"},
		{"header only", table{header: []string{"ID", "STATUS"}}, "ID  STATUS\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := tt.tab.write(&b); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestKVWrite(t *testing.T) {
	var b strings.Builder
	kv{{"node", "n1"}, {"applied index", "42"}, {"leader", ""}}.write(&b)
	want := "node:           n1\napplied index:  42\nleader:         -\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}

func TestOutputJSONOrTable(t *testing.T) {
	rows := []map[string]any{{"sandbox_id": "a", "status": "active", "metadata": map[string]any{"k": "v"}}}
	tab := &table{header: []string{"ID", "STATUS"}, rows: [][]string{{"a", "active"}}}
	tests := []struct {
		name string
		json bool
		want func(t *testing.T, out string)
	}{
		{"table", false, func(t *testing.T, out string) {
			if out != "ID  STATUS\na   active\n" {
				t.Errorf("table output %q", out)
			}
		}},
		{"json keeps every field the server sent", true, func(t *testing.T, out string) {
			var got []map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("not JSON: %q", out)
			}
			if len(got) != 1 || got[0]["sandbox_id"] != "a" || got[0]["metadata"].(map[string]any)["k"] != "v" {
				t.Errorf("json output %q", out)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			e := &env{stdout: &b}
			e.json = tt.json
			if err := e.output(rows, tab); err != nil {
				t.Fatal(err)
			}
			tt.want(t, b.String())
		})
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		positional int
		pos, after []string
		state      string
		json       bool
		usage      bool
	}{
		{"flags after the positional", []string{"abc", "-json"}, 1, []string{"abc"}, nil, "", true, false},
		{"flags before and between", []string{"--state", "idle", "abc", "-json"}, 1, []string{"abc"}, nil, "idle", true, false},
		{"everything after -- is the command, flags included", []string{"abc", "--", "sh", "-c", "echo -json"}, 1,
			[]string{"abc"}, []string{"sh", "-c", "echo -json"}, "", false, false},
		{"missing positional", []string{"-json"}, 1, nil, nil, "", false, true},
		{"extra positional", []string{"a", "b"}, 1, nil, nil, "", false, true},
		{"unknown flag", []string{"--nope"}, 0, nil, nil, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &env{}
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			state := fs.String("state", "", "")
			pos, after, err := parseArgs(e, "x", fs, tt.args, tt.positional)
			if tt.usage {
				var ee *exitErr
				if !errors.As(err, &ee) || ee.code != exitUsage {
					t.Fatalf("err %v, want a usage error (exit 2)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tt.pos) || !slices.Equal(after, tt.after) || *state != tt.state || e.json != tt.json {
				t.Errorf("pos %v after %v state %q json %v", pos, after, *state, e.json)
			}
		})
	}
}

// TestExitCodes checks the codes scripts rely on against a fake server.
func TestExitCodes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") == "":
			w.WriteHeader(401)
			w.Write([]byte(`{"error":"missing bearer token","code":"unauthorized"}`))
		case r.URL.Path == "/api/v1/admin/members":
			w.WriteHeader(403)
			w.Write([]byte(`{"error":"admin role required","code":"forbidden"}`))
		case r.URL.Path == "/api/v1/sandbox/nope":
			w.WriteHeader(404)
			w.Write([]byte(`{"error":"sandbox not found","code":"not_found"}`))
		case r.URL.Path == "/api/v1/sandboxes":
			w.WriteHeader(503)
			w.Write([]byte(`{"error":"cluster unavailable","code":"unavailable"}`))
		default:
			w.Write([]byte(`{}`))
		}
	}))
	defer srv.Close()
	tests := []struct {
		name   string
		token  string
		args   []string
		code   int
		stderr string
	}{
		{"no token", "", []string{"sandboxes", "ls"}, 4, "SANDBOX_TOKEN"},
		{"not an admin", "t", []string{"members"}, 4, "admin role required"},
		{"not found", "t", []string{"sandboxes", "inspect", "nope"}, 3, "sandbox not found"},
		{"server error", "t", []string{"sandboxes", "ls"}, 1, "cluster unavailable (503 unavailable)"},
		{"unknown command", "t", []string{"frobnicate"}, 2, "unknown command"},
		{"bad flag", "t", []string{"sandboxes", "ls", "--colour"}, 2, "flag provided but not defined"},
		{"help", "", []string{"help"}, 0, ""},
		{"a command's -h is help, not an error", "", []string{"sandboxes", "ls", "-h"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string {
				return map[string]string{"SANDBOX_ADDR": srv.URL, "SANDBOX_TOKEN": tt.token}[k]
			}
			var stdout, stderr strings.Builder
			if code := run(tt.args, getenv, &stdout, &stderr); code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tt.stderr)
			}
		})
	}
	// Nobody listening: 1.
	var stderr strings.Builder
	if code := run([]string{"-addr", "127.0.0.1:1", "status"}, func(string) string { return "" }, &strings.Builder{}, &stderr); code != 1 {
		t.Errorf("unreachable server: exit %d, want 1 (%s)", code, stderr.String())
	}
}
