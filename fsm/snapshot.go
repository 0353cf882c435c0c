package fsm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// snapshotVersion is written at the head of every snapshot. A new version
// adds a reader branch in Restore; old versions stay readable forever.
const snapshotVersion = 1

// snapshotDoc is the whole state as one JSON document. Field names are part
// of the on-disk format: only add fields.
type snapshotDoc struct {
	Version      int              `json:"version"`
	AppliedIndex uint64           `json:"applied_index"`
	Pool         PoolConfig       `json:"pool"`
	Sandboxes    []*Sandbox       `json:"sandboxes"`
	Sessions     []*Session       `json:"sessions"`
	Requests     []*requestRecord `json:"requests"`
	Tokens       []*tokenRecord   `json:"tokens"`
	// Added after v1's fixture; absent in older snapshots (read as 0).
	SandboxesCreated uint64 `json:"sandboxes_created,omitempty"`
	SessionsCreated  uint64 `json:"sessions_created,omitempty"`
	// Added with quotas; absent in older snapshots (no creates recorded).
	QuotaCreates []*createLog `json:"quota_creates,omitempty"`
	// Added with egress grants; absent in older snapshots (none granted).
	EgressGrants []*EgressGrant `json:"egress_grants,omitempty"`
	// Events is the event log, oldest first, and the key of the newest
	// event dropped from it (events.go).
	Events               []*eventRow `json:"events,omitempty"`
	Webhooks             []*Webhook  `json:"webhooks,omitempty"`
	EventsDroppedThrough string      `json:"events_dropped_through,omitempty"`
}

// Snapshot captures the state in O(1) (a memdb snapshot); the work of
// encoding happens in Persist, off the Apply path.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{txn: f.db.Load().Snapshot().Txn(false)}, nil
}

type fsmSnapshot struct{ txn *memdb.Txn }

// Persist writes the snapshot as JSON, one row per line inside the arrays so
// it streams without building the whole document in memory.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist fsm snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("persist fsm snapshot: close sink: %w", err)
	}
	return nil
}

// Release has nothing to free: the memdb snapshot is garbage collected.
func (s *fsmSnapshot) Release() {}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	meta := readMeta(s.txn)
	pool, err := json.Marshal(readPool(s.txn))
	if err != nil {
		return fmt.Errorf("encode pool: %w", err)
	}
	fmt.Fprintf(bw, "{\"version\":%d,\n\"applied_index\":%d,\n\"sandboxes_created\":%d,\n\"sessions_created\":%d,\n\"events_dropped_through\":%q,\n\"pool\":%s",
		snapshotVersion, meta.AppliedIndex, meta.SandboxesCreated, meta.SessionsCreated, meta.EventsDroppedThrough, pool)
	for _, table := range []struct{ name, key string }{
		{tableSandboxes, "sandboxes"},
		{tableSessions, "sessions"},
		{tableRequests, "requests"},
		{tableTokens, "tokens"},
		{tableQuotaCreates, "quota_creates"},
		{tableEgressGrants, "egress_grants"},
		{tableEvents, "events"},
		{tableWebhooks, "webhooks"},
	} {
		if err := writeTable(bw, s.txn, table.name, table.key); err != nil {
			return err
		}
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

func writeTable(w *bufio.Writer, txn *memdb.Txn, table, key string) error {
	it, err := txn.Get(table, "id")
	if err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	fmt.Fprintf(w, ",\n%q:[", key)
	sep := "\n"
	for raw := it.Next(); raw != nil; raw = it.Next() {
		b, err := json.Marshal(raw)
		if err != nil {
			return fmt.Errorf("encode %s row: %w", table, err)
		}
		w.WriteString(sep)
		w.Write(b)
		sep = ",\n"
	}
	_, err = w.WriteString("]")
	return err
}

// Restore replaces the whole state with a snapshot written by Persist.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var doc snapshotDoc
	if err := json.NewDecoder(rc).Decode(&doc); err != nil {
		return fmt.Errorf("restore fsm snapshot: decode: %w", err)
	}
	if doc.Version != snapshotVersion {
		return fmt.Errorf("restore fsm snapshot: unsupported version %d (this build reads %d)", doc.Version, snapshotVersion)
	}
	db, err := buildDB(&doc)
	if err != nil {
		return fmt.Errorf("restore fsm snapshot: %w", err)
	}
	f.db.Store(db)
	f.changes.reset(readMeta(db.Txn(false)).AppliedIndex)
	f.notifyRestored()
	f.notify()
	return nil
}

// buildDB loads a decoded snapshot into a fresh database, recomputing the
// counters from the rows rather than trusting stored ones.
func buildDB(doc *snapshotDoc) (*memdb.MemDB, error) {
	db := newDB()
	txn := db.Txn(true)
	defer txn.Abort()
	meta := metaRow{Key: singletonKey, AppliedIndex: doc.AppliedIndex,
		SandboxesCreated: doc.SandboxesCreated, SessionsCreated: doc.SessionsCreated}
	if err := txn.Insert(tablePool, &poolRow{Key: singletonKey, Config: doc.Pool}); err != nil {
		return nil, fmt.Errorf("insert pool: %w", err)
	}
	for _, s := range doc.Sandboxes {
		if err := txn.Insert(tableSandboxes, s); err != nil {
			return nil, fmt.Errorf("insert sandbox %s: %w", s.ID, err)
		}
		meta.Counts.add(s.State, 1)
	}
	for _, s := range doc.Sessions {
		if err := txn.Insert(tableSessions, s); err != nil {
			return nil, fmt.Errorf("insert session %s: %w", s.ID, err)
		}
	}
	for _, r := range doc.Requests {
		if err := txn.Insert(tableRequests, r); err != nil {
			return nil, fmt.Errorf("insert request %s: %w", r.ID, err)
		}
		meta.Requests++
	}
	for _, tok := range doc.Tokens {
		if err := txn.Insert(tableTokens, tok); err != nil {
			return nil, fmt.Errorf("insert token %s: %w", tok.ID, err)
		}
	}
	for _, l := range doc.QuotaCreates {
		if err := txn.Insert(tableQuotaCreates, l); err != nil {
			return nil, fmt.Errorf("insert quota creates of %s: %w", l.User, err)
		}
	}
	for _, g := range doc.EgressGrants {
		if err := txn.Insert(tableEgressGrants, g); err != nil {
			return nil, fmt.Errorf("insert egress grant %s: %w", g.Subject, err)
		}
	}
	for _, w := range doc.Webhooks {
		if err := txn.Insert(tableWebhooks, w); err != nil {
			return nil, fmt.Errorf("insert webhook of %s: %w", w.User, err)
		}
	}
	meta.EventsDroppedThrough = doc.EventsDroppedThrough
	for _, e := range doc.Events {
		if err := txn.Insert(tableEvents, e); err != nil {
			return nil, fmt.Errorf("insert event %s: %w", e.Key, err)
		}
		meta.Events++
	}
	if err := txn.Insert(tableMeta, &meta); err != nil {
		return nil, fmt.Errorf("insert meta: %w", err)
	}
	txn.Commit()
	return db, nil
}
