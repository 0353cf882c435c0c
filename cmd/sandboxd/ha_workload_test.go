package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// haClient is a user that survives failures the way the guide's SDK users
// should: on a transport error, 5xx or 429 it retries the same request (same
// Idempotency-Key) on the next node, with backoff, for a bounded time.
type haClient struct {
	c     *haCluster
	user  string
	token string
	next  int
	hc    *http.Client
}

// haRetryFor bounds one logical request, retries included.
const haRetryFor = 90 * time.Second

func (c *haCluster) client(user, role string) *haClient {
	cl := &haClient{c: c, user: user, hc: &http.Client{Timeout: 30 * time.Second}}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := cl.call("POST", "/api/v1/auth/token", "", map[string]string{"user_id": user, "role": role}, &tok); err != nil {
		c.t.Fatalf("login %s: %v", user, err)
	}
	cl.token = tok.AccessToken
	return cl
}

// call sends one logical request and decodes a 2xx answer into out. It
// returns an error for a 4xx (a lost or refused request) or when retries ran
// out.
func (cl *haClient) call(method, path, key string, body, out any) error {
	_, _, err := cl.callOn(method, path, key, body, out)
	return err
}

// callOn is call that also says which node answered and the answer's
// X-Cloud-Sandbox-Index.
func (cl *haClient) callOn(method, path, key string, body, out any) (*haNode, uint64, error) {
	deadline := time.Now().Add(haRetryFor)
	backoff := 100 * time.Millisecond
	var last string
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		n := cl.c.nodes[cl.next%len(cl.c.nodes)]
		status, raw, index, err := cl.sendAt(n, method, path, key, body, 0)
		switch {
		case err == nil && status/100 == 2:
			if out != nil {
				return n, index, json.Unmarshal(raw, out)
			}
			return n, index, nil
		case err == nil && status != 429 && status < 500:
			return n, index, fmt.Errorf("%s %s on %s: status %d: %s", method, path, n.id, status, raw)
		case err != nil:
			last = fmt.Sprintf("%s: %v", n.id, err)
		default:
			last = fmt.Sprintf("%s: status %d: %s", n.id, status, raw)
		}
		cl.next++ // another node may serve it
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
	return nil, 0, fmt.Errorf("%s %s: gave up after %v: %s", method, path, haRetryFor, last)
}

func (cl *haClient) send(n *haNode, method, path, key string, body any) (int, []byte, error) {
	status, raw, _, err := cl.sendAt(n, method, path, key, body, 0)
	return status, raw, err
}

