package fsm

import (
	"bytes"
	"io"
	"testing"
)

func TestChangesNameWhatEachApplyChanged(t *testing.T) {
	h := newHarness(t)
	_, start, _ := h.f.Changes(^uint64(0))
	cases := []struct {
		name string
		cmd  Command
		want []Change // Index filled in from the response
	}{
		{"pool", setPool(0, 10), []Change{{Kind: ChangePool}}},
		{"create", create("a"), []Change{{Kind: ChangeSandbox, ID: "a"}}},
		{"placed", placed("a"), []Change{{Kind: ChangeSandbox, ID: "a"}}},
		{"touch of nothing known", &SandboxTouch{IDs: []string{"zz"}}, nil},
		{"session takes the idle sandbox", sessionCreate("s1", "u", "b"),
			[]Change{{Kind: ChangeSandbox, ID: "a"}, {Kind: ChangeSession, ID: "s1"}}},
		{"refused command", create("a"), nil},
	}
	cursor := start
	for _, tc := range cases {
		resp := h.apply(tc.cmd)
		got, last, complete := h.f.Changes(cursor)
		if !complete {
			t.Fatalf("%s: feed incomplete after %d", tc.name, cursor)
		}
		if last != resp.Index {
			t.Errorf("%s: feed runs to %d, want the apply's index %d", tc.name, last, resp.Index)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("%s: changes %+v, want %+v", tc.name, got, tc.want)
		}
		for i, w := range tc.want {
			w.Index = resp.Index
			if got[i] != w {
				t.Errorf("%s: change %d = %+v, want %+v", tc.name, i, got[i], w)
			}
		}
		cursor = last
	}
	if all, _, _ := h.f.Changes(start); len(all) != 5 {
		t.Errorf("feed from the start holds %d changes, want 5: %+v", len(all), all)
	}
}

func TestChangesSayWhenTheyAreIncomplete(t *testing.T) {
	t.Run("ring overflow", func(t *testing.T) {
		h := newHarness(t)
		h.mustApply(setPool(0, 10), create("a"))
		_, cursor, _ := h.f.Changes(^uint64(0))
		for i := 0; i < changeLogSize+10; i++ {
			h.mustApply(setPool(i%2, 10)) // each apply writes the pool
		}
		if _, _, complete := h.f.Changes(cursor); complete {
			t.Error("a consumer further behind than the ring was told the feed is complete")
		}
		_, last, _ := h.f.Changes(^uint64(0))
		if got, _, complete := h.f.Changes(last - 5); !complete || len(got) != 5 {
			t.Errorf("recent changes: %d, complete %v; want 5, true", len(got), complete)
		}
	})
	t.Run("restore", func(t *testing.T) {
		h := newHarness(t)
		h.mustApply(setPool(0, 10), create("a"))
		_, cursor, _ := h.f.Changes(^uint64(0))
		other := newHarness(t)
		other.mustApply(setPool(0, 10), create("x"), create("y"), create("z"))
		if err := h.f.Restore(io.NopCloser(bytes.NewReader(persist(t, other.f)))); err != nil {
			t.Fatal(err)
		}
		if _, _, complete := h.f.Changes(cursor); complete {
			t.Error("after a restore the feed claims to say what changed")
		}
	})
	t.Run("restore of an older state", func(t *testing.T) {
		// An operator's restore (sandboxctl snapshot restore) brings back a
		// state saved at a lower index than the consumer has read.
		old := newHarness(t)
		old.mustApply(setPool(0, 10), create("a"))
		saved := persist(t, old.f)
		h := newHarness(t)
		h.mustApply(setPool(0, 10), create("a"), create("b"), create("c"))
		_, cursor, _ := h.f.Changes(^uint64(0))
		if err := h.f.Restore(io.NopCloser(bytes.NewReader(saved))); err != nil {
			t.Fatal(err)
		}
		if _, _, complete := h.f.Changes(cursor); complete {
			t.Error("after restoring an older state the feed claims nothing changed")
		}
		_, last, _ := h.f.Changes(^uint64(0))
		h.index++ // raft's user restore takes an index past the log's end
		h.mustApply(create("d"))
		if got, _, complete := h.f.Changes(last); !complete || len(got) != 1 || got[0].ID != "d" {
			t.Errorf("the first apply after the restore: %+v, complete %v", got, complete)
		}
	})
}
