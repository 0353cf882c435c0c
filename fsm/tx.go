package fsm

import (
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// Retention of applied request IDs for deduplication.
const (
	requestRetention    = 15 * time.Minute
	maxRequestsRetained = 50000
)

// tx is one Apply's write transaction behind typed accessors. Objects it
// returns are the stored ones: copy before changing (put* stores a new value).
type tx struct {
	txn   *memdb.Txn
	index uint64
	now   time.Time
	meta  metaRow
}

func newTx(db *memdb.MemDB, index uint64, now time.Time) *tx {
	txn := db.Txn(true)
	txn.TrackChanges()
	return &tx{txn: txn, index: index, now: now, meta: readMeta(txn)}
}

func (t *tx) abort() { t.txn.Abort() }

// commit advances the applied index and makes the writes visible to
// readers; it returns what the transaction changed, for the change feed.
func (t *tx) commit() memdb.Changes {
	t.recordEvents(t.txn.Changes())
	t.meta.Key = singletonKey
	t.meta.AppliedIndex = t.index
	m := t.meta
	must(t.txn.Insert(tableMeta, &m))
	t.txn.Commit()
	return t.txn.Changes()
}

// must panics on a memdb error: with a fixed schema and typed rows, one can
// only come from a bug, and continuing could make nodes diverge.
func must(err error) {
	if err != nil {
		panic(fmt.Sprintf("fsm: state store: %v", err))
	}
}

func readMeta(txn *memdb.Txn) metaRow {
	raw, err := txn.First(tableMeta, "id", singletonKey)
	must(err)
	if raw == nil {
		return metaRow{Key: singletonKey}
	}
	return *raw.(*metaRow)
}

func readPool(txn *memdb.Txn) PoolConfig {
	raw, err := txn.First(tablePool, "id", singletonKey)
	must(err)
	if raw == nil {
		return PoolConfig{}
	}
	return raw.(*poolRow).Config
}

func (t *tx) pool() PoolConfig { return readPool(t.txn) }

func (t *tx) setPool(p PoolConfig) {
	must(t.txn.Insert(tablePool, &poolRow{Key: singletonKey, Config: p}))
}

// live counts sandboxes that are placed or being placed.
func (t *tx) live() int {
	c := t.meta.Counts
	return c.Pending + c.Idle + c.Active + c.Paused
}

// poolFull reports whether no further live sandbox fits under MaxSize
// (MaxSize 0: pool not configured yet, no limit).
func (t *tx) poolFull() bool {
	maxSize := t.pool().MaxSize
	return maxSize > 0 && t.live() >= maxSize
}

func (t *tx) sandbox(id string) *Sandbox {
	raw, err := t.txn.First(tableSandboxes, "id", id)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*Sandbox)
}

// putSandbox stores s (a new value, never one read from state) stamped with
// this entry's index, keeping the per-state counts in step.
func (t *tx) putSandbox(s *Sandbox) {
	if old := t.sandbox(s.ID); old != nil {
		t.meta.Counts.add(old.State, -1)
	} else {
		s.CreateIndex = t.index
		t.meta.SandboxesCreated++
	}
	s.ModifyIndex = t.index
	must(t.txn.Insert(tableSandboxes, s))
	t.meta.Counts.add(s.State, 1)
}

func (t *tx) deleteSandbox(s *Sandbox) {
	must(t.txn.Delete(tableSandboxes, s))
	t.meta.Counts.add(s.State, -1)
}

// pickIdle returns an idle unowned sandbox of image and network setting
// that fits want (a nil want takes any).
func (t *tx) pickIdle(image string, network bool, want *Resources) *Sandbox {
	it, err := t.txn.Get(tableSandboxes, "pick", StateIdle, image, network)
	must(err)
	fixed := t.pool().FixedLimits
	for raw := it.Next(); raw != nil; raw = it.Next() {
		s := raw.(*Sandbox)
		if fits(s.Resources, want, fixed) {
			return s
		}
	}
	return nil
}