// sendAt sends one request to n; a non-zero index goes in
// X-Cloud-Sandbox-Index (serve once you applied it). It returns the
// answer's own X-Cloud-Sandbox-Index.
func (cl *haClient) sendAt(n *haNode, method, path, key string, body any, index uint64) (int, []byte, uint64, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.api+path, r)
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if cl.token != "" {
		req.Header.Set("Authorization", "Bearer "+cl.token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if index > 0 {
		req.Header.Set(haIndexHeader, strconv.FormatUint(index, 10))
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	got, _ := strconv.ParseUint(resp.Header.Get(haIndexHeader), 10, 64)
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, got, err
}

const haIndexHeader = "X-Cloud-Sandbox-Index"

// haWorkload keeps users acquiring sandboxes, creating sessions, running
// commands and releasing, and records every acknowledged write. It runs in
// phases (start ... finish), so a test can verify after each fault with
// nothing in flight; the records of every phase are checked each time.
type haWorkload struct {
	c     *haCluster
	users []*haClient
	phase int
	stop  chan struct{}
	wg    sync.WaitGroup

	mu       sync.Mutex
	acquired map[string]haAck // key -> sandbox acknowledged by acquire
	released map[string]bool  // sandbox ids acknowledged released
	sessions map[string]haAck // key -> session acknowledged by create
	deleted  map[string]bool  // session ids acknowledged deleted
	execs    int
	errs     []string
	ryw      haRYW
}

type haAck struct{ id, sandbox, user string }

// startWorkload makes users users and starts a first phase of at most
// rounds rounds each.
func (c *haCluster) startWorkload(users, rounds int) *haWorkload {
	w := &haWorkload{c: c, acquired: map[string]haAck{}, released: map[string]bool{},
		sessions: map[string]haAck{}, deleted: map[string]bool{}}
	for i := range users {
		cl := c.client(fmt.Sprintf("%s-u%d", c.name, i), "user")
		cl.next = i
		w.users = append(w.users, cl)
	}
	w.start(rounds)
	return w
}

// start runs a new phase: every user does at most rounds rounds, until
// finish.
func (w *haWorkload) start(rounds int) {
	w.phase++
	w.stop = make(chan struct{})
	for _, cl := range w.users {
		w.wg.Add(1)
		go w.run(cl, w.phase, rounds)
	}
}

func (w *haWorkload) fail(format string, args ...any) {
	w.mu.Lock()
	w.errs = append(w.errs, fmt.Sprintf(format, args...))
	w.mu.Unlock()
}

func (w *haWorkload) run(cl *haClient, phase, rounds int) {
	defer w.wg.Done()
	for r := 0; r < rounds; r++ {
		select {
		case <-w.stop:
			return
		default:
		}
		key := fmt.Sprintf("%s-%d-%d", cl.user, phase, r)
		var sb sandboxView
		on, index, err := cl.callOn("POST", "/api/v1/sandbox/acquire", "acq-"+key, nil, &sb)
		if err != nil {
			w.fail("acquire %s: %v", key, err)
			continue
		}
		w.mu.Lock()
		w.acquired[key] = haAck{id: sb.SandboxID, sandbox: sb.SandboxID, user: cl.user}
		w.mu.Unlock()
		w.readBack(cl, on, index, "acquire "+key, "/api/v1/sandbox/"+sb.SandboxID, haActive)
		w.exec(cl, sb.SandboxID, key)
		if r%2 == 1 {
			if on, index, err := cl.callOn("POST", "/api/v1/sandbox/release", "rel-"+key, map[string]string{"sandbox_id": sb.SandboxID}, nil); err != nil {
				w.fail("release %s: %v", key, err)
			} else {
				w.mu.Lock()
				w.released[sb.SandboxID] = true
				w.mu.Unlock()
				w.readBack(cl, on, index, "release "+key, "/api/v1/sandbox/"+sb.SandboxID, haNotActive)
			}
		}
		if r%3 == 0 {
			var s sessionView
			on, index, err := cl.callOn("POST", "/api/v1/sessions", "ses-"+key, map[string]any{"cpu_count": 1, "memory_mb": 256}, &s)
			if err != nil {
				w.fail("create session %s: %v", key, err)
				continue
			}
			w.mu.Lock()
			w.sessions[key] = haAck{id: s.SessionID, sandbox: s.SandboxID, user: cl.user}
			w.mu.Unlock()
			w.readBack(cl, on, index, "session "+key, "/api/v1/sessions/"+s.SessionID, haActive)
			if err := cl.waitSessionActive(s.SessionID); err != nil {
				w.fail("session %s: %v", key, err)
				continue
			}
			w.exec(cl, s.SandboxID, "s"+key)
		}
	}
}

// drain releases every sandbox and deletes every session the workload
// holds, so phases do not pile up against POOL_MAX_SIZE; the next verify
// checks they are gone.
func (w *haWorkload) drain(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	var sbs []haAck
	for _, a := range w.acquired {
		if !w.released[a.sandbox] {
			sbs = append(sbs, a)
		}
	}
	var ses []haAck
	for _, a := range w.sessions {
		if !w.deleted[a.id] {
			ses = append(ses, a)
		}
	}
	w.mu.Unlock()
	byUser := map[string]*haClient{}
	for _, cl := range w.users {
		byUser[cl.user] = cl
	}
	for _, a := range sbs {
		if err := byUser[a.user].call("POST", "/api/v1/sandbox/release", "drain-"+a.sandbox, map[string]string{"sandbox_id": a.sandbox}, nil); err != nil {
			t.Errorf("drain: release %s: %v", a.sandbox, err)
			continue
		}
		w.mu.Lock()
		w.released[a.sandbox] = true
		w.mu.Unlock()
	}
	for _, a := range ses {
		if err := byUser[a.user].call("DELETE", "/api/v1/sessions/"+a.id, "drain-"+a.id, nil, nil); err != nil {
			t.Errorf("drain: delete session %s: %v", a.id, err)
			continue
		}
		w.mu.Lock()
		w.deleted[a.id] = true
		w.mu.Unlock()
	}
}

// waitSessionActive polls a session whose create answered before its
// sandbox was ready (201 with sandbox_status "pending", as the contract
// allows when the bounded wait ends, e.g. across a leader change).
func (cl *haClient) waitSessionActive(id string) error {
	deadline := time.Now().Add(haRetryFor)
	for {
		var s struct {
			SandboxStatus string `json:"sandbox_status"`
		}
		if err := cl.call("GET", "/api/v1/sessions/"+id, "", nil, &s); err != nil {
			return err
		}
		if s.SandboxStatus == "active" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sandbox still %q after %v", s.SandboxStatus, haRetryFor)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// exec runs a command whose output names the request, so an answer from the
// wrong sandbox or a mixed-up retry shows.
func (w *haWorkload) exec(cl *haClient, sandbox, tag string) {
	var r execResult
	if err := cl.call("POST", "/api/v1/execute", "", map[string]any{"sandbox_id": sandbox, "command": []string{"echo", tag}}, &r); err != nil {
		w.fail("execute in %s: %v", sandbox, err)
		return
	}
	if r.ExitCode != 0 || r.Stdout != tag+"\n" {
		w.fail("execute in %s: %+v, want %q", sandbox, r, tag)
		return
	}
	w.mu.Lock()
	w.execs++
	w.mu.Unlock()
}

// finish ends the phase: it stops the workload, waits for in-flight
// requests, and fails the test for every request that was lost and every
// read that missed a write it named.
func (w *haWorkload) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("workload after phase %d: %d acquires (%d released), %d sessions (%d deleted), %d executions acknowledged", w.phase, len(w.acquired), len(w.released), len(w.sessions), len(w.deleted), w.execs)
	t.Logf("read-your-writes: %s", w.ryw)
	for _, e := range w.errs {
		t.Errorf("lost request: %s", e)
	}
	w.errs = nil
	for _, e := range w.ryw.violations {
		t.Errorf("read-your-writes: %s", e)
	}
	w.ryw.violations = nil
	if len(w.acquired) == 0 || w.execs == 0 {
		t.Errorf("the workload got nothing done")
	}
}

type haSandbox struct {
	SandboxID string `json:"sandbox_id"`
	UserID    string `json:"user_id"`
	SessionID string `json:"session_id"`
	Status    string `json:"status"`
}

type haSession struct {
	SessionID string `json:"session_id"`
	UserID    string `json:"user_id"`
	SandboxID string `json:"sandbox_id"`
	Status    string `json:"status"`
}

// snapshot is one node's view of the state through the admin API.
type haSnapshot struct {
	sandboxes map[string]haSandbox
	sessions  map[string]haSession
	index     uint64
	leader    string
}

func (s haSnapshot) String() string {
	var parts []string
	for _, sb := range s.sandboxes {
		parts = append(parts, sb.SandboxID+":"+sb.UserID+":"+sb.Status)
	}
	for _, se := range s.sessions {
		parts = append(parts, se.SessionID+":"+se.UserID+":"+se.SandboxID+":"+se.Status)
	}
	sort.Strings(parts)
	return fmt.Sprintf("leader %s: %s", s.leader, strings.Join(parts, " "))
}

func (c *haCluster) snapshot(admin *haClient, n *haNode) (haSnapshot, error) {
	s := haSnapshot{sandboxes: map[string]haSandbox{}, sessions: map[string]haSession{}}
	ci, err := n.info()
	if err != nil {
		return s, err
	}
	s.index, s.leader = ci.AppliedIndex, ci.LeaderID
	var sbs struct{ Sandboxes []haSandbox }
	var ses struct{ Sessions []haSession }
	for path, out := range map[string]any{"/api/v1/sandboxes": &sbs, "/api/v1/sessions": &ses} {
		status, raw, err := admin.send(n, "GET", path, "", nil)
		if err != nil || status != 200 {
			return s, fmt.Errorf("GET %s on %s: %d %v", path, n.id, status, err)
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return s, err
		}
	}
	for _, sb := range sbs.Sandboxes {
		s.sandboxes[sb.SandboxID] = sb
	}
	for _, se := range ses.Sessions {
		s.sessions[se.SessionID] = se
	}
	return s, nil
}

// verify checks, after a fault: every node reports the same state; every
// acknowledged acquire and session exists with its owner; no sandbox has two
// owners; and the containers Docker runs are exactly the live sandboxes.
func (c *haCluster) verify(w *haWorkload) {
	t := c.t
	t.Helper()
	admin := c.client(c.name+"-admin", "admin")
	var snap haSnapshot
	var why string
	deadline := time.Now().Add(90 * time.Second)
	for {
		why = ""
		var snaps []haSnapshot
		for _, n := range c.nodes {
			s, err := c.snapshot(admin, n)
			if err != nil {
				why = err.Error()
				break
			}
			snaps = append(snaps, s)
		}
		if why == "" {
			snap = snaps[0]
			for i, s := range snaps[1:] {
				if s.leader == "" || s.index != snap.index || s.String() != snap.String() {
					why = fmt.Sprintf("%s and %s differ:\n%s\n%s", c.nodes[0].id, c.nodes[i+1].id, snap, s)
				}
			}
		}
		if why == "" {
			why = c.containersMatch(snap)
		}
		if why == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster did not converge in 90 s: %s", why)
		}
		time.Sleep(250 * time.Millisecond)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	owner := map[string]string{} // sandbox -> the one owner acknowledged
	suspect := func(ids ...string) { c.suspects = append(c.suspects, ids...) }
	claim := func(sandbox, user, what string) {
		if prev, ok := owner[sandbox]; ok {
			t.Errorf("sandbox %s handed out twice (%s, and %s to %s)", sandbox, prev, what, user)
			suspect(sandbox)
		}
		owner[sandbox] = what + " of " + user
	}
	for key, a := range w.acquired {
		claim(a.sandbox, a.user, "acquire "+key)
		sb, ok := snap.sandboxes[a.sandbox]
		switch {
		case w.released[a.sandbox]:
			if ok && sb.Status != "terminating" {
				t.Errorf("released sandbox %s is %s, want gone", a.sandbox, sb.Status)
				suspect(a.sandbox)
			}
		case !ok:
			t.Errorf("acknowledged acquire %s: sandbox %s lost", key, a.sandbox)
			suspect(a.sandbox)
		case sb.UserID != a.user || sb.Status != "active":
			t.Errorf("acknowledged acquire %s: sandbox %+v, want active and owned by %s", key, sb, a.user)
			suspect(a.sandbox)
		}
	}
	for key, a := range w.sessions {
		claim(a.sandbox, a.user, "session "+key)
		se, ok := snap.sessions[a.id]
		if w.deleted[a.id] {
			if ok && se.Status != "deleted" {
				t.Errorf("deleted session %s is %s, want deleted or gone", a.id, se.Status)
				suspect(a.id, a.sandbox)
			}
			continue
		}
		if !ok || se.UserID != a.user || se.Status != "active" || se.SandboxID != a.sandbox {
			t.Errorf("acknowledged session %s: %+v (found %t), want active, owned by %s, sandbox %s", key, se, ok, a.user, a.sandbox)
			suspect(a.id, a.sandbox)
			continue
		}
		if sb := snap.sandboxes[a.sandbox]; sb.UserID != a.user || sb.Status != "active" {
			t.Errorf("session %s's sandbox %+v: want active and owned by %s", a.id, sb, a.user)
			suspect(a.id, a.sandbox)
		}
	}
	t.Logf("converged at index %d: %d sandboxes, %d sessions on every node, containers match", snap.index, len(snap.sandboxes), len(snap.sessions))
}

// containersMatch says why Docker's containers for the cluster differ from
// the live sandboxes in s, or "" when they match and nothing is in flight.
func (c *haCluster) containersMatch(s haSnapshot) string {
	want := map[string]bool{}
	for id, sb := range s.sandboxes {
		switch sb.Status {
		case "idle", "active", "paused":
			want[id] = true
		case "pending", "terminating":
			return "sandbox " + id + " still " + sb.Status
		}
	}
	got := containers(c.t, c.name)
	seen := map[string]bool{}
	for _, id := range got {
		if !want[id] {
			return "orphan container for sandbox " + id
		}
		seen[id] = true
	}
	for id := range want {
		if !seen[id] {
			return "ghost sandbox " + id + ": in the state, no container"
		}
	}
	return ""
}
