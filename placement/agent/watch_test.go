package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// watchEvents starts a watch and returns its events as they come; it
// returns once the watch is in place.
func watchEvents(t *testing.T, c *Client, dir string, recursive bool) (<-chan WatchEvent, context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	events := make(chan WatchEvent, 256)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, dir, recursive, func(ev WatchEvent) error {
			if ev.Type == WatchReady {
				close(ready)
				return nil
			}
			events <- ev
			return nil
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("watch ended before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("watch not ready within 10s")
	}
	return events, cancel, done
}

func nextEvent(t *testing.T, events <-chan WatchEvent) WatchEvent {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return WatchEvent{}
}

func TestWatchEventsInOrder(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	ws := a.workdir
	events, cancel, done := watchEvents(t, a.client, ws, true)

	f, g, sub := filepath.Join(ws, "a.txt"), filepath.Join(ws, "b.txt"), filepath.Join(ws, "sub")
	steps := []struct {
		do   func() error
		want []WatchEvent
	}{
		{func() error { return os.WriteFile(f, nil, 0o644) }, []WatchEvent{{Type: WatchCreate, Path: f}}},
		{func() error { return os.WriteFile(f, []byte("hello"), 0o644) }, []WatchEvent{{Type: WatchWrite, Path: f}}},
		{func() error { return os.Rename(f, g) }, []WatchEvent{{Type: WatchRename, Path: g, OldPath: f}}},
		{func() error { return os.Mkdir(sub, 0o755) }, []WatchEvent{{Type: WatchCreate, Path: sub, IsDir: true}}},
		{func() error { return os.WriteFile(filepath.Join(sub, "c"), []byte("c"), 0o644) },
			[]WatchEvent{{Type: WatchCreate, Path: filepath.Join(sub, "c")}, {Type: WatchWrite, Path: filepath.Join(sub, "c")}}},
		{func() error { return os.Remove(g) }, []WatchEvent{{Type: WatchRemove, Path: g}}},
	}
	var last WatchEvent
	for i, st := range steps {
		if err := st.do(); err != nil {
			t.Fatal(err)
		}
		for _, w := range st.want {
			got := nextEvent(t, events)
			// Truncating and then writing a file may be reported as two
			// writes when they land in two reads: one write is the news.
			for got.Type == WatchWrite && got == last {
				got = nextEvent(t, events)
			}
			if got != w {
				t.Fatalf("step %d: event %+v, want %+v", i, got, w)
			}
			last = got
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("watch ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end after its client went away")
	}
}

// TestWatchStreamsBounded refuses a watch past the per-agent bound and frees
// the slot when a client goes away.
func TestWatchStreamsBounded(t *testing.T) {
	a := startAgent(t, ServerConfig{MaxWatchStreams: 2})
	_, stop1, done1 := watchEvents(t, a.client, a.workdir, false)
	watchEvents(t, a.client, a.workdir, false)
	err := a.client.Watch(ctxT(t), a.workdir, false, func(WatchEvent) error { return nil })
	wantAgentError(t, err, 429)

	stop1()
	<-done1
	// The slot is released when the agent notices the closed connection:
	// soon, but not in the same instant.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := a.client.Watch(ctx, a.workdir, false, func(ev WatchEvent) error {
			return errors.New("got in") // ends the watch at its first (ready) event
		})
		cancel()
		if err != nil && strings.Contains(err.Error(), "got in") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed 10 s after the client went away: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWatchRecursiveBounded(t *testing.T) {
	a := startAgent(t, ServerConfig{MaxWatchDirs: 3})
	for i := 0; i < 3; i++ {
		if err := os.MkdirAll(filepath.Join(a.workdir, fmt.Sprint(i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err := a.client.Watch(ctxT(t), a.workdir, true, func(WatchEvent) error { return nil })
	wantAgentError(t, err, 422)
}

// TestWatchEndsAtShutdown: an agent that shuts down ends its watch streams
// with an error event instead of waiting out its grace for them.
func TestWatchEndsAtShutdown(t *testing.T) {
	srv := NewServer(ServerConfig{Workdir: t.TempDir(), TempDir: t.TempDir()})
	a := serveAgent(t, srv)
	events, _, done := watchEvents(t, a.client, a.workdir, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	// The HTTP layer's shutdown (the test's cleanup runs the whole one).
	if err := srv.http.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a watch open: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("shutdown took %v with a watch open", took)
	}
	if ev := nextEvent(t, events); ev.Type != WatchError {
		t.Fatalf("last event %+v, want an error", ev)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("client's watch did not end after the agent shut down")
	}
}
