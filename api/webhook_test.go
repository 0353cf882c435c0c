package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/api/webhook"
	"github.com/cloud-sandbox/cloud-sandbox/cluster"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// receiver is a webhook endpoint on loopback that checks every signature,
// records what it got, and answers 500 to the first failFirst posts.
type receiver struct {
	t         *testing.T
	secret    string
	failFirst int

	mu       sync.Mutex
	posts    int
	attempts []int
	got      []fsm.Event
	badSigs  int
	srv      *httptest.Server
}

func newReceiver(t *testing.T, failFirst int) *receiver {
	rc := &receiver{t: t, failFirst: failFirst}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.posts++
	if err := webhook.Verify(rc.secret, r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		rc.badSigs++
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	attempt, _ := strconv.Atoi(r.Header.Get(webhook.HeaderAttempt))
	rc.attempts = append(rc.attempts, attempt)
	if rc.posts <= rc.failFirst {
		http.Error(w, "not now", http.StatusInternalServerError)
		return
	}
	var e fsm.Event
	if err := json.Unmarshal(body, &e); err != nil || r.Header.Get(webhook.HeaderEventID) != e.ID {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	rc.got = append(rc.got, e)
}

func (rc *receiver) events() []fsm.Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]fsm.Event(nil), rc.got...)
}

// waitFor polls until the receiver holds n events.
func (rc *receiver) waitFor(n int) []fsm.Event {
	rc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := rc.events()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			rc.t.Fatalf("receiver has %d events, want %d: %+v", len(got), n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startDeliverer runs a webhook deliverer on node, as sandboxd does.
func startDeliverer(t *testing.T, node *cluster.Node, f *fsm.FSM) {
	d := webhook.New(webhook.Config{AllowPrivate: true, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, f, node)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Lead(ctx, node.IsLeader(), node.LeaderCh()) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestWebhookDeliversSignedEventsWithRetries(t *testing.T) {
	e := newEnv(t)
	startDeliverer(t, e.node, e.fsm)
	alice, bob := e.token("alice", RoleUser), e.token("bob", RoleUser)
	rc := newReceiver(t, 2)

	for _, bad := range []struct {
		name string
		body map[string]any
	}{
		{"no url", map[string]any{}},
		{"ftp", map[string]any{"url": "ftp://127.0.0.1/x"}},
		{"credentials in the url", map[string]any{"url": "http://u:p@127.0.0.1/x"}},
		{"short secret", map[string]any{"url": rc.srv.URL, "secret": "short"}},
	} {
		expect(t, e.call("PUT", "/api/v1/webhook", alice, bad.body), http.StatusUnprocessableEntity, "unprocessable")
	}
	expect(t, e.call("GET", "/api/v1/webhook", alice, nil), http.StatusNotFound, "not_found")
	put := e.call("PUT", "/api/v1/webhook", alice, map[string]any{"url": rc.srv.URL})
	expect(t, put, http.StatusOK, "")
	rc.secret = put.str("secret")
	if len(rc.secret) != 64 {
		t.Fatalf("generated secret %q, want 64 hex characters", rc.secret)
	}

	a := e.acquire(alice)
	e.acquire(bob) // not alice's: never sent to her hook
	expect(t, e.call("POST", "/api/v1/sandbox/release", alice, map[string]any{"sandbox_id": a}), http.StatusOK, "")
	got := rc.waitFor(4) // created, placed, released, removed
	var types []string
	for _, ev := range got {
		if ev.SandboxID != a {
			t.Errorf("alice's hook got an event of %s", ev.SandboxID)
		}
		types = append(types, string(ev.Type))
	}
	if want := "created placed released removed"; strings.Join(types, " ") != want {
		t.Errorf("delivered %v, want %s", types, want)
	}
	rc.mu.Lock()
	attempts, bad := rc.attempts, rc.badSigs
	rc.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d deliveries with a bad signature", bad)
	}
	if len(attempts) < 3 || attempts[0] != 1 || attempts[1] != 2 || attempts[2] != 3 {
		t.Errorf("attempt headers %v: the first event should be tried 3 times (two 500s)", attempts)
	}
	// The receiver can hold the 4th event a moment before the leader has
	// recorded it.
	var g result
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		g = e.call("GET", "/api/v1/webhook", alice, nil)
		expect(t, g, http.StatusOK, "")
		if g.body["delivered"] == 4.0 || time.Now().After(deadline) {
			break
		}
	}
	if g.str("secret") != "" || g.body["delivered"] != 4.0 || g.body["failures"] != 0.0 {
		t.Errorf("webhook status %s: want 4 delivered, no failures pending, no secret", g.raw)
	}
	expect(t, e.call("DELETE", "/api/v1/webhook", alice, nil), http.StatusNoContent, "")
	expect(t, e.call("GET", "/api/v1/webhook", alice, nil), http.StatusNotFound, "not_found")
}

// TestWebhookSurvivesALeaderChange: deliverers run on all three nodes (only
// the leader's works); the leader stops mid-stream; the receiver still gets
// every event, in order, and at most the one in flight twice.
func TestWebhookSurvivesALeaderChange(t *testing.T) {
	e := newEnv(t, func(c *Config, p *fsmPool) { p.MaxSize = 100 })
	e.onNode = func(n *cluster.Node, f *fsm.FSM) { startDeliverer(t, n, f) }
	startDeliverer(t, e.node, e.fsm)
	urls := e.joinNodes(2)
	other := nodeEnv(e, urls[1])
	tok := e.token("alice", RoleUser)
	rc := newReceiver(t, 0)
	put := e.call("PUT", "/api/v1/webhook", tok, map[string]any{"url": rc.srv.URL, "secret": "a-secret-of-enough-length"})
	expect(t, put, http.StatusOK, "")
	rc.secret = "a-secret-of-enough-length"

	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, e.acquire(tok))
	}
	rc.waitFor(6) // created+placed ×3
	if err := e.node.Close(); err != nil {
		t.Fatalf("stop the leader: %v", err)
	}
	for _, id := range ids {
		deadline := time.Now().Add(20 * time.Second)
		for {
			r := other.call("POST", "/api/v1/sandbox/release", tok, map[string]any{"sandbox_id": id})
			if r.status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("release after the leader change: %d %s", r.status, r.raw)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	got := rc.waitFor(9)
	time.Sleep(300 * time.Millisecond) // a flood would show now
	got = rc.events()
	seen := map[string]int{}
	var order []string
	for _, ev := range got {
		if seen[ev.ID] == 0 {
			order = append(order, ev.ID)
		}
		seen[ev.ID]++
	}
	if len(order) != 9 {
		t.Fatalf("distinct events delivered %d, want 9 (6 before, 3 releases after): %v", len(order), order)
	}
	dups := len(got) - len(order)
	if dups > 1 {
		t.Errorf("%d redeliveries after the leader change, want at most the one in flight", dups)
	}
	for i := 1; i < len(order); i++ {
		pi, ps, _ := fsm.ParseEventID(order[i-1])
		ci, cs, _ := fsm.ParseEventID(order[i])
		if ci < pi || (ci == pi && cs <= ps) {
			t.Errorf("event %s delivered after %s", order[i], order[i-1])
		}
	}
}
