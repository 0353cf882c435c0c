package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

type benchResult struct {
	p50, p99   time.Duration
	throughput float64
}

// BenchmarkApply compares our Apply (encode, FSM with memdb, leader
// forwarding) with a bare hashicorp/raft 3-node cluster applying the same
// payload size into a trivial FSM, with the same stores, timeouts and
// loopback TCP. Run: go test ./cluster -run '^$' -bench Apply -benchtime 3000x
func BenchmarkApply(b *testing.B) {
	results := map[string]benchResult{}
	payload := benchCommand(0)
	data, err := fsm.Encode(payload)
	if err != nil {
		b.Fatal(err)
	}
	size := len(data)
	// bare-raft+fsm feeds our FSM through plain raft: the gap to bare-raft is
	// the state machine's cost, the gap from it to cluster-* is this package's.
	kinds := []string{"bare-raft", "bare-raft+fsm", "cluster-leader", "cluster-follower"}
	for _, writers := range []int{1, 32} {
		for _, kind := range kinds {
			name := fmt.Sprintf("writers=%d/%s", writers, kind)
			b.Run(name, func(b *testing.B) {
				var apply func(i int64) error
				switch kind {
				case "bare-raft":
					r := startBareRaft(b, func() raft.FSM { return &countFSM{} })
					buf := make([]byte, size)
					apply = func(int64) error { return r.Apply(buf, 5*time.Second).Error() }
				case "bare-raft+fsm":
					r := startBareRaft(b, func() raft.FSM { return fsm.New() })
					pool, _ := fsm.Encode(setPool(1 << 30))
					if err := r.Apply(pool, 5*time.Second).Error(); err != nil {
						b.Fatal(err)
					}
					apply = func(i int64) error {
						buf, err := fsm.Encode(benchCommand(i))
						if err != nil {
							return err
						}
						return r.Apply(buf, 5*time.Second).Error()
					}
				default:
					c := startCluster(b, 3, bootJoin, nil)
					mustApply(b, c.leader(), setPool(1<<30))
					n := c.leader()
					if kind == "cluster-follower" {
						n = c.follower()
					}
					apply = func(i int64) error {
						_, err := n.Apply(context.Background(), benchCommand(i))
						return err
					}
				}
				res := runApplies(b, writers, apply)
				b.ReportMetric(float64(res.p50.Microseconds()), "p50-µs")
				b.ReportMetric(float64(res.p99.Microseconds()), "p99-µs")
				b.ReportMetric(res.throughput, "applies/s")
				results[name] = res
			})
		}
	}
	fmt.Fprintf(os.Stdout, "\napply, 3 nodes on loopback, payload %d bytes\n", size)
	fmt.Fprintf(os.Stdout, "%-32s %10s %10s %12s %14s\n", "", "p50", "p99", "applies/s", "p50 vs bare")
	for _, writers := range []int{1, 32} {
		bare := results[fmt.Sprintf("writers=%d/bare-raft", writers)]
		for _, kind := range kinds {
			name := fmt.Sprintf("writers=%d/%s", writers, kind)
			r, ok := results[name]
			if !ok || bare.p50 == 0 {
				continue
			}
			fmt.Fprintf(os.Stdout, "%-32s %10s %10s %12.0f %13.2fx\n", name,
				r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.throughput,
				float64(r.p50)/float64(bare.p50))
		}
	}
}

var benchSeq atomic.Int64

func benchCommand(i int64) *fsm.SandboxCreate {
	return &fsm.SandboxCreate{
		Header: fsm.Header{RequestID: fmt.Sprintf("bench-%012d", i), Now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		ID:     fmt.Sprintf("sb-%012d-%d", i, benchSeq.Add(1)),
		Image:  "python:3.11-slim",
	}
}

// runApplies runs b.N applies from writers goroutines and measures each.
func runApplies(b *testing.B, writers int, apply func(i int64) error) benchResult {
	var next atomic.Int64
	lat := make([][]time.Duration, writers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := apply(i); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		b.Fatal("no applies")
	}
	return benchResult{
		p50:        all[len(all)/2],
		p99:        all[min(len(all)-1, len(all)*99/100)],
		throughput: float64(len(all)) / elapsed.Seconds(),
	}
}

// countFSM is the trivial FSM of the bare-raft baseline.
type countFSM struct{ n atomic.Uint64 }

func (f *countFSM) Apply(*raft.Log) interface{}         { f.n.Add(1); return nil }
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return countSnap{}, nil }
func (f *countFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type countSnap struct{}

func (countSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (countSnap) Release()                          {}

// startBareRaft starts 3 plain hashicorp/raft nodes and returns the leader.
func startBareRaft(b *testing.B, newFSM func() raft.FSM) *raft.Raft {
	b.Helper()
	dir := b.TempDir()
	type member struct {
		r     *raft.Raft
		trans *raft.NetworkTransport
		store *raftboltdb.BoltStore
	}
	var members []member
	var servers []raft.Server
	for i := range 3 {
		trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, transportMaxPool, transportTimeout, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		store, err := raftboltdb.NewBoltStore(filepath.Join(dir, fmt.Sprintf("bare%d.db", i)))
		if err != nil {
			b.Fatal(err)
		}
		members = append(members, member{trans: trans, store: store})
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprint(i)), Address: trans.LocalAddr()})
	}
	for i := range members {
		cfg := raft.DefaultConfig()
		cfg.LocalID = servers[i].ID
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
		cfg.ElectionTimeout = DefaultElectionTimeout
		cfg.LeaderLeaseTimeout = DefaultLeaderLeaseTimeout
		cfg.CommitTimeout = DefaultCommitTimeout
		cfg.Logger = newHclog(testLogger(), "bare")
		logs, err := raft.NewLogCache(logCacheSize, members[i].store)
		if err != nil {
			b.Fatal(err)
		}
		r, err := raft.NewRaft(cfg, newFSM(), logs, members[i].store, raft.NewInmemSnapshotStore(), members[i].trans)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			b.Fatal(err)
		}
		members[i].r = r
	}
	b.Cleanup(func() {
		for _, m := range members {
			_ = m.r.Shutdown().Error()
			_ = m.trans.Close()
			_ = m.store.Close()
		}
	})
	var leader *raft.Raft
	waitFor(b, 10*time.Second, "a bare raft leader", func() bool {
		for _, m := range members {
			if m.r.State() == raft.Leader {
				leader = m.r
				return true
			}
		}
		return false
	})
	return leader
}
