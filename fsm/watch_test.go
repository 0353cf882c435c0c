package fsm

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

// fired reports whether w fires within a short grace: the watches are
// closed synchronously by Apply, so a change is seen at once.
func fired(w ObjectWatch) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	return w.Wait(ctx)
}

func TestWatchSandbox(t *testing.T) {
	h := newHarness(t)
	h.mustApply(setPool(0, 10), create("a"), create("b"))

	_, onA := h.f.WatchSandbox("a")
	h.mustApply(placed("b"))
	if fired(onA) {
		t.Error("a change to b woke a watch on a")
	}
	h.mustApply(placed("a"))
	if !fired(onA) {
		t.Error("a change to a did not wake its watch")
	}

	sb, onNew := h.f.WatchSandbox("c")
	if sb != nil {
		t.Fatalf("c exists: %+v", sb)
	}
	h.mustApply(create("c"))
	if !fired(onNew) {
		t.Error("creating c did not wake a watch on it")
	}

	_, onB := h.f.WatchSandbox("b")
	if err := h.f.Restore(io.NopCloser(bytes.NewReader(persist(t, New())))); err != nil {
		t.Fatal(err)
	}
	if !fired(onB) {
		t.Error("a restore did not wake a watch on b")
	}
}
