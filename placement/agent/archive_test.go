package agent

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
)

// snapshot maps every path under root to what it is and holds.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[rel] = "link:" + l
		case fi.IsDir():
			out[rel] = "dir " + fi.Mode().Perm().String()
		default:
			b, _ := os.ReadFile(p)
			out[rel] = "file " + fi.Mode().Perm().String() + " " + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestArchiveRoundTrip(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	ctx := ctxT(t)
	src := filepath.Join(a.workdir, "src")
	files := map[string]string{"a.txt": "alpha", "sub/b.bin": "\x00\x01\xff", "sub/deeper/c.py": "print(1)"}
	for name, content := range files {
		if _, err := a.client.WriteFile(ctx, filepath.Join(src, name), bytes.NewReader([]byte(content)), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sub/b.bin", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := a.client.Mkdir(ctx, filepath.Join(src, "empty")); err != nil {
		t.Fatal(err)
	}
	rc, err := a.client.Download(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	tarball, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	sort.Strings(names)
	wantNames := []string{"a.txt", "empty/", "link", "sub/", "sub/b.bin", "sub/deeper/", "sub/deeper/c.py"}
	if len(names) != len(wantNames) {
		t.Fatalf("tar names %q, want %q", names, wantNames)
	}
	for i := range names {
		if names[i] != wantNames[i] {
			t.Fatalf("tar names %q, want %q", names, wantNames)
		}
	}
	dst := filepath.Join(a.workdir, "dst")
	n, err := a.client.Upload(ctx, dst, bytes.NewReader(tarball))
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("upload extracted %d files, want 4 (3 files + 1 symlink)", n)
	}
	want, got := snapshot(t, src), snapshot(t, dst)
	if len(want) != len(got) {
		t.Fatalf("extracted %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
}

type tarEntry struct {
	name, link string
	typ        byte
	body       string
}

func makeTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUploadRefusesEscapes(t *testing.T) {
	a := startAgent(t, ServerConfig{MaxArchiveBytes: 64 << 10})
	ctx := ctxT(t)
	outside := filepath.Join(a.workdir, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	// A pre-existing symlink inside the target that leads out of it.
	target := filepath.Join(a.workdir, "target")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(target, "exit")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		entries []tarEntry
		status  int
	}{
		{"dotdot", []tarEntry{{name: "../outside/evil", typ: tar.TypeReg, body: "x"}}, 400},
		{"nested dotdot", []tarEntry{{name: "a/../../outside/evil", typ: tar.TypeReg, body: "x"}}, 400},
		{"absolute", []tarEntry{{name: "/tmp/evil", typ: tar.TypeReg, body: "x"}}, 400},
		{"absolute symlink", []tarEntry{{name: "evil", link: "/etc/passwd", typ: tar.TypeSymlink}}, 400},
		{"symlink climbing out", []tarEntry{{name: "d/evil", link: "../../outside", typ: tar.TypeSymlink}}, 400},
		{"hard link outside", []tarEntry{{name: "evil", link: "../outside/x", typ: tar.TypeLink}}, 400},
		{"write through a symlink", []tarEntry{{name: "exit/evil", typ: tar.TypeReg, body: "x"}}, 400},
		{"over the size limit", []tarEntry{{name: "big", typ: tar.TypeReg, body: string(make([]byte, 70<<10))}}, 413},
		{"not a tar", nil, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte("this is not a tar archive, only some text that is long enough to be read as a header block by the tar reader........................................................................................................................................................................................................................................................................................................................................................................................................................................................................................")
			if tt.entries != nil {
				body = makeTar(t, tt.entries...)
			}
			_, err := a.client.Upload(ctx, target, bytes.NewReader(body))
			wantAgentError(t, err, tt.status)
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Fatalf("something was written outside the target: %v", entries)
			}
		})
	}
	// Links that stay inside are fine.
	n, err := a.client.Upload(ctx, target, bytes.NewReader(makeTar(t,
		tarEntry{name: "d/f", typ: tar.TypeReg, body: "inside"},
		tarEntry{name: "d/rel", link: "f", typ: tar.TypeSymlink},
		tarEntry{name: "up", link: "d/f", typ: tar.TypeSymlink},
		tarEntry{name: "hard", link: "d/f", typ: tar.TypeLink},
	)))
	if err != nil || n != 4 {
		t.Fatalf("inside links: n=%d err=%v", n, err)
	}
	for _, p := range []string{"d/rel", "up", "hard"} {
		b, err := os.ReadFile(filepath.Join(target, p))
		if err != nil || string(b) != "inside" {
			t.Fatalf("%s: %q %v", p, b, err)
		}
	}
}

// A sparse file larger than its filesystem is refused, not sent as
// terabytes of zeros: the download breaks off at once.
func TestArchiveRefusesAHollowFile(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	var st syscall.Statfs_t
	if err := syscall.Statfs(a.workdir, &st); err != nil {
		t.Fatal(err)
	}
	hollow := filepath.Join(a.workdir, "hollow")
	f, err := os.Create(hollow)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(st.Blocks)*st.Bsize + 1<<30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rc, err := a.client.Download(ctxT(t), a.workdir)
	if err != nil {
		return // refused before the first byte: as good
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	if err == nil {
		t.Fatalf("download of a %d-byte hole ended cleanly after %d bytes", int64(st.Blocks)*st.Bsize+1<<30, n)
	}
	if n > 1<<20 {
		t.Errorf("sent %d bytes of a hole before breaking off", n)
	}
}
