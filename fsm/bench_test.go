package fsm

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
)

const benchSize = 10000

var (
	benchOnce sync.Once
	benchH    *harness
)

// benchState has 10,000 sessions, each with its own sandbox, spread over 1,000
// owners (half active, half paused), plus 10,000 more pool sandboxes idle.
func benchState(b *testing.B) *harness {
	benchOnce.Do(func() {
		h := newHarness(b)
		h.f = New(WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		h.mustApply(setPool(0, 10*benchSize))
		for i := 0; i < benchSize; i++ {
			owner := fmt.Sprintf("user%d", i%1000)
			c := sessionCreate(fmt.Sprintf("sess%05d", i), owner, fmt.Sprintf("sb%05d", i))
			c.Network = true
			h.mustApply(c, placed(c.SandboxID))
			if i%2 == 1 {
				h.mustApply(pause(c.ID, owner))
			}
			id := fmt.Sprintf("pool%05d", i)
			h.mustApply(create(id), placed(id))
		}
		benchH = h
	})
	return benchH
}

func BenchmarkQueries(b *testing.B) {
	h := benchState(b)
	f := h.f
	var sink int
	benches := []struct {
		name string
		fn   func(i int)
	}{
		{"Sandbox_by_id", func(i int) { s, _ := f.Sandbox(fmt.Sprintf("sb%05d", i%benchSize)); sink += len(s.ID) }},
		{"SandboxesByOwner_20", func(i int) { sink += len(f.SandboxesByOwner(fmt.Sprintf("user%d", i%1000))) }},
		{"SandboxesByState_paused_5000", func(int) { sink += len(f.SandboxesByState(StatePaused)) }},
		{"Session_by_id", func(i int) { s, _ := f.Session(fmt.Sprintf("sess%05d", i%benchSize)); sink += len(s.ID) }},
		{"SessionsByOwner_10", func(i int) { sink += len(f.SessionsByOwner(fmt.Sprintf("user%d", i%1000))) }},
		{"PoolStats", func(int) { sink += f.PoolStats().Total }},
		{"TokenRevoked", func(int) {
			if f.TokenRevoked("nope") {
				sink++
			}
		}},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				bb.fn(i)
			}
		})
	}
	_ = sink
}

// BenchmarkApplyAcquire is one acquire from the idle pool at 20,000 sandboxes,
// including encode and decode; each op hands out a different idle sandbox.
func BenchmarkApplyAcquire(b *testing.B) {
	h := benchState(b)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if r := h.apply(withRequest(fmt.Sprintf("bench-%d-%d", b.N, i), acquire("bencher", fmt.Sprintf("x%d-%d", b.N, i)))); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

func BenchmarkSnapshotPersist(b *testing.B) {
	h := benchState(b)
	for i := 0; i < b.N; i++ {
		snap, err := h.f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		var sink bufSink
		if err := snap.Persist(&sink); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(sink.Len()))
	}
}
