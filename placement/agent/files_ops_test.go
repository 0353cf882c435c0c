package agent

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRenameConfined moves entries inside the writable roots and refuses
// every way out: a destination or source outside, a symlinked parent that
// leads outside, a root itself. The agent here runs as root, so only its own
// checks stand between a request and the host's files.
func TestRenameConfined(t *testing.T) {
	outside := t.TempDir()
	a := startAgent(t, ServerConfig{})
	ws := a.workdir
	ctx := ctxT(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644))
	must(os.Symlink(outside, filepath.Join(ws, "out")))
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(ws, "secret-link")))
	must(os.MkdirAll(filepath.Join(ws, "d"), 0o755))

	cases := []struct {
		name, from, to string
		status         int // 0: allowed
	}{
		{"within workspace", "/a", "/b", 0},
		{"into a new subdirectory path", "/b", "/d/b", 0},
		{"a symlink moves as a link", "/secret-link", "/d/link", 0},
		{"destination outside the roots", "/d/b", "OUT:/stolen", http.StatusForbidden},
		{"source outside the roots", "OUT:/secret", "/got", http.StatusForbidden},
		{"destination through a symlink out", "/d/b", "/out/b", http.StatusForbidden},
		{"source through a symlink out", "/out/secret", "/got", http.StatusForbidden},
		{"the root itself", "", "/x", http.StatusForbidden},
		{"missing source", "/nope", "/x", http.StatusNotFound},
	}
	must(os.WriteFile(filepath.Join(ws, "a"), []byte("A"), 0o644))
	resolve := func(p string) string {
		if len(p) > 4 && p[:4] == "OUT:" {
			return filepath.Join(outside, p[4:])
		}
		return ws + p
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := a.client.Rename(ctx, resolve(tc.from), resolve(tc.to))
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("rename: %v", err)
				}
				if _, err := os.Lstat(resolve(tc.to)); err != nil {
					t.Fatalf("after rename: %v", err)
				}
				return
			}
			wantAgentError(t, err, tc.status)
		})
	}
	if b, err := os.ReadFile(filepath.Join(outside, "secret")); err != nil || string(b) != "s" {
		t.Fatalf("file outside the roots changed: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(outside, "b")); !os.IsNotExist(err) {
		t.Fatalf("a file was moved outside the roots: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(ws, "d", "link")); err != nil || target != filepath.Join(outside, "secret") {
		t.Fatalf("moved symlink reads %q, %v", target, err)
	}
}

func TestStatAndWalk(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	ws := a.workdir
	ctx := ctxT(t)
	for _, d := range []string{"x/y/z"} {
		if err := os.MkdirAll(filepath.Join(ws, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range []string{"f1", "x/f2", "x/y/f3", "x/y/z/f4"} {
		if err := os.WriteFile(filepath.Join(ws, f), make([]byte, i+1), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc", filepath.Join(ws, "etc")); err != nil {
		t.Fatal(err)
	}
	fi, err := a.client.Stat(ctx, filepath.Join(ws, "x/y/f3"))
	if err != nil || fi.Size != 3 || fi.Type != FileTypeFile || fi.Mode != "0640" || time.Since(fi.ModifiedAt) > time.Minute {
		t.Fatalf("stat f3 = %+v, %v", fi, err)
	}
	fi, err = a.client.Stat(ctx, filepath.Join(ws, "etc"))
	if err != nil || fi.Type != FileTypeSymlink || fi.SymlinkTarget != "/etc" {
		t.Fatalf("stat link = %+v, %v", fi, err)
	}
	_, err = a.client.Stat(ctx, filepath.Join(ws, "nope"))
	wantAgentError(t, err, http.StatusNotFound)

	for _, tc := range []struct {
		depth, limit, want int
		truncated          bool
	}{
		{1, 0, 3, false}, // f1, x, etc (the link is not followed)
		{2, 0, 5, false}, // + x/f2, x/y
		{3, 0, 7, false},
		{64, 0, 8, false},
		{64, 4, 4, true},
	} {
		res, err := a.client.Walk(ctx, ws, tc.depth, tc.limit)
		if err != nil {
			t.Fatalf("walk depth %d: %v", tc.depth, err)
		}
		if len(res.Entries) != tc.want || res.Truncated != tc.truncated {
			t.Errorf("walk depth %d limit %d: %d entries truncated=%v, want %d %v: %+v", tc.depth, tc.limit, len(res.Entries), res.Truncated, tc.want, tc.truncated, res.Entries)
		}
	}
	_, err = a.client.Walk(ctx, ws, 65, 0)
	wantAgentError(t, err, http.StatusUnprocessableEntity)
}
