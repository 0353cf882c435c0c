package fsm

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

func ids(ss []*Sandbox) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

func TestQueriesByIndex(t *testing.T) {
	h := newHarness(t)
	h.mustApply(idle(10, "a", "b", "c", "d")...)
	h.mustApply(acquire("alice", "x"), acquire("bob", "y"), acquire("alice", "z"), sessionCreate("s1", "carol", "w"))
	tests := []struct {
		name string
		got  []*Sandbox
		want string
	}{
		{"by owner alice", h.f.SandboxesByOwner("alice"), "[a c]"},
		{"by owner bob", h.f.SandboxesByOwner("bob"), "[b]"},
		{"by owner prefix does not match", h.f.SandboxesByOwner("ali"), "[]"},
		{"by empty owner", h.f.SandboxesByOwner(""), "[]"},
		{"active", h.f.SandboxesByState(StateActive), "[a b c d]"},
		{"idle", h.f.SandboxesByState(StateIdle), "[]"},
		{"all", h.f.Sandboxes(), "[a b c d]"},
	}
	for _, tc := range tests {
		if got := fmt.Sprint(ids(tc.got)); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.name, got, tc.want)
		}
	}
	if ss := h.f.SessionsByOwner("carol"); len(ss) != 1 || ss[0].ID != "s1" {
		t.Errorf("sessions by owner carol = %+v", ss)
	}
}

// Results are copies: changing one does not change state.
func TestQueriesReturnCopies(t *testing.T) {
	h := newHarness(t)
	h.mustApply(idle(10, "a")...)
	h.f.SandboxesByState(StateIdle)[0].Owner = "mallory"
	s, _ := h.f.Sandbox("a")
	s.State = StateActive
	if got := h.sandbox("a"); got.Owner != "" || got.State != StateIdle {
		t.Errorf("state changed through a query result: %+v", got)
	}
}

func TestWatchClosesOnApply(t *testing.T) {
	h := newHarness(t)
	ch := h.f.Watch()
	select {
	case <-ch:
		t.Fatal("watch closed before any change")
	default:
	}
	h.mustApply(setPool(0, 3))
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("watch not closed after Apply")
	}
	if next := h.f.Watch(); next == ch {
		t.Error("Watch returned the closed channel again")
	}
}

// Readers run while Apply changes state (run with -race). Every read sees a
// committed state: the stats add up and the applied index never goes back.
func TestConcurrentReadsDuringApply(t *testing.T) {
	h := newHarness(t)
	h.f = New(WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	h.mustApply(setPool(0, 100000))
	const n = 2000
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last uint64
			for {
				select {
				case <-done:
					return
				case <-h.f.Watch():
				case <-time.After(time.Second):
				}
				st := h.f.PoolStats()
				if sum := st.Pending + st.Idle + st.Active + st.Paused + st.Terminating + st.Failed; sum != st.Total {
					errs <- fmt.Sprintf("stats do not add up: %+v", st)
					return
				}
				idx := h.f.AppliedIndex()
				if idx < last {
					errs <- fmt.Sprintf("applied index went back from %d to %d", last, idx)
					return
				}
				last = idx
				for _, s := range h.f.SandboxesByOwner("alice") {
					if s.Owner != "alice" {
						errs <- fmt.Sprintf("owner index returned %+v", s)
						return
					}
				}
				_, _ = h.f.Sandbox("s1")
				_ = h.f.SandboxesByState(StateIdle)
			}
		}()
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("s%d", i)
		h.mustApply(create(id), placed(id))
		if i%2 == 0 {
			h.mustApply(acquire("alice", "x"+id))
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if st := h.f.PoolStats(); st.Idle != n/2 || st.Active != n/2 {
		t.Errorf("final stats = %+v, want %d idle and %d active", st, n/2, n/2)
	}
}