// fits reports whether an idle sandbox of have can be handed to a request
// for want. Its disk is a tmpfs sized at create that no driver can resize,
// so the disk must match (0 asks for the pool's); where the driver cannot
// change CPU and memory in place either (fixed), everything must.
func fits(have Resources, want *Resources, fixed bool) bool {
	switch {
	case want == nil:
		return true
	case fixed:
		return have == *want
	default:
		return want.DiskMB == 0 || want.DiskMB == have.DiskMB
	}
}

func (t *tx) session(id string) *Session {
	raw, err := t.txn.First(tableSessions, "id", id)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*Session)
}

// putSession stores s (a new value) stamped with this entry's index.
func (t *tx) putSession(s *Session) {
	if t.session(s.ID) == nil {
		s.CreateIndex = t.index
		t.meta.SessionsCreated++
	}
	s.ModifyIndex = t.index
	must(t.txn.Insert(tableSessions, s))
}

func (t *tx) sessionsInState(st SessionState) []*Session {
	it, err := t.txn.Get(tableSessions, "state", string(st))
	must(err)
	var out []*Session
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Session))
	}
	return out
}

func (t *tx) deleteSession(s *Session) { must(t.txn.Delete(tableSessions, s)) }

func (t *tx) request(id string) *requestRecord {
	raw, err := t.txn.First(tableRequests, "id", id)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*requestRecord)
}

func (t *tx) putRequest(id string, resp *Response) {
	must(t.txn.Insert(tableRequests, &requestRecord{ID: id, Now: t.now, Index: t.index, Response: resp}))
	t.meta.Requests++
}

func (t *tx) putToken(id string, expires time.Time) {
	must(t.txn.Insert(tableTokens, &tokenRecord{ID: id, ExpiresAt: expires}))
}

// prune drops request IDs older than requestRetention or beyond
// maxRequestsRetained (oldest first), and revoked tokens that have expired,
// all measured against the command's Now so every node drops the same rows.
func (t *tx) prune() {
	if t.now.IsZero() {
		return
	}
	cutoff := t.now.Add(-requestRetention)
	requestTime := func(raw any) time.Time { return raw.(*requestRecord).Now }
	for _, raw := range t.rowsBefore(tableRequests, "now", cutoff, requestTime) {
		must(t.txn.Delete(tableRequests, raw))
		t.meta.Requests--
	}
	for t.meta.Requests > maxRequestsRetained {
		raw, err := t.txn.First(tableRequests, "index")
		must(err)
		if raw == nil {
			break
		}
		must(t.txn.Delete(tableRequests, raw))
		t.meta.Requests--
	}
	tokenTime := func(raw any) time.Time { return raw.(*tokenRecord).ExpiresAt }
	for _, raw := range t.rowsBefore(tableTokens, "expires", t.now, tokenTime) {
		must(t.txn.Delete(tableTokens, raw))
	}
}

// rowsBefore returns the rows of a time-indexed table whose time is before
// cutoff, oldest first. They are collected before deleting because a memdb
// iterator must not see its own table change underneath it.
func (t *tx) rowsBefore(table, index string, cutoff time.Time, timeOf func(any) time.Time) []any {
	it, err := t.txn.Get(table, index)
	must(err)
	var out []any
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !timeOf(raw).Before(cutoff) {
			break
		}
		out = append(out, raw)
	}
	return out
}

// add adjusts the count of state st by d.
func (c *PoolStats) add(st SandboxState, d int) {
	switch st {
	case StatePending:
		c.Pending += d
	case StateIdle:
		c.Idle += d
	case StateActive:
		c.Active += d
	case StatePaused:
		c.Paused += d
	case StateResuming:
		c.Resuming += d
	case StateTerminating:
		c.Terminating += d
	case StateFailed:
		c.Failed += d
	}
	c.Total += d
}
