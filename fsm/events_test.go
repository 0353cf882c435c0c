package fsm

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
)

// eventLine renders events as "type:sandbox[:reason]" for comparison.
func eventLine(evs []Event) string {
	var parts []string
	for _, e := range evs {
		s := string(e.Type) + ":" + e.SandboxID
		if e.Reason != "" {
			s += ":" + e.Reason
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestEventsFollowEachSandboxLife(t *testing.T) {
	moved := placed("a")
	moved.Placement.ContainerID = "c-a2"
	cases := []struct {
		name  string
		setup []Command
		cmd   Command
		want  string
	}{
		{"pool sandbox created", cmds(setPool(0, 5)), create("a"), "created:a"},
		{"placed", cmds(setPool(0, 5), create("a")), placed("a"), "placed:a"},
		{"taken from the pool", idle(5, "a"), acquire("alice", "n"), "active:a"},
		{"made on demand", cmds(setPool(0, 5)), acquire("alice", "n"), "created:n"},
		{"released", join(idle(5, "a"), cmds(acquire("alice", "n"))), release("a", "alice"), "released:a"},
		{"timed out", join(idle(5, "a"), cmds(acquire("alice", "n"))),
			&SandboxRelease{ID: "a", Admin: true, Reason: "idle timeout"}, "timed_out:a:idle timeout"},
		{"failed with its cause", idle(5, "a"), &SandboxFailed{ID: "a", Reason: "container exited: OOMKilled"},
			"failed:a:container exited: OOMKilled"},
		{"removed", join(idle(5, "a"), cmds(&SandboxFailed{ID: "a"})), &SandboxRemoved{ID: "a"}, "removed:a"},
		{"session pause", join(idle(5, "a"), cmds(sessionCreate("s1", "alice", "x"))), pause("s1", "alice"), "paused:a"},
		{"resumed in place", join(idle(5, "a"), cmds(sessionCreate("s1", "alice", "x"), pause("s1", "alice"), resume("s1", "alice"))),
			&SandboxResumed{ID: "a"}, "resumed:a"},
		{"resumed elsewhere", join(idle(5, "a"), cmds(sessionCreate("s1", "alice", "x"), pause("s1", "alice"), resume("s1", "alice"))),
			&SandboxResumed{ID: "a", Moved: true, Placement: moved.Placement}, "moved:a resumed:a"},
		{"session deleted by its timer", join(idle(5, "a"), cmds(sessionCreate("s1", "alice", "x"))),
			&SessionDelete{ID: "s1", Admin: true, Reason: "max lifetime reached"}, "timed_out:a:max lifetime reached"},
		{"touch is not an event", join(idle(5, "a"), cmds(acquire("alice", "n"))), &SandboxTouch{IDs: []string{"a"}}, ""},
		{"refused command is not an event", idle(5, "a"), release("a", "mallory"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustApply(tc.setup...)
			before := h.index
			h.apply(tc.cmd)
			evs, _, complete := h.f.EventsAfter(before, maxEventSeq, 100)
			if !complete {
				t.Fatal("event log says events were dropped")
			}
			if got := eventLine(evs); got != tc.want {
				t.Errorf("events %q, want %q", got, tc.want)
			}
			for i, e := range evs {
				if e.Index != h.index || e.Seq != i || !e.Time.Equal(h.now) {
					t.Errorf("event %d: index %d seq %d time %v; want %d %d %v", i, e.Index, e.Seq, e.Time, h.index, i, h.now)
				}
			}
		})
	}
}

func TestEventsResumeAfterAnIDOnAnyCopy(t *testing.T) {
	h := newHarness(t)
	h.mustApply(join(idle(5, "a", "b"), cmds(acquire("alice", "n"), acquire("bob", "m")))...)
	all, _, _ := h.f.EventsAfter(0, 0, 1000)
	if got := eventLine(all); got != "created:a placed:a created:b placed:b active:a active:b" {
		t.Fatalf("events %q", got)
	}
	// A copy restored from a snapshot (another node) answers the same.
	other := New()
	if err := other.Restore(io.NopCloser(bytes.NewReader(persist(t, h.f)))); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*FSM{h.f, other} {
		index, seq, err := ParseEventID(all[2].ID)
		if err != nil {
			t.Fatal(err)
		}
		rest, _, complete := f.EventsAfter(index, seq, 1000)
		if got := eventLine(rest); !complete || got != "placed:b active:a active:b" {
			t.Errorf("after %s: %q (complete %v)", all[2].ID, got, complete)
		}
	}
}

func TestEventsLogIsBoundedAndSaysSo(t *testing.T) {
	h := newHarness(t)
	h.mustApply(setPool(0, maxEvents))
	for i := 0; i < maxEvents/2+10; i++ {
		id := "s" + strconv.Itoa(i)
		h.mustApply(create(id), &SandboxFailed{ID: id}, &SandboxRemoved{ID: id})
	}
	all, _, complete := h.f.EventsAfter(0, 0, 2*maxEvents)
	if complete {
		t.Error("a reader from the start was not told events were dropped")
	}
	if len(all) != maxEvents {
		t.Errorf("the log holds %d events, want %d", len(all), maxEvents)
	}
	last := all[len(all)-1]
	if _, _, complete := h.f.EventsAfter(last.Index-1, maxEventSeq, 10); !complete {
		t.Error("a reader that is only one entry behind was told events were dropped")
	}
}

func TestParseEventID(t *testing.T) {
	cases := []struct {
		in        string
		index     uint64
		seq       int
		wantError bool
	}{
		{"12-3", 12, 3, false},
		{"12", 12, maxEventSeq, false},
		{"x-1", 0, 0, true},
		{"12-", 0, 0, true},
		{"12--1", 0, 0, true},
	}
	for _, tc := range cases {
		index, seq, err := ParseEventID(tc.in)
		if (err != nil) != tc.wantError || index != tc.index || seq != tc.seq {
			t.Errorf("ParseEventID(%q) = %d, %d, %v", tc.in, index, seq, err)
		}
	}
}
