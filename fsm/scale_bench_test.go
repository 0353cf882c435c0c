package fsm

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkScale loads 10,000 sandboxes into one FSM (half idle in the pool,
// a quarter acquired and a quarter in sessions, 1,000 owners) and prints, beside the same numbers for a
// 1,000-sandbox baseline: the load, one acquire (one command; its FSM cost
// with encode and decode), the heap the state takes and
// the process's VmRSS, a snapshot's persist and restore, and a reconciler-like
// full scan (every sandbox, every session). Fixed repetitions, medians, no
// thresholds; the Raft side is cluster's BenchmarkScaleAcquire.
//
//	go test ./fsm -run '^$' -bench Scale -benchtime 1x
func BenchmarkScale(b *testing.B) {
	// Measured once per run: the repetitions are fixed, so b.N (make bench
	// asks for 300) would only repeat the same table.
	if scaleDone.Swap(true) {
		b.Skip("measured once per run")
	}
	sizes := []int{1000, 10000}
	rows := map[int]scaleRow{}
	for _, n := range sizes {
		rows[n] = measureScale(b, n)
	}
	base, big := rows[sizes[0]], rows[sizes[1]]
	fmt.Fprintf(os.Stdout, "\nfsm at scale (medians; acquire of %d, snapshot and restore of %d, scans of %d runs)\n",
		scaleAcquires, scaleSnapshots, scaleScans)
	fmt.Fprintf(os.Stdout, "%-34s %14s %14s %8s\n", "", fmt.Sprintf("%d sandboxes", sizes[0]), fmt.Sprintf("%d sandboxes", sizes[1]), "ratio")
	line := func(name string, a, c float64, format func(float64) string) {
		ratio := "-"
		if a > 0 {
			ratio = fmt.Sprintf("%.1fx", c/a)
		}
		fmt.Fprintf(os.Stdout, "%-34s %14s %14s %8s\n", name, format(a), format(c), ratio)
	}
	dur := func(v float64) string {
		if d := time.Duration(v); d < 100*time.Microsecond {
			return d.Round(100 * time.Nanosecond).String()
		}
		return time.Duration(v).Round(time.Microsecond).String()
	}
	mib := func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
	count := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	line("load (applies)", float64(base.loadApplies), float64(big.loadApplies), count)
	line("load (time)", float64(base.load), float64(big.load), dur)
	line("acquire: FSM apply p50", float64(base.acquire), float64(big.acquire), dur)
	line("heap held by the state", float64(base.heap), float64(big.heap), mib)
	line("heap per sandbox (bytes)", float64(base.heap)/float64(sizes[0]), float64(big.heap)/float64(sizes[1]),
		func(v float64) string { return strconv.Itoa(int(v)) })
	line("process VmRSS after load", float64(base.rss), float64(big.rss), mib)
	line("snapshot size", float64(base.snapBytes), float64(big.snapBytes), mib)
	line("snapshot persist p50", float64(base.persist), float64(big.persist), dur)
	line("snapshot restore p50", float64(base.restore), float64(big.restore), dur)
	line("full scan: Sandboxes() p50", float64(base.scanSandboxes), float64(big.scanSandboxes), dur)
	line("full scan: Sessions() p50", float64(base.scanSessions), float64(big.scanSessions), dur)
	line("PoolStats() p50", float64(base.stats), float64(big.stats), dur)
}

var scaleDone atomic.Bool

const (
	scaleAcquires  = 101
	scaleSnapshots = 5
	scaleScans     = 21
)

type scaleRow struct {
	loadApplies                        int
	load, acquire                      time.Duration
	heap, rss                          uint64
	snapBytes                          int
	persist, restore                   time.Duration
	scanSandboxes, scanSessions, stats time.Duration
}

// measureScale builds a state of n sandboxes and measures it.
func measureScale(b *testing.B, n int) scaleRow {
	b.Helper()
	var r scaleRow
	heapBefore := heapInUse()
	h := newHarness(b)
	h.f = New(WithLogger(slog.New(slog.DiscardHandler)))
	start := time.Now()
	applies := 0
	apply := func(c Command) {
		h.mustApply(c)
		applies++
	}
	apply(setPool(0, 2*n))
	for i := range n {
		id := fmt.Sprintf("sb%06d", i)
		apply(create(id))
		apply(placed(id))
	}
	// Half of them handed out, each taking an idle one: a quarter by
	// acquire, a quarter to sessions.
	for i := range n / 4 {
		owner := fmt.Sprintf("user%d", i%1000)
		apply(withRequest(fmt.Sprintf("load-%d", i), acquire(owner, fmt.Sprintf("new%06d", i))))
		apply(sessionCreate(fmt.Sprintf("sess%06d", i), owner, fmt.Sprintf("newsess%06d", i)))
	}
	r.load, r.loadApplies = time.Since(start), applies
	if after := heapInUse(); after > heapBefore {
		r.heap = after - heapBefore
	}
	r.rss = vmRSS(b)

	var ds []time.Duration
	for i := range scaleAcquires {
		c := withRequest(fmt.Sprintf("bench-%d", i), acquire("bencher", fmt.Sprintf("bench%06d", i)))
		t := time.Now()
		h.mustApply(c)
		ds = append(ds, time.Since(t))
	}
	r.acquire = medianOf(ds)

	ds = ds[:0]
	var snap bytes.Buffer
	for range scaleSnapshots {
		s, err := h.f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		var sink bufSink
		t := time.Now()
		if err := s.Persist(&sink); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t))
		snap.Reset()
		snap.Write(sink.Bytes())
	}
	r.persist, r.snapBytes = medianOf(ds), snap.Len()

	ds = ds[:0]
	for range scaleSnapshots {
		f := New(WithLogger(slog.New(slog.DiscardHandler)))
		t := time.Now()
		if err := f.Restore(io.NopCloser(bytes.NewReader(snap.Bytes()))); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t))
		if got := len(f.Sandboxes()); got != len(h.f.Sandboxes()) {
			b.Fatalf("restored %d sandboxes, want %d", got, len(h.f.Sandboxes()))
		}
	}
	r.restore = medianOf(ds)

	r.scanSandboxes = timeMedian(scaleScans, func() { _ = len(h.f.Sandboxes()) })
	r.scanSessions = timeMedian(scaleScans, func() { _ = len(h.f.Sessions()) })
	r.stats = timeMedian(scaleScans, func() { _ = h.f.PoolStats() })
	return r
}

func timeMedian(reps int, fn func()) time.Duration {
	ds := make([]time.Duration, 0, reps)
	for range reps {
		t := time.Now()
		fn()
		ds = append(ds, time.Since(t))
	}
	return medianOf(ds)
}

// medianOf sorts ds in place and returns the middle value.
func medianOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// vmRSS is this process's resident set size from /proc/self/status (0
// where there is no /proc).
func vmRSS(b *testing.B) uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	return 0
}
