package cluster

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// BenchmarkScaleAcquire is the Raft side of fsm's BenchmarkScale: one
// in-process node on loopback (bolt log, file snapshots) holding 10,000
// sandboxes, printed beside a 1,000-sandbox baseline: how many Raft log
// entries one acquire appends (the API's acquire of an idle sandbox is one
// Apply), its median latency, a Raft snapshot (FSM persist to the file
// store), and a restart: Open (which restores that snapshot) and the time
// until the node leads again with all its state. Fixed repetitions, no
// thresholds.
//
//	go test ./cluster -run '^$' -bench ScaleAcquire -benchtime 1x
func BenchmarkScaleAcquire(b *testing.B) {
	// Measured once per run: the repetitions are fixed, so b.N (make bench
	// asks for 300) would only repeat the same table.
	if scaleDone.Swap(true) {
		b.Skip("measured once per run")
	}
	sizes := []int{1000, 10000}
	rows := map[int]scaleNodeRow{}
	for _, n := range sizes {
		rows[n] = measureScaleNode(b, n)
	}
	base, big := rows[sizes[0]], rows[sizes[1]]
	fmt.Fprintf(os.Stdout, "\none node at scale (medians: %d acquires, %d snapshots)\n", scaleNodeAcquires, scaleNodeSnapshots)
	fmt.Fprintf(os.Stdout, "%-36s %14s %14s %8s\n", "", fmt.Sprintf("%d sandboxes", sizes[0]), fmt.Sprintf("%d sandboxes", sizes[1]), "ratio")
	dur := func(name string, a, c time.Duration) {
		fmt.Fprintf(os.Stdout, "%-36s %14s %14s %7.1fx\n", name, a.Round(time.Microsecond), c.Round(time.Microsecond), float64(c)/float64(max(a, 1)))
	}
	fmt.Fprintf(os.Stdout, "%-36s %14d %14d\n", "load: applies (64 writers)", base.loadApplies, big.loadApplies)
	dur("load: time", base.load, big.load)
	fmt.Fprintf(os.Stdout, "%-36s %14.2f %14.2f\n", "acquire: Raft log entries each", base.entriesPerAcquire, big.entriesPerAcquire)
	dur("acquire: Apply p50 (commit + FSM)", base.acquire, big.acquire)
	dur("empty touch: Apply p50 (baseline)", base.touch, big.touch)
	dur("Raft snapshot p50 (persist + fsync)", base.snapshot, big.snapshot)
	dur("restart: Open (restores snapshot)", base.open, big.open)
	dur("restart: until leading with state", base.ready, big.ready)
}

var scaleDone atomic.Bool

const (
	scaleNodeAcquires  = 101
	scaleNodeSnapshots = 3
)

type scaleNodeRow struct {
	loadApplies                    int
	load, acquire, touch, snapshot time.Duration
	open, ready                    time.Duration
	entriesPerAcquire              float64
}

func measureScaleNode(b *testing.B, size int) scaleNodeRow {
	b.Helper()
	var r scaleNodeRow
	c := startCluster(b, 1, bootJoin, nil)
	n := c.leader()
	mustApply(b, n, setPool(2*size))

	// Load: size idle sandboxes (create, placed), then half handed out.
	var cmds []fsm.Command
	for i := range size {
		id := fmt.Sprintf("sb%06d", i)
		cmds = append(cmds, &fsm.SandboxCreate{ID: id, Image: "python:3.11-slim"})
	}
	var placed []fsm.Command
	for i := range size {
		id := fmt.Sprintf("sb%06d", i)
		placed = append(placed, &fsm.SandboxPlaced{ID: id, Placement: fsm.Placement{Driver: "docker", Node: "n0",
			ContainerID: "c-" + id, AgentEndpoint: "unix:///run/sb/" + id + "/agent.sock"}})
	}
	var handed []fsm.Command
	for i := range size / 2 {
		handed = append(handed, &fsm.SandboxAcquire{Header: fsm.Header{RequestID: fmt.Sprintf("load-%d", i)},
			Owner: fmt.Sprintf("user%d", i%1000), NewID: fmt.Sprintf("new%06d", i)})
	}
	start := time.Now()
	for _, batch := range [][]fsm.Command{cmds, placed, handed} {
		applyAll(b, n, batch, 64)
		r.loadApplies += len(batch)
	}
	r.load = time.Since(start)

	// Acquire, one at a time, as the API does it (with a request ID).
	ds := make([]time.Duration, 0, scaleNodeAcquires)
	before := n.raft.LastIndex()
	for i := range scaleNodeAcquires {
		cmd := &fsm.SandboxAcquire{Header: fsm.Header{RequestID: fmt.Sprintf("bench-%d", i)},
			Owner: "bencher", NewID: fmt.Sprintf("bench%06d", i)}
		t := time.Now()
		resp := mustApply(b, n, cmd)
		ds = append(ds, time.Since(t))
		if resp.Sandbox == nil || resp.Sandbox.State != fsm.StateActive {
			b.Fatalf("acquire %d did not hand out an idle sandbox: %+v", i, resp.Sandbox)
		}
	}
	r.entriesPerAcquire = float64(n.raft.LastIndex()-before) / scaleNodeAcquires
	r.acquire = median(ds)

	// Baseline: a command that changes nothing (touch of no sandbox) costs
	// the Raft commit and little else.
	ds = ds[:0]
	for range scaleNodeAcquires {
		t := time.Now()
		mustApply(b, n, &fsm.SandboxTouch{})
		ds = append(ds, time.Since(t))
	}
	r.touch = median(ds)

	ds = ds[:0]
	for i := range scaleNodeSnapshots {
		// raft refuses a snapshot with nothing new since the last one.
		mustApply(b, n, &fsm.SandboxTouch{IDs: []string{fmt.Sprintf("sb%06d", i)}})
		t := time.Now()
		if err := n.raft.Snapshot().Error(); err != nil {
			b.Fatalf("snapshot: %v", err)
		}
		ds = append(ds, time.Since(t))
	}
	r.snapshot = median(ds)

	want := len(n.FSM().Sandboxes())
	applied := n.AppliedIndex()
	c.kill(0)
	t := time.Now()
	n = c.start(0)
	r.open = time.Since(t)
	waitFor(b, 30*time.Second, "the restarted node to lead with its state", func() bool {
		return n.IsLeader() && n.AppliedIndex() >= applied
	})
	r.ready = time.Since(t)
	if got := len(n.FSM().Sandboxes()); got != want {
		b.Fatalf("after restart %d sandboxes, want %d", got, want)
	}
	c.stopAll()
	return r
}

// applyAll applies cmds from writers goroutines and fails on any error.
func applyAll(b *testing.B, n *Node, cmds []fsm.Command, writers int) {
	b.Helper()
	var (
		next   atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed error
	)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(cmds) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := n.Apply(ctx, cmds[i])
				cancel()
				if err != nil {
					mu.Lock()
					failed = fmt.Errorf("apply %T #%d: %w", cmds[i], i, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		b.Fatal(failed)
	}
}
