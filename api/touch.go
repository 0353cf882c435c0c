package api

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// toucher records sandbox activity for idle timeouts off the request path:
// handlers mark a sandbox used, and a background loop commits at most one
// SandboxTouch per sandbox per interval, batched into one Raft command.
type toucher struct {
	cluster  Cluster
	interval time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	pending map[string]bool
	sent    map[string]time.Time // last commit per sandbox, pruned after interval

	stop chan struct{}
	done chan struct{}
}

func newToucher(c Cluster, interval time.Duration, log *slog.Logger) *toucher {
	t := &toucher{
		cluster:  c,
		interval: interval,
		log:      log,
		pending:  map[string]bool{},
		sent:     map[string]time.Time{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go t.loop()
	return t
}

// mark notes that id was used now. It never blocks on Raft.
func (t *toucher) mark(id string) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if last, ok := t.sent[id]; ok && now.Sub(last) < t.interval {
		return
	}
	t.pending[id] = true
}

func (t *toucher) loop() {
	defer close(t.done)
	// Flush a few times per interval so a first use is recorded promptly.
	tick := time.NewTicker(max(t.interval/4, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			t.flush()
		case <-t.stop:
			t.flush()
			return
		}
	}
}

func (t *toucher) flush() {
	now := time.Now()
	t.mu.Lock()
	ids := make([]string, 0, len(t.pending))
	for id := range t.pending {
		ids = append(ids, id)
		t.sent[id] = now
	}
	clear(t.pending)
	for id, last := range t.sent {
		if now.Sub(last) >= t.interval {
			delete(t.sent, id)
		}
	}
	t.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	sort.Strings(ids)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := &fsm.SandboxTouch{Header: fsm.Header{Now: now.UTC()}, IDs: ids}
	if _, err := t.cluster.Apply(ctx, cmd); err != nil {
		// Losing one activity record only makes an idle timeout fire a
		// little early at worst; the next use records again.
		t.log.Warn("record sandbox activity", "sandboxes", len(ids), "err", err)
	}
}

func (t *toucher) close() {
	close(t.stop)
	<-t.done
}
