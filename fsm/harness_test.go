package fsm

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// t0 is the clock of every test command unless a case sets its own.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// harness applies commands to a fresh FSM the way raft does: encoded, with
// increasing log indexes.
type harness struct {
	t     testing.TB
	f     *FSM
	index uint64
	now   time.Time
}

func newHarness(t testing.TB) *harness {
	return &harness{t: t, f: New(), now: t0}
}

// apply encodes c, applies it at the next index and returns the response.
// A zero Header.Now is filled with h.now.
func (h *harness) apply(c Command) *Response {
	h.t.Helper()
	if Hdr(c).Now.IsZero() {
		Hdr(c).Now = h.now
	}
	b, err := Encode(c)
	if err != nil {
		h.t.Fatalf("encode %T: %v", c, err)
	}
	h.index++
	resp, ok := h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: b}).(*Response)
	if !ok || resp == nil {
		h.t.Fatalf("apply %T: response is %T, want *Response", c, resp)
	}
	if resp.Index != h.index && Hdr(c).RequestID == "" {
		h.t.Fatalf("apply %T: response index %d, want %d", c, resp.Index, h.index)
	}
	return resp
}

// mustApply applies c and fails the test on a business error.
func (h *harness) mustApply(cmds ...Command) *Response {
	h.t.Helper()
	var resp *Response
	for _, c := range cmds {
		resp = h.apply(c)
		if resp.Err != nil {
			h.t.Fatalf("apply %T: unexpected error %v", c, resp.Err)
		}
	}
	return resp
}

// state renders everything a user can read, to compare before and after.
func (h *harness) state() string {
	h.t.Helper()
	b, err := json.Marshal(struct {
		Sandboxes []*Sandbox
		Sessions  []*Session
		Pool      PoolConfig
		Stats     PoolStats
	}{h.f.Sandboxes(), h.f.Sessions(), h.f.Pool(), h.f.PoolStats()})
	if err != nil {
		h.t.Fatalf("marshal state: %v", err)
	}
	return string(b)
}

func (h *harness) sandbox(id string) *Sandbox {
	h.t.Helper()
	s, err := h.f.Sandbox(id)
	if err != nil {
		h.t.Fatalf("sandbox %s: %v", id, err)
	}
	return s
}

func (h *harness) session(id string) *Session {
	h.t.Helper()
	s, err := h.f.Session(id)
	if err != nil {
		h.t.Fatalf("session %s: %v", id, err)
	}
	return s
}

func (h *harness) gone(id string) bool {
	_, err := h.f.Sandbox(id)
	return errors.Is(err, ErrNotFound)
}

// applyCase is one command applied after setup. With wantErr set, the
// command must fail with that code and leave readable state unchanged.
type applyCase struct {
	name    string
	setup   []Command
	cmd     Command
	wantErr Code
	check   func(t *testing.T, h *harness, r *Response)
}

func runCases(t *testing.T, cases []applyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustApply(tc.setup...)
			before := h.state()
			h.now = t0.Add(time.Minute)
			r := h.apply(tc.cmd)
			switch {
			case tc.wantErr != "":
				if r.Err == nil || r.Err.Code != tc.wantErr {
					t.Fatalf("error = %v, want code %s", r.Err, tc.wantErr)
				}
				if r.Sandbox != nil || r.Session != nil {
					t.Errorf("failed command returned objects: %+v", r)
				}
				if after := h.state(); after != before {
					t.Errorf("state changed by a failed command:\nbefore %s\nafter  %s", before, after)
				}
			case r.Err != nil:
				t.Fatalf("unexpected error: %v", r.Err)
			}
			if tc.check != nil {
				tc.check(t, h, r)
			}
		})
	}
}

// Fixtures shared by the command tests. The pool image is "python".
var testResources = Resources{CPUCount: 1, MemoryMB: 512, DiskMB: 1024}

func setPool(minSize, maxSize int) *SetPool {
	return &SetPool{Pool: PoolConfig{MinSize: minSize, MaxSize: maxSize, Image: "python", Resources: testResources}}
}

func create(id string) *SandboxCreate { return &SandboxCreate{ID: id} }

func createImage(id, image string, network bool) *SandboxCreate {
	return &SandboxCreate{ID: id, Image: image, Network: network}
}

func placed(id string) *SandboxPlaced {
	return &SandboxPlaced{ID: id, Placement: Placement{Driver: "docker", Node: "n1", ContainerID: "c-" + id, AgentEndpoint: "unix:///run/" + id + ".sock"}}
}

func acquire(owner, newID string) *SandboxAcquire {
	return &SandboxAcquire{Owner: owner, NewID: newID}
}

func release(id, owner string) *SandboxRelease { return &SandboxRelease{ID: id, Owner: owner} }

// idle returns the setup for a configured pool with idle sandboxes ids.
func idle(maxSize int, ids ...string) []Command {
	cmds := []Command{setPool(0, maxSize)}
	for _, id := range ids {
		cmds = append(cmds, create(id), placed(id))
	}
	return cmds
}

func join(parts ...[]Command) []Command {
	var out []Command
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func cmds(c ...Command) []Command { return c }

func wantState(t *testing.T, h *harness, id string, want SandboxState) *Sandbox {
	t.Helper()
	s := h.sandbox(id)
	if s.State != want {
		t.Errorf("sandbox %s state = %s, want %s", id, s.State, want)
	}
	return s
}
