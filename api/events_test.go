package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// sseEvent is one Server-Sent Event as a client reads it.
type sseEvent struct {
	id, name string
	data     fsm.Event
}

// sseStream is an open GET /api/v1/events.
type sseStream struct {
	t      testing.TB
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseEvent
}

// openEvents opens the event stream on base with the query and headers
// given; events arrive on s.events until Close.
func openEvents(t testing.TB, base, tok, query string, headers ...string) (*sseStream, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/events"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open events: %v", err)
	}
	s := &sseStream{t: t, resp: resp, cancel: cancel, events: make(chan sseEvent, 1000)}
	t.Cleanup(s.Close)
	if resp.StatusCode != http.StatusOK {
		return s, resp.StatusCode
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q, want text/event-stream", ct)
	}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.id != "" || ev.name != "" {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data)
			}
		}
	}()
	return s, resp.StatusCode
}

func (s *sseStream) Close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

// next returns the next event, failing after a timeout.
func (s *sseStream) next(what string) sseEvent {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatalf("stream ended waiting for %s", what)
		}
		return ev
	case <-time.After(10 * time.Second):
		s.t.Fatalf("no event within 10 s waiting for %s", what)
	}
	return sseEvent{}
}

// rest collects every event until the stream ends (follow=false).
func (s *sseStream) rest() []sseEvent {
	s.t.Helper()
	var out []sseEvent
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				return out
			}
			out = append(out, ev)
		case <-time.After(10 * time.Second):
			s.t.Fatal("stream did not end")
		}
	}
}

func names(evs []sseEvent) string {
	var parts []string
	for _, e := range evs {
		parts = append(parts, e.name+":"+e.data.SandboxID)
	}
	return strings.Join(parts, " ")
}

func TestEventsStreamEachUsersOwnSandboxes(t *testing.T) {
	e := newEnv(t)
	alice, bob, root := e.token("alice", RoleUser), e.token("bob", RoleUser), e.token("root", RoleAdmin)
	a := e.acquire(alice)
	b := e.acquire(bob)
	expect(t, e.call("POST", "/api/v1/sandbox/release", alice, map[string]any{"sandbox_id": a}), http.StatusOK, "")
	waitGone(t, e, a)

	cases := []struct {
		name, tok string
		want      string
	}{
		{"alice", alice, "created:" + a + " placed:" + a + " released:" + a + " removed:" + a},
		{"bob", bob, "created:" + b + " placed:" + b},
		{"admin sees all", root, "created:" + a + " placed:" + a + " created:" + b + " placed:" + b + " released:" + a + " removed:" + a},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, status := openEvents(t, e.http.URL, tc.tok, "?after=0&follow=false")
			if status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			if got := names(s.rest()); got != tc.want {
				t.Errorf("events\n got %s\nwant %s", got, tc.want)
			}
		})
	}
	t.Run("filter by sandbox and type", func(t *testing.T) {
		s, _ := openEvents(t, e.http.URL, root, "?after=0&follow=false&sandbox_id="+a+"&type=released,removed")
		if got, want := names(s.rest()), "released:"+a+" removed:"+a; got != want {
			t.Errorf("events %s, want %s", got, want)
		}
	})
	t.Run("bad Last-Event-ID", func(t *testing.T) {
		_, status := openEvents(t, e.http.URL, alice, "", "Last-Event-ID", "yesterday")
		if status != http.StatusBadRequest {
			t.Errorf("status %d, want 400", status)
		}
	})
}

func waitGone(t *testing.T, e *env, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := e.fsm.Sandbox(id); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s not removed", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventsResumeOnAnotherNodeAcrossALeaderChange: a client follows the
// stream on one node, drops it, and reconnects with Last-Event-ID on
// another node after the leader was stopped and more happened: it gets
// every event once, in order.
func TestEventsResumeOnAnotherNodeAcrossALeaderChange(t *testing.T) {
	e := newEnv(t, func(c *Config, p *fsmPool) { p.MaxSize = 100 })
	urls := e.joinNodes(2)
	tok := e.token("alice", RoleUser)
	b, c := nodeEnv(e, urls[1]), nodeEnv(e, urls[2])

	s, _ := openEvents(t, urls[1], tok, "") // from now, on n2
	first := b.acquire(tok)
	var seen []sseEvent
	seen = append(seen, s.next("created"), s.next("placed"))
	s.Close()
	if got, want := names(seen), "created:"+first+" placed:"+first; got != want {
		t.Fatalf("live events %s, want %s", got, want)
	}

	// While the client is away: one more acquire, then the leader goes.
	second := b.acquire(tok)
	if err := e.node.Close(); err != nil {
		t.Fatalf("stop the leader: %v", err)
	}
	// A write through the new leader: the release is one more event (no
	// reconciler runs there to remove the sandbox).
	deadline := time.Now().Add(20 * time.Second)
	var index string
	for {
		r := c.call("POST", "/api/v1/sandbox/release", tok, map[string]any{"sandbox_id": second})
		if r.status == http.StatusOK {
			index = r.header.Get(headerIndex)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write accepted after the leader change: %d %s", r.status, r.raw)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// With the release's index, as the SDK sends it: the node has applied
	// the release before it answers.
	s2, status := openEvents(t, urls[2], tok, "?follow=false", "Last-Event-ID", seen[len(seen)-1].id, headerIndex, index)
	if status != http.StatusOK {
		t.Fatalf("reconnect status %d", status)
	}
	got := s2.rest()
	want := "created:" + second + " placed:" + second + " released:" + second
	if names(got) != want {
		t.Fatalf("after reconnecting: %s, want %s", names(got), want)
	}
	for i := 1; i < len(got); i++ {
		pi, ps, _ := fsm.ParseEventID(got[i-1].id)
		ci, cs, _ := fsm.ParseEventID(got[i].id)
		if ci < pi || (ci == pi && cs <= ps) {
			t.Errorf("event %s after %s: out of order", got[i].id, got[i-1].id)
		}
	}
}
