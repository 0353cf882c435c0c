package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileRoundTripBinary(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	ctx := ctxT(t)
	data := make([]byte, 1<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(a.workdir, "deep", "er", "blob.bin")
	n, err := a.client.WriteFile(ctx, p, bytes.NewReader(data), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) {
		t.Fatalf("wrote %d bytes, want %d", n, len(data))
	}
	rc, err := a.client.ReadFile(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes differing from the %d written", len(got), len(data))
	}
	// Overwrite in place: atomic replace, no temp file left behind.
	if _, err := a.client.WriteFile(ctx, p, strings.NewReader("short"), 0o644); err != nil {
		t.Fatal(err)
	}
	list, err := a.client.ListFiles(ctx, filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "blob.bin" || list[0].Size != 5 || list[0].Mode != "0644" {
		t.Fatalf("after overwrite: %+v", list)
	}
}

func TestListFiles(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	ctx := ctxT(t)
	w := a.workdir
	if _, err := a.client.WriteFile(ctx, w+"/a.txt", strings.NewReader("hello"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := a.client.Mkdir(ctx, w+"/sub/dir"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.txt", w+"/link"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want []FileInfo // ModifiedAt not compared
	}{
		{"directory", w, []FileInfo{
			{Name: "a.txt", Path: w + "/a.txt", Size: 5, Type: "file", Mode: "0640"},
			{Name: "link", Path: w + "/link", Size: 5, Type: "symlink", Mode: "0777"},
			{Name: "sub", Path: w + "/sub", Type: "dir", Mode: "0755"},
		}},
		{"single file", w + "/a.txt", []FileInfo{{Name: "a.txt", Path: w + "/a.txt", Size: 5, Type: "file", Mode: "0640"}}},
		{"nested dir", w + "/sub", []FileInfo{{Name: "dir", Path: w + "/sub/dir", Type: "dir", Mode: "0755"}}},
		{"empty dir", w + "/sub/dir", []FileInfo{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.client.ListFiles(ctx, tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d entries %+v, want %d", len(got), got, len(tt.want))
			}
			for i, g := range got {
				want := tt.want[i]
				if g.ModifiedAt.IsZero() {
					t.Errorf("%s: no modified_at", g.Name)
				}
				if want.Type == "dir" {
					want.Size = g.Size // directory sizes depend on the file system
				}
				g.ModifiedAt = want.ModifiedAt
				if g != want {
					t.Errorf("entry %d = %+v, want %+v", i, g, want)
				}
			}
		})
	}
}

func TestDeleteAndMkdir(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	ctx := ctxT(t)
	w := a.workdir
	if _, err := a.client.WriteFile(ctx, w+"/tree/x/y.txt", strings.NewReader("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.WriteFile(ctx, w+"/file.txt", strings.NewReader("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		path      string
		recursive bool
		status    int // 0: success
	}{
		{"file", w + "/file.txt", false, 0},
		{"missing", w + "/nope", false, 404},
		{"non-empty dir without recursive", w + "/tree", false, 409},
		{"non-empty dir recursive", w + "/tree", true, 0},
		{"root", "/", true, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.client.Delete(ctx, tt.path, tt.recursive)
			if tt.status != 0 {
				wantAgentError(t, err, tt.status)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(tt.path); !os.IsNotExist(err) {
				t.Fatalf("%s still there: %v", tt.path, err)
			}
		})
	}
	if err := a.client.Mkdir(ctx, w+"/m/n/o"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(w + "/m/n/o"); err != nil || !fi.IsDir() {
		t.Fatalf("mkdir: %v", err)
	}
	if err := a.client.Mkdir(ctx, w+"/m/n/o"); err != nil {
		t.Fatalf("mkdir of an existing dir: %v", err)
	}
	if _, err := a.client.WriteFile(ctx, w+"/plain", strings.NewReader("p"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantAgentError(t, a.client.Mkdir(ctx, w+"/plain"), 409)
}

func TestFilePathsRefused(t *testing.T) {
	a := startAgent(t, ServerConfig{MaxFileBytes: 1000})
	ctx := ctxT(t)
	dir := a.workdir
	tests := []struct {
		name   string
		call   func(p string) error
		path   string
		status int
	}{
		{"read relative", readCall(ctx, a), "etc/passwd", 400},
		{"read dotdot", readCall(ctx, a), dir + "/../../etc/passwd", 400},
		{"read empty", readCall(ctx, a), "", 400},
		{"read missing", readCall(ctx, a), dir + "/missing", 404},
		{"read directory", readCall(ctx, a), dir, 400},
		{"write dotdot", writeCall(ctx, a, "x"), dir + "/a/../b", 400},
		{"write relative", writeCall(ctx, a, "x"), "b", 400},
		{"write over the size limit", writeCall(ctx, a, strings.Repeat("x", 1001)), dir + "/big", 413},
		{"write onto a directory", writeCall(ctx, a, "x"), dir, 400},
		{"list relative", func(p string) error { _, err := a.client.ListFiles(ctx, p); return err }, "x", 400},
		{"list missing", func(p string) error { _, err := a.client.ListFiles(ctx, p); return err }, dir + "/missing", 404},
		{"delete dotdot", func(p string) error { return a.client.Delete(ctx, p, true) }, dir + "/..", 400},
		{"mkdir relative", func(p string) error { return a.client.Mkdir(ctx, p) }, "a/b", 400},
		{"download dotdot", func(p string) error { _, err := a.client.Download(ctx, p); return err }, "/tmp/../etc", 400},
		{"upload relative", func(p string) error { _, err := a.client.Upload(ctx, p, strings.NewReader("")); return err }, "tmp", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantAgentError(t, tt.call(tt.path), tt.status)
		})
	}
	if _, err := os.Stat(dir + "/big"); !os.IsNotExist(err) {
		t.Fatalf("a refused write left a file: %v", err)
	}
}

func readCall(ctx context.Context, a *testAgent) func(string) error {
	return func(p string) error {
		rc, err := a.client.ReadFile(ctx, p)
		if err == nil {
			rc.Close()
		}
		return err
	}
}

func writeCall(ctx context.Context, a *testAgent, content string) func(string) error {
	return func(p string) error {
		_, err := a.client.WriteFile(ctx, p, strings.NewReader(content), 0o644)
		return err
	}
}
