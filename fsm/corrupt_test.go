package fsm

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"
)

// An entry that cannot be decoded is skipped the same way on every node:
// no panic, state unchanged, the applied index moves on, the response says
// invalid, and the entries after it apply normally.
func TestApplySkipsCorruptEntry(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty entry", nil},
		{"unknown type", []byte{99, '{', '}'}},
		{"bad json", []byte{byte(TypeSandboxCreate), '{'}},
		{"wrong json shape", []byte{byte(TypeSetPool), '[', '1', ']'}},
		{"known type with ignore flag but bad json", []byte{byte(TypeSandboxCreate | IgnoreUnknownTypeFlag), 'x'}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.f.log = slog.New(slog.NewTextHandler(io.Discard, nil))
			h.mustApply(&SetPool{Pool: PoolConfig{MaxSize: 5, Image: "img"}})
			before := h.state()
			watch := h.f.Watch()

			h.index++
			var r any
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("Apply of a corrupt entry panicked: %v", p)
					}
				}()
				r = h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: tc.data})
			}()
			resp, ok := r.(*Response)
			if !ok || resp.Index != h.index || !errors.Is(resp.Error(), ErrInvalid) {
				t.Fatalf("response = %#v, want *Response at index %d with an invalid error", r, h.index)
			}
			if got := h.f.AppliedIndex(); got != h.index {
				t.Errorf("applied index = %d, want %d", got, h.index)
			}
			if got := h.f.CorruptEntries(); got != 1 {
				t.Errorf("CorruptEntries = %d, want 1", got)
			}
			if got := h.state(); got != before {
				t.Errorf("state changed by a corrupt entry:\n got %s\nwant %s", got, before)
			}
			select {
			case <-watch:
			default:
				t.Error("watch channel not closed by the skipped entry")
			}

			if resp := h.mustApply(&SandboxCreate{ID: "after"}); resp.Sandbox == nil || resp.Sandbox.ID != "after" {
				t.Fatalf("command after the corrupt entry: %+v", resp)
			}
		})
	}
}
