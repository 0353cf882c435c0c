package main

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"
)

// filesQuery builds a /files path with sandbox_id, path and extra pairs.
func filesQuery(route, sandboxID, path string, extra ...string) string {
	q := url.Values{"sandbox_id": {sandboxID}, "path": {path}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return route + "?" + q.Encode()
}

// TestFilesOps drives stat, exists, list with a depth and rename against a
// real sandbox, including every way a rename could leave the workspace.
func TestFilesOps(t *testing.T) {
	n := startNode(t, nodeOpts{cluster: uniqueCluster(t)})
	c := n.login(t, "files-ops", "user")
	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	id := sb.SandboxID
	c.exec(t, id, `set -e; mkdir -p /workspace/t/d1/d2/d3; printf hello > /workspace/t/a.txt; chmod 640 /workspace/t/a.txt
printf x > /workspace/t/d1/b; printf y > /workspace/t/d1/d2/c; printf z > /workspace/t/d1/d2/d3/e
ln -s /etc /workspace/t/etc; ln -s /tmp /workspace/t/tmplink; printf s > /tmp/outside`)

	t.Run("stat", func(t *testing.T) {
		for _, tc := range []struct {
			path, typ, mode, target string
			size                    float64
			status                  int
		}{
			{"/workspace/t/a.txt", "file", "0640", "", 5, 200},
			{"/workspace/t/d1", "dir", "0755", "", -1, 200},
			{"/workspace/t/etc", "symlink", "", "/etc", -1, 200},
			{"/workspace/t/missing", "", "", "", -1, 404},
			{"workspace/t/a.txt", "", "", "", -1, 400},
			{"/workspace/../etc/passwd", "", "", "", -1, 400},
		} {
			var fi map[string]any
			c.do("GET", filesQuery("/api/v1/files/stat", id, tc.path), nil, tc.status, &fi)
			if tc.status != 200 {
				if fi["error"] == "" || fi["code"] == "" {
					t.Errorf("stat %s: error body %v has no error and code", tc.path, fi)
				}
				continue
			}
			if fi["type"] != tc.typ || (tc.mode != "" && fi["mode"] != tc.mode) || (tc.size >= 0 && fi["size"] != tc.size) {
				t.Errorf("stat %s = %v, want type %s mode %s size %v", tc.path, fi, tc.typ, tc.mode, tc.size)
			}
			if tc.target != "" && fi["symlink_target"] != tc.target {
				t.Errorf("stat %s: symlink_target %v, want %s", tc.path, fi["symlink_target"], tc.target)
			}
			if mt, err := time.Parse(time.RFC3339Nano, fmt.Sprint(fi["modified_at"])); err != nil || time.Since(mt) > 10*time.Minute {
				t.Errorf("stat %s: modified_at %v (%v) is not a recent time", tc.path, fi["modified_at"], err)
			}
		}
	})

	t.Run("exists", func(t *testing.T) {
		for path, want := range map[string]bool{"/workspace/t/a.txt": true, "/workspace/t/d1/d2": true, "/workspace/t/nope": false, "/nope/nope": false, "/workspace/t/a.txt/x": false} {
			var r struct {
				Exists bool `json:"exists"`
			}
			c.do("GET", filesQuery("/api/v1/files/exists", id, path), nil, 200, &r)
			if r.Exists != want {
				t.Errorf("exists %s = %v, want %v", path, r.Exists, want)
			}
		}
	})

	t.Run("list depth", func(t *testing.T) {
		for _, tc := range []struct {
			depth, limit string
			want         []string
			truncated    bool
			status       int
		}{
			{"", "", []string{"a.txt", "d1", "etc", "tmplink"}, false, 200},
			{"2", "", []string{"a.txt", "d1", "etc", "tmplink", "d1/b", "d1/d2"}, false, 200},
			{"3", "", []string{"a.txt", "d1", "etc", "tmplink", "d1/b", "d1/d2", "d1/d2/c", "d1/d2/d3"}, false, 200},
			{"10", "", []string{"a.txt", "d1", "etc", "tmplink", "d1/b", "d1/d2", "d1/d2/c", "d1/d2/d3", "d1/d2/d3/e"}, false, 200},
			{"10", "5", []string{"a.txt", "d1", "etc", "tmplink", "d1/b"}, true, 200},
			{"0", "", nil, false, 422},
			{"65", "", nil, false, 422},
			{"2", "100000000", nil, false, 422},
		} {
			var r struct {
				Files []struct {
					Path string `json:"path"`
				} `json:"files"`
				Truncated bool `json:"truncated"`
			}
			c.do("GET", filesQuery("/api/v1/files", id, "/workspace/t", "depth", tc.depth, "limit", tc.limit), nil, tc.status, &r)
			if tc.status != 200 {
				continue
			}
			var got []string
			for _, f := range r.Files {
				got = append(got, strings.TrimPrefix(f.Path, "/workspace/t/"))
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") || r.Truncated != tc.truncated {
				t.Errorf("list depth %q limit %q = %v truncated=%v, want %v truncated=%v", tc.depth, tc.limit, got, r.Truncated, tc.want, tc.truncated)
			}
		}
	})

	t.Run("rename", func(t *testing.T) {
		for _, tc := range []struct {
			name, from, to string
			status         int
		}{
			{"within the workspace", "/workspace/t/a.txt", "/workspace/t/d1/a2.txt", 200},
			{"a symlink moves as a link", "/workspace/t/etc", "/workspace/t/etc2", 200},
			{"destination outside the roots", "/workspace/t/d1/a2.txt", "/etc/a2", 403},
			{"source outside the roots", "/etc/hostname", "/workspace/t/h", 403},
			{"destination through a symlink out of the workspace", "/workspace/t/d1/a2.txt", "/workspace/t/tmplink/a2", 403},
			{"source through a symlink out of the workspace", "/workspace/t/etc2/passwd", "/workspace/t/p", 403},
			{"across file systems", "/workspace/t/d1/a2.txt", "/tmp/a2", 409},
			{"a root itself", "/workspace", "/workspace2", 403},
			{"dot-dot", "/workspace/t/d1/a2.txt", "/workspace/../etc/x", 400},
			{"missing source", "/workspace/t/nope", "/workspace/t/x", 404},
		} {
			raw := c.do("POST", "/api/v1/files/rename", map[string]string{"sandbox_id": id, "from": tc.from, "to": tc.to}, tc.status, nil)
			t.Logf("%s: %d %s", tc.name, tc.status, strings.TrimSpace(string(raw)))
		}
		var r struct {
			Exists bool `json:"exists"`
		}
		c.do("GET", filesQuery("/api/v1/files/exists", id, "/workspace/t/a.txt"), nil, 200, &r)
		if r.Exists {
			t.Error("a.txt still exists after it was renamed")
		}
		got, err := c.raw("GET", filesQuery("/api/v1/files/content", id, "/workspace/t/d1/a2.txt"))
		if err != nil || string(got) != "hello" {
			t.Errorf("renamed file reads %q, %v; want hello", got, err)
		}
		// Nothing outside moved or changed.
		c.exec(t, id, `test "$(cat /tmp/outside)" = s && test -f /etc/passwd && test -f /etc/hostname && test ! -e /tmp/a2 && test ! -e /workspace/t/p && test "$(readlink /workspace/t/etc2)" = /etc`)
	})
}

// TestFilesWatch streams create, write, rename and remove events from a
// real sandbox in the order the changes were made, and frees every stream
// once its client goes away.
func TestFilesWatch(t *testing.T) {
	n := startNode(t, nodeOpts{cluster: uniqueCluster(t)})
	c := n.login(t, "files-watch", "user")
	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	id := sb.SandboxID
	c.exec(t, id, "mkdir -p /workspace/w")

	w, status, body := c.watch(t, id, "/workspace/w", true)
	if status != 200 {
		t.Fatalf("watch: %d %s", status, body)
	}
	c.exec(t, id, `cd /workspace/w && : > a && echo hi >> a && mv a b && mkdir sub && : > sub/c && rm b`)
	want := []string{"create /workspace/w/a", "write /workspace/w/a", "rename /workspace/w/b", "create /workspace/w/sub",
		"create /workspace/w/sub/c", "remove /workspace/w/b"}
	// sub/c may be reported by the watch on sub or, when sub was made and
	// filled before its watch existed, by the scan that adds the watch: the
	// same event either way.
	for i, wnt := range want {
		ev := w.next(t)
		got := fmt.Sprintf("%v %v", ev["type"], ev["path"])
		if got != wnt {
			t.Fatalf("event %d: %s (%v), want %s", i, got, ev, wnt)
		}
		if ev["type"] == "rename" && ev["old_path"] != "/workspace/w/a" {
			t.Fatalf("rename event %v: old_path want /workspace/w/a", ev)
		}
	}
	w.close()

	t.Run("missing directory", func(t *testing.T) {
		if _, status, body := c.watch(t, id, "/workspace/none", false); status != 404 {
			t.Fatalf("watch of a missing directory: %d %s, want 404", status, body)
		}
	})

	t.Run("streams end with their client", func(t *testing.T) {
		// More streams, one after another, than the per-user cap (8) and
		// the agent's own (16): each must be gone once its client is.
		for i := 0; i < 20; i++ {
			deadline := time.Now().Add(10 * time.Second)
			for {
				ws, status, body := c.watch(t, id, "/workspace/w", false)
				if status == 200 {
					ws.close()
					break
				}
				if status != 429 || time.Now().After(deadline) {
					t.Fatalf("watch %d: %d %s", i, status, body)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	})
}

// TestFilesDiskFull fills a small sandbox disk: an upload that says it is
// too large is refused before a byte is read, one that fills the disk while
// streaming gets a 413 saying so, the file it would have replaced keeps its
// content, and the sandbox goes on working.
func TestFilesDiskFull(t *testing.T) {
	n := startNode(t, nodeOpts{cluster: uniqueCluster(t), env: map[string]string{"SANDBOX_DISK_MB": "64", "POOL_MIN_SIZE": "1"}})
	c := n.login(t, "files-full", "user")
	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	id := sb.SandboxID
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if st, body, err := c.upload(ctx, id, "/workspace/keep", strings.NewReader("precious"), 8); err != nil || st != 200 {
		t.Fatalf("small upload: %d %s %v", st, body, err)
	}
	// Larger than the whole disk: the API refuses it from its length.
	st, body, err := c.upload(ctx, id, "/workspace/big", newPRNG(1, 100<<20), 100<<20)
	if err != nil || st != 413 || !strings.Contains(string(body), "larger than this sandbox's disk") {
		t.Fatalf("100 MiB into a 64 MiB disk: %d %s %v; want 413 naming the disk", st, body, err)
	}
	c.exec(t, id, "head -c 40M /dev/zero > /workspace/fill")
	// Fits the disk, not what is left of it: the agent refuses it from its length.
	st, body, err = c.upload(ctx, id, "/workspace/keep", newPRNG(2, 30<<20), 30<<20)
	if err != nil || st != 413 || !strings.Contains(string(body), "no space") {
		t.Fatalf("30 MiB into 24 MiB free: %d %s %v; want 413 no space", st, body, err)
	}
	// Same without a declared length: the disk fills while it streams.
	st, body, err = c.upload(ctx, id, "/workspace/keep", newPRNG(3, 30<<20), -1)
	if err != nil || st != 413 || !strings.Contains(string(body), "no space left") {
		t.Fatalf("30 MiB streamed into 24 MiB free: %d %s %v; want 413 no space left", st, body, err)
	}
	t.Logf("disk full answer: %s", body)
	if got, err := c.raw("GET", filesQuery("/api/v1/files/content", id, "/workspace/keep")); err != nil || string(got) != "precious" {
		t.Fatalf("file after failed overwrites: %q, %v; want its old content", got, err)
	}
	// No half-written temp file is left to eat the disk, and the sandbox works.
	if out := c.exec(t, id, "ls -A /workspace"); strings.TrimSpace(out) != "fill\nkeep" {
		t.Fatalf("workspace holds %q after the failures, want only fill and keep", out)
	}
	c.exec(t, id, "rm /workspace/fill")
	if st, body, err := c.upload(ctx, id, "/workspace/after", newPRNG(4, 30<<20), 30<<20); err != nil || st != 200 {
		t.Fatalf("upload after freeing space: %d %s %v", st, body, err)
	}
	if out := c.exec(t, id, "echo ok"); out != "ok\n" {
		t.Fatalf("exec after disk full: %q", out)
	}
}

// gib is the size of the large-file test and benchmark.
const gib = 1 << 30

// transfer1GiB streams 1 GiB of generated data up and back down, checking
// SHA-256 on both sides, and returns both durations.
func transfer1GiB(t testing.TB, c *client, id, path string, seed byte) (up, down time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sent := sha256.New()
	start := time.Now()
	st, body, err := c.upload(ctx, id, path, io.TeeReader(newPRNG(seed, gib), sent), gib)
	if err != nil || st != 200 {
		t.Fatalf("upload 1 GiB: %d %s %v", st, body, err)
	}
	up = time.Since(start)
	if got := c.sandboxSHA256(t, id, path); got != hexSum(sent) {
		t.Fatalf("sha256 in the sandbox %s, sent %s", got, hexSum(sent))
	}
	recv := sha256.New()
	start = time.Now()
	nread, err := c.download(ctx, id, path, recv)
	down = time.Since(start)
	if err != nil || nread != gib {
		t.Fatalf("download 1 GiB: %d bytes, %v", nread, err)
	}
	if hexSum(recv) != hexSum(sent) {
		t.Fatalf("sha256 downloaded %s, sent %s", hexSum(recv), hexSum(sent))
	}
	return up, down
}

// TestFiles1GiB moves 1 GiB into a sandbox and out again through sandboxd,
// streamed: sandboxd's resident memory (VmRSS of the sandboxd process,
// sampled every 5 ms) may grow by less than 64 MiB.
func TestFiles1GiB(t *testing.T) {
	// The disk is a tmpfs charged to the sandbox's memory: 1100 MiB holds
	// the file; one pool sandbox keeps the machine's memory free.
	n := startNode(t, nodeOpts{cluster: uniqueCluster(t), env: map[string]string{"SANDBOX_DISK_MB": "1100", "POOL_MIN_SIZE": "1"}})
	c := n.login(t, "files-big", "user")
	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	pid := n.cmd.Process.Pid
	before := vmKB(pid, "VmRSS")
	s := sampleRSS(pid)
	up, down := transfer1GiB(t, c, sb.SandboxID, "/workspace/big.bin", 7)
	tarDown, tarUp := archive1GiB(t, c, sb.SandboxID, "/workspace/big.bin")
	peak := s.peakKB()
	growth := peak - before
	t.Logf("1 GiB raw up %.2fs (%.0f MiB/s), down %.2fs (%.0f MiB/s); as a tar down %.2fs, up %.2fs; "+
		"sandboxd VmRSS %d KiB before, %d KiB peak: +%d KiB",
		up.Seconds(), 1024/up.Seconds(), down.Seconds(), 1024/down.Seconds(), tarDown.Seconds(), tarUp.Seconds(), before, peak, growth)
	if growth >= 64<<10 {
		t.Fatalf("sandboxd's resident memory grew by %d KiB moving 1 GiB; the bound is 64 MiB", growth)
	}
}

// archive1GiB downloads the 1 GiB file at path as a tar (checking its
// content against the file's hash in the sandbox), removes it, and uploads
// it again as a generated tar, checked the same way.
func archive1GiB(t *testing.T, c *client, id, path string) (down, up time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	want := c.sandboxSHA256(t, id, path)
	start := time.Now()
	pr, pw := io.Pipe()
	got := sha256.New()
	errc := make(chan error, 1)
	go func() {
		tr := tar.NewReader(pr)
		hdr, err := tr.Next()
		if err == nil && hdr.Size != gib {
			err = fmt.Errorf("tar entry %s of %d bytes", hdr.Name, hdr.Size)
		}
		if err == nil {
			_, err = io.Copy(got, tr)
		}
		_, _ = io.Copy(io.Discard, pr)
		errc <- err
	}()
	_, err := c.streamGet(ctx, filesQuery("/api/v1/files/archive", id, path), pw)
	pw.CloseWithError(err)
	if terr := <-errc; err != nil || terr != nil {
		t.Fatalf("archive download: %v, %v", err, terr)
	}
	down = time.Since(start)
	if hexSum(got) != want {
		t.Fatalf("tar content sha256 %s, file %s", hexSum(got), want)
	}
	c.exec(t, id, "rm "+path)

	tarR, tarW := io.Pipe()
	go func() {
		tw := tar.NewWriter(tarW)
		err := tw.WriteHeader(&tar.Header{Name: "again.bin", Mode: 0o644, Size: gib})
		if err == nil {
			_, err = io.Copy(tw, newPRNG(7, gib)) // the same bytes as before
		}
		if err == nil {
			err = tw.Close()
		}
		tarW.CloseWithError(err)
	}()
	start = time.Now()
	st, body, err := c.putStream(ctx, filesQuery("/api/v1/files/archive", id, "/workspace/in"), tarR, -1, "application/x-tar")
	if err != nil || st != 200 {
		t.Fatalf("archive upload: %d %s %v", st, body, err)
	}
	up = time.Since(start)
	if sum := c.sandboxSHA256(t, id, "/workspace/in/again.bin"); sum != want {
		t.Fatalf("extracted file sha256 %s, want %s", sum, want)
	}
	return down, up
}
