package placement

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// BenchmarkScaleReconciler measures what the reconciler costs after one
// change with 1,000 and 10,000 sandboxes in the state (half idle in the
// pool, half acquired; an in-memory driver): the change feed read, the
// queue and the work for the changed sandbox, run synchronously and timed
// from the applied change to an empty queue. Beside it, the floor of the
// reconciler it replaced, which rescanned every sandbox on every apply: one
// full read of the state. Medians of fixed repetitions; no thresholds.
//
//	go test ./placement -run '^$' -bench ScaleReconciler -benchtime 1x
func BenchmarkScaleReconciler(b *testing.B) {
	if scaleDone.Swap(true) {
		b.Skip("measured once per run")
	}
	sizes := []int{1000, 10000}
	rows := map[int]reconcilerScaleRow{}
	for _, n := range sizes {
		rows[n] = measureReconcilerScale(b, n)
	}
	base, big := rows[sizes[0]], rows[sizes[1]]
	fmt.Fprintf(os.Stdout, "\nreconciler after one change (medians of %d)\n", scaleChanges)
	fmt.Fprintf(os.Stdout, "%-40s %14s %14s %8s\n", "", fmt.Sprintf("%d sandboxes", sizes[0]), fmt.Sprintf("%d sandboxes", sizes[1]), "ratio")
	line := func(name string, a, c time.Duration) {
		fmt.Fprintf(os.Stdout, "%-40s %14s %14s %7.1fx\n", name, a.Round(100*time.Nanosecond), c.Round(100*time.Nanosecond), float64(c)/float64(a))
	}
	line("activity touch: feed + queue + sync", base.touch, big.touch)
	line("acquire: feed + queue + sync + pool", base.acquire, big.acquire)
	line("old floor: one full read of the state", base.scan, big.scan)
	fmt.Fprintf(os.Stdout, "%-40s %14s %14s\n", "touch vs old floor", ratio(base.scan, base.touch), ratio(big.scan, big.touch))
}

var scaleDone atomic.Bool

const scaleChanges = 101

type reconcilerScaleRow struct{ touch, acquire, scan time.Duration }

func ratio(old, now time.Duration) string {
	return fmt.Sprintf("%.0fx faster", float64(old)/float64(now))
}

func measureReconcilerScale(b *testing.B, n int) reconcilerScaleRow {
	b.Helper()
	f := fsm.New()
	apply := &directApplier{f: f}
	driver := newMemDriver()
	must := func(c fsm.Command) *fsm.Response {
		resp, err := apply.Apply(context.Background(), c)
		if err != nil {
			b.Fatalf("apply %T: %v", c, err)
		}
		return resp
	}
	pool := fsm.PoolConfig{MinSize: 0, MaxSize: 2 * n, Image: "img", Resources: testPool.Resources}
	must(&fsm.SetPool{Pool: pool})
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%016x", i)
		must(&fsm.SandboxCreate{ID: id, Image: "img", Resources: pool.Resources})
		p := fsm.Placement{Driver: "mem", ContainerID: "c-" + id}
		must(&fsm.SandboxPlaced{ID: id, Placement: p})
		driver.instances[id] = &Instance{SandboxID: id, Placement: p, Running: true}
	}
	var active []string
	for i := 0; i < n/2; i++ {
		sb := must(&fsm.SandboxAcquire{Owner: fmt.Sprintf("u%d", i%100), NewID: NewID(), IdleTimeout: time.Hour}).Sandbox
		active = append(active, sb.ID)
	}

	clock := newFakeClock()
	r := New(Config{Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, driver, apply, f)
	ctx := context.Background()
	r.beginTerm()
	if !r.startTerm(ctx) {
		b.Fatal("term start-up failed")
	}
	_, cursor, _ := f.Changes(^uint64(0))
	r.reseed()
	drain := func() {
		for r.q.len() > 0 {
			k, _ := r.q.get()
			if err := r.do(ctx, k); err != nil {
				b.Fatalf("work on %v: %v", k, err)
			}
			r.q.done(k)
		}
	}
	drain()
	// One change, then everything the reconciler does about it.
	after := func(change func(i int)) time.Duration {
		var ds []time.Duration
		for i := 0; i < scaleChanges; i++ {
			change(i)
			start := time.Now()
			changes, last, complete := f.Changes(cursor)
			if !complete {
				b.Fatal("feed incomplete")
			}
			r.feed(changes)
			drain()
			ds = append(ds, time.Since(start))
			cursor = last
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	row := reconcilerScaleRow{}
	row.touch = after(func(i int) { must(&fsm.SandboxTouch{IDs: []string{active[i%len(active)]}}) })
	row.acquire = after(func(int) { must(&fsm.SandboxAcquire{Owner: "bench", NewID: NewID()}) })
	var scans []time.Duration
	for i := 0; i < scaleChanges; i++ {
		start := time.Now()
		for _, sb := range f.Sandboxes() {
			_ = sb.State
		}
		scans = append(scans, time.Since(start))
	}
	slices.Sort(scans)
	row.scan = scans[len(scans)/2]
	return row
}
