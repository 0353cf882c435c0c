package fsm

import (
	"bytes"
	"io"
	"testing"
)

func TestWebhookCursorMovesOnlyForward(t *testing.T) {
	h := newHarness(t)
	h.mustApply(join(idle(5, "a"), cmds(acquire("alice", "n")))...)
	h.mustApply(&WebhookSet{User: "alice", URL: "http://127.0.0.1:1/hook", Secret: "s"})
	w := h.f.Webhook("alice")
	all, _, _ := h.f.EventsAfter(0, -1, 100)
	if w.Cursor != EventKey(all[len(all)-1]) {
		t.Fatalf("a new webhook starts at %q, want after the newest event %q", w.Cursor, EventKey(all[len(all)-1]))
	}
	h.mustApply(release("a", "alice"))
	next, _ := h.f.EventsAfterKey(w.Cursor, 10)
	if len(next) != 1 || next[0].Type != EventReleased {
		t.Fatalf("events after the cursor: %+v, want the release", next)
	}
	cases := []struct {
		name      string
		cmd       *WebhookDelivered
		cursor    string
		failures  int
		delivered uint64
	}{
		{"a failure is counted, the cursor stays", &WebhookDelivered{User: "alice", Error: "HTTP 500"}, w.Cursor, 1, 0},
		{"a success moves it and clears failures", &WebhookDelivered{User: "alice", Through: EventKey(next[0]), Count: 1}, EventKey(next[0]), 0, 1},
		{"a late, older acknowledgement does not move it back", &WebhookDelivered{User: "alice", Through: w.Cursor, Count: 0}, EventKey(next[0]), 0, 1},
	}
	for _, tc := range cases {
		h.mustApply(tc.cmd)
		got := h.f.Webhook("alice")
		if got.Cursor != tc.cursor || got.Failures != tc.failures || got.Delivered != tc.delivered {
			t.Errorf("%s: cursor %q failures %d delivered %d; want %q %d %d", tc.name, got.Cursor, got.Failures, got.Delivered,
				tc.cursor, tc.failures, tc.delivered)
		}
	}
	// A copy restored from a snapshot (another node, a restart) resumes there.
	other := New()
	if err := other.Restore(io.NopCloser(bytes.NewReader(persist(t, h.f)))); err != nil {
		t.Fatal(err)
	}
	if got := other.Webhook("alice"); got == nil || got.Cursor != EventKey(next[0]) || got.Secret != "s" {
		t.Errorf("restored webhook %+v", got)
	}
	if r := h.apply(&WebhookSet{User: "alice", URL: "http://127.0.0.1:1/hook", Secret: "s2"}); r.Webhook == nil || r.Webhook.Secret != "" ||
		r.Webhook.Cursor != EventKey(next[0]) {
		t.Errorf("a new secret for the same URL: %+v (keeps its place; the response never carries the secret)", r.Webhook)
	}
	h.mustApply(&WebhookSet{User: "alice", Delete: true})
	if h.f.Webhook("alice") != nil {
		t.Error("deleted webhook still there")
	}
	if r := h.apply(&WebhookSet{User: "alice", Delete: true}); r.Err == nil || r.Err.Code != CodeNotFound {
		t.Errorf("deleting a missing webhook: %+v", r.Err)
	}
}
