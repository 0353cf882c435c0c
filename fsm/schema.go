package fsm

import (
	"encoding/binary"
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// Table names. The schema is private: every read and write goes through the
// typed accessors in tx.go and query.go.
const (
	tableSandboxes = "sandboxes"
	tableSessions  = "sessions"
	tableRequests  = "requests"
	tableTokens    = "tokens"
	tablePool      = "pool"
	tableMeta      = "meta"
	// tableQuotaCreates holds one createLog per user (quota.go).
	tableQuotaCreates = "quota_creates"
	// tableEgressGrants holds one EgressGrant per subject (egress.go).
	tableEgressGrants = "egress_grants"
	// tableEvents holds the newest lifecycle events (events.go).
	tableEvents = "events"
	// tableWebhooks holds one Webhook per user (webhook.go).
	tableWebhooks = "webhooks"
)

// singletonKey is the primary key of the one row in the pool and meta tables.
const singletonKey = "singleton"

// requestRecord is a deduplicated command's first response.
type requestRecord struct {
	ID       string    `json:"id"`
	Now      time.Time `json:"now"`
	Index    uint64    `json:"index"`
	Response *Response `json:"response"`
}

// tokenRecord is a revoked refresh token, kept until it would have expired.
type tokenRecord struct {
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// poolRow holds the pool configuration.
type poolRow struct {
	Key    string
	Config PoolConfig
}

// metaRow holds counters kept in step with the tables, so that PoolStats and
// the MaxSize check are O(1) instead of a scan.
type metaRow struct {
	Key          string
	AppliedIndex uint64
	Counts       PoolStats // MinSize and MaxSize unused here
	Requests     int
	// Events counts the rows of the event log; EventsDroppedThrough is the
	// key of the newest event dropped from it ("" while none was).
	Events               int
	EventsDroppedThrough string
	// Created counts every sandbox and session ever created: monotonic, so
	// they can be exported as Prometheus counters.
	SandboxesCreated uint64
	SessionsCreated  uint64
}

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableSandboxes: {
			Name: tableSandboxes,
			Indexes: map[string]*memdb.IndexSchema{
				"id":      {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
				"owner":   {Name: "owner", AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "Owner"}},
				"state":   {Name: "state", Indexer: &memdb.StringFieldIndex{Field: "State"}},
				"session": {Name: "session", AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "SessionID"}},
				// pick finds the oldest idle sandbox of an image and network setting.
				"pick": {Name: "pick", Indexer: pickIndexer{}},
			},
		},
		tableSessions: {
			Name: tableSessions,
			Indexes: map[string]*memdb.IndexSchema{
				"id":    {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
				"owner": {Name: "owner", Indexer: &memdb.StringFieldIndex{Field: "Owner"}},
				"state": {Name: "state", Indexer: &memdb.StringFieldIndex{Field: "State"}},
			},
		},
		tableRequests: {
			Name: tableRequests,
			Indexes: map[string]*memdb.IndexSchema{
				"id":    {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
				"now":   {Name: "now", Indexer: timeIndexer{field: func(o any) time.Time { return o.(*requestRecord).Now }}},
				"index": {Name: "index", Indexer: uintIndexer{field: func(o any) uint64 { return o.(*requestRecord).Index }}},
			},
		},
		tableTokens: {
			Name: tableTokens,
			Indexes: map[string]*memdb.IndexSchema{
				"id":      {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
				"expires": {Name: "expires", Indexer: timeIndexer{field: func(o any) time.Time { return o.(*tokenRecord).ExpiresAt }}},
			},
		},
		tablePool: {
			Name:    tablePool,
			Indexes: map[string]*memdb.IndexSchema{"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}}},
		},
		tableQuotaCreates: {
			Name:    tableQuotaCreates,
			Indexes: map[string]*memdb.IndexSchema{"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "User"}}},
		},
		tableEgressGrants: {
			Name:    tableEgressGrants,
			Indexes: map[string]*memdb.IndexSchema{"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Subject"}}},
		},
		tableWebhooks: {
			Name:    tableWebhooks,
			Indexes: map[string]*memdb.IndexSchema{"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "User"}}},
		},
		tableEvents: {
			Name:    tableEvents,
			Indexes: map[string]*memdb.IndexSchema{"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}}},
		},
		tableMeta: {
			Name:    tableMeta,
			Indexes: map[string]*memdb.IndexSchema{"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}}},
		},
	}}
}

// pickIndexer keys a sandbox by state, image, network and CreateIndex, so a
// prefix lookup of (state, image, network) yields the oldest sandbox first.
// memdb's own UintFieldIndex is varint-encoded and does not sort numerically.
type pickIndexer struct{}

func (pickIndexer) FromObject(raw any) (bool, []byte, error) {
	s, ok := raw.(*Sandbox)
	if !ok {
		return false, nil, fmt.Errorf("pick index: %T is not a *Sandbox", raw)
	}
	key := pickPrefix(s.State, s.Image, s.Network)
	return true, binary.BigEndian.AppendUint64(key, s.CreateIndex), nil
}

// FromArgs takes (state SandboxState, image string, network bool) and returns
// the prefix; memdb's Get is a prefix scan.
func (pickIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 3 {
		return nil, fmt.Errorf("pick index: want 3 args, got %d", len(args))
	}
	st, ok1 := args[0].(SandboxState)
	img, ok2 := args[1].(string)
	net, ok3 := args[2].(bool)
	if !ok1 || !ok2 || !ok3 {
		return nil, fmt.Errorf("pick index: want (SandboxState, string, bool), got %T %T %T", args[0], args[1], args[2])
	}
	return pickPrefix(st, img, net), nil
}

func pickPrefix(st SandboxState, image string, network bool) []byte {
	key := make([]byte, 0, len(st)+len(image)+12)
	key = append(key, st...)
	key = append(key, 0)
	key = append(key, image...)
	key = append(key, 0)
	if network {
		return append(key, 1)
	}
	return append(key, 0)
}

// timeIndexer orders by a time field: seconds with the sign bit flipped (so
// negative Unix times sort first), then nanoseconds, big-endian.
type timeIndexer struct{ field func(any) time.Time }

func (x timeIndexer) FromObject(raw any) (bool, []byte, error) {
	return true, encodeTime(x.field(raw)), nil
}

func (timeIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) == 0 {
		return nil, nil
	}
	t, ok := args[0].(time.Time)
	if len(args) != 1 || !ok {
		return nil, fmt.Errorf("time index: want one time.Time")
	}
	return encodeTime(t), nil
}

func encodeTime(t time.Time) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 12), uint64(t.Unix())^(1<<63))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

// uintIndexer orders by a uint64 field, big-endian.
type uintIndexer struct{ field func(any) uint64 }

func (x uintIndexer) FromObject(raw any) (bool, []byte, error) {
	return true, binary.BigEndian.AppendUint64(nil, x.field(raw)), nil
}

func (uintIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) == 0 {
		return nil, nil
	}
	v, ok := args[0].(uint64)
	if len(args) != 1 || !ok {
		return nil, fmt.Errorf("uint index: want one uint64")
	}
	return binary.BigEndian.AppendUint64(nil, v), nil
}
