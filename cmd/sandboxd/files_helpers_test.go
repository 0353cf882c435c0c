package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// prng is a deterministic pseudo-random stream of n bytes: test data of any
// size without holding it, and incompressible so nothing along the way can
// cheat by compressing.
type prng struct {
	src  *rand.ChaCha8
	left int64
	buf  [8]byte
	have int
}

func newPRNG(seed byte, n int64) *prng {
	var s [32]byte
	s[0] = seed
	return &prng{src: rand.NewChaCha8(s), left: n}
}

func (p *prng) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n := 0
	for n+8 <= len(b) {
		binary.LittleEndian.PutUint64(b[n:], p.src.Uint64())
		n += 8
	}
	if n < len(b) {
		binary.LittleEndian.PutUint64(p.buf[:], p.src.Uint64())
		n += copy(b[n:], p.buf[:len(b)-n])
	}
	p.left -= int64(n)
	return n, nil
}

// streamGet GETs route (path and query) into w.
func (c *client) streamGet(ctx context.Context, route string, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+route, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("GET %s: status %d: %s", route, resp.StatusCode, raw)
	}
	return io.Copy(w, resp.Body)
}

// putStream PUTs body to route (path and query); size < 0 sends it chunked.
func (c *client) putStream(ctx context.Context, route string, body io.Reader, size int64, ctype string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "PUT", c.base+route, io.NopCloser(body))
	if err != nil {
		return 0, nil, err
	}
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", ctype)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, raw, nil
}

// upload PUTs body to /files/content. size < 0 sends it chunked (no
// declared length). It returns the status and the answer's body.
func (c *client) upload(ctx context.Context, sandboxID, path string, body io.Reader, size int64) (int, []byte, error) {
	q := url.Values{"sandbox_id": {sandboxID}, "path": {path}}
	req, err := http.NewRequestWithContext(ctx, "PUT", c.base+"/api/v1/files/content?"+q.Encode(), body)
	if err != nil {
		return 0, nil, err
	}
	req.ContentLength = size
	if size < 0 {
		req.ContentLength = -1
		req.Body = io.NopCloser(body) // hide the length so it goes chunked
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, raw, nil
}

// download streams /files/content into w.
func (c *client) download(ctx context.Context, sandboxID, path string, w io.Writer) (int64, error) {
	q := url.Values{"sandbox_id": {sandboxID}, "path": {path}}
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/api/v1/files/content?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("download %s: status %d: %s", path, resp.StatusCode, raw)
	}
	return io.Copy(w, resp.Body)
}

// exec runs a shell command in the sandbox and returns its stdout; a
// non-zero exit fails the test.
func (c *client) exec(t testing.TB, sandboxID, cmd string) string {
	t.Helper()
	var res execResult
	c.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sandboxID, "command": cmd, "timeout": 120}, 200, &res)
	if res.ExitCode != 0 {
		t.Fatalf("%q: exit %d: %s", cmd, res.ExitCode, res.Stderr)
	}
	return res.Stdout
}

// sandboxSHA256 hashes a file inside the sandbox.
func (c *client) sandboxSHA256(t testing.TB, sandboxID, path string) string {
	t.Helper()
	out := c.exec(t, sandboxID, "sha256sum "+path)
	sum, _, _ := strings.Cut(out, " ")
	return sum
}

func hexSum(h interface{ Sum([]byte) []byte }) string { return hex.EncodeToString(h.Sum(nil)) }

// rssSampler follows a process's resident memory (VmRSS, /proc) every few
// milliseconds and keeps the largest value seen.
type rssSampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	max  int64
}

func vmKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return -1
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := vmKB(pid, "VmRSS"); v > 0 {
				s.mu.Lock()
				s.max = max(s.max, v)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// peakKB stops sampling and returns the largest VmRSS seen, in KiB.
func (s *rssSampler) peakKB() int64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

// watchStream is an open GET /files/watch.
type watchStream struct {
	resp   *http.Response
	events chan map[string]any
	cancel context.CancelFunc
}

// watch opens a watch stream and waits for its "ready" line.
func (c *client) watch(t testing.TB, sandboxID, path string, recursive bool) (*watchStream, int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	q := url.Values{"sandbox_id": {sandboxID}, "path": {path}, "recursive": {strconv.FormatBool(recursive)}}
	req, _ := http.NewRequestWithContext(ctx, "GET", c.base+"/api/v1/files/watch?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("watch: %v", err)
	}
	if resp.StatusCode != 200 {
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, raw
	}
	w := &watchStream{resp: resp, events: make(chan map[string]any, 256), cancel: cancel}
	go func() {
		defer close(w.events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				w.events <- ev
			}
		}
	}()
	if ev := w.next(t); ev["type"] != "ready" {
		t.Fatalf("first watch event %v, want ready", ev)
	}
	return w, 200, nil
}

func (w *watchStream) next(t testing.TB) map[string]any {
	t.Helper()
	select {
	case ev, ok := <-w.events:
		if !ok {
			t.Fatal("watch stream ended")
		}
		return ev
	case <-time.After(15 * time.Second):
		t.Fatal("no watch event within 15 s")
	}
	return nil
}

func (w *watchStream) close() { w.cancel(); w.resp.Body.Close() }
