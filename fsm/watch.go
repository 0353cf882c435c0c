package fsm

import (
	"context"

	memdb "github.com/hashicorp/go-memdb"
)

// ObjectWatch fires when one object changes: its row is written or deleted,
// or the whole state is replaced by a snapshot restore. Waiters on one
// sandbox wake for that sandbox, not for every apply in the cluster.
type ObjectWatch struct{ ws memdb.WatchSet }

// Wait blocks until the object may have changed (true) or ctx is done
// (false). A spurious wake is possible; a missed change is not.
func (w ObjectWatch) Wait(ctx context.Context) bool {
	return w.ws.WatchCtx(ctx) == nil
}

// WatchSandbox returns the sandbox with id (nil when there is none) and a
// watch that fires when it changes, appears or goes.
func (f *FSM) WatchSandbox(id string) (*Sandbox, ObjectWatch) {
	restored := f.restored()
	ch, raw, err := f.read().FirstWatch(tableSandboxes, "id", id)
	must(err)
	w := ObjectWatch{ws: memdb.NewWatchSet()}
	w.ws.Add(ch)
	w.ws.Add(restored)
	if raw == nil {
		return nil, w
	}
	return raw.(*Sandbox).Copy(), w
}

// restored returns a channel closed at the next Restore: a restore swaps
// the database, so watches on the old one would never fire.
func (f *FSM) restored() <-chan struct{} {
	f.watchMu.Lock()
	defer f.watchMu.Unlock()
	return f.restoreCh
}

// notifyRestored wakes every object watch after a Restore.
func (f *FSM) notifyRestored() {
	f.watchMu.Lock()
	defer f.watchMu.Unlock()
	close(f.restoreCh)
	f.restoreCh = make(chan struct{})
}
