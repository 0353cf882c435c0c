package fsm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

// Every command type round-trips through Encode/Decode and has an apply function.
func TestEveryCommandEncodesAndApplies(t *testing.T) {
	for ty := CommandType(1); ty < IgnoreUnknownTypeFlag; ty++ {
		c := newCommand(ty)
		if c == nil {
			continue
		}
		t.Run(fmt.Sprintf("%T", c), func(t *testing.T) {
			Hdr(c).RequestID = "req"
			Hdr(c).Now = t0
			b, err := Encode(c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("decoded %+v, want %+v", got, c)
			}
			if _, ok := appliers[ty]; !ok {
				t.Errorf("no apply function for type %d", ty)
			}
		})
	}
}

// Corrupt entries are skipped, not panicked on: corrupt_test.go.

func TestApplyIgnoresFlaggedUnknownType(t *testing.T) {
	f := New(WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	watch := f.Watch()
	r := f.Apply(&raft.Log{Index: 7, Data: []byte{byte(IgnoreUnknownTypeFlag | 99), '{', '}'}})
	resp, ok := r.(*Response)
	if !ok || resp.Err != nil || resp.Index != 7 {
		t.Fatalf("response = %#v, want an empty *Response at index 7", r)
	}
	if f.AppliedIndex() != 7 {
		t.Errorf("applied index = %d, want 7", f.AppliedIndex())
	}
	select {
	case <-watch:
	default:
		t.Error("watch channel not closed by the skipped entry")
	}
}

func TestDecodeErrors(t *testing.T) {
	if _, err := Decode([]byte{99}); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("unknown type: err = %v, want ErrUnknownCommand", err)
	}
	// A known type with the ignore flag decodes as that type.
	b, _ := Encode(&SandboxRemoved{Header: Header{Now: t0}, ID: "a"})
	b[0] |= byte(IgnoreUnknownTypeFlag)
	c, err := Decode(b)
	if rm, ok := c.(*SandboxRemoved); err != nil || !ok || rm.ID != "a" {
		t.Errorf("flagged known type: %#v, %v", c, err)
	}
}

func TestErrorsIs(t *testing.T) {
	h := newHarness(t)
	r := h.apply(release("nope", "alice"))
	if !errors.Is(r.Error(), ErrNotFound) || errors.Is(r.Error(), ErrConflict) {
		t.Errorf("errors.Is mismatch for %v", r.Error())
	}
	if _, err := h.f.Sandbox("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Sandbox(unknown) err = %v, want ErrNotFound", err)
	}
	if _, err := h.f.Session("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Session(unknown) err = %v, want ErrNotFound", err)
	}
}
