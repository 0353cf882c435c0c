package placement

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// requestID is the request ID of a command the reconciler proposes: the step,
// the sandbox (or session) and what makes this step unique, so the same
// decision always carries the same ID, on every leader. The FSM applies it
// once and answers a retry with the first response. It never contains ':',
// which every API request ID does, so the two cannot collide.
func requestID(step, id, unique string) string {
	return "reconciler/" + step + "/" + id + "/" + unique
}

// withID sets cmd's request ID and returns it.
func withID[C fsm.Command](cmd C, id string) C {
	fsm.Hdr(cmd).RequestID = id
	return cmd
}

// submit applies a command whose failure is only worth a log line: the next
// pass tries again.
func (r *Reconciler) submit(ctx context.Context, cmd fsm.Command) {
	if _, err := r.apply.Apply(ctx, cmd); err != nil && ctx.Err() == nil {
		r.log.Debug("submit", "type", cmd.Type(), "err", err)
	}
}

// applyRetry applies a result the FSM must learn, retrying transient cluster
// errors with a bounded backoff. FSM business errors are returned at once.
func (r *Reconciler) applyRetry(ctx context.Context, cmd fsm.Command) (*fsm.Response, error) {
	var resp *fsm.Response
	err := retry(ctx, 8, func() error {
		var err error
		resp, err = r.apply.Apply(ctx, cmd)
		var fe *fsm.Error
		if errors.As(err, &fe) {
			return permanent{err}
		}
		return err
	})
	var p permanent
	if errors.As(err, &p) {
		return resp, p.err
	}
	return resp, err
}

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

// retry calls fn up to attempts times with exponential backoff from 50 ms,
// stopping early on success, a permanent error, or ctx.
func retry(ctx context.Context, attempts int, fn func() error) error {
	delay := 50 * time.Millisecond
	var err error
	for i := 0; i < attempts; i++ {
		if err = fn(); err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		if delay < 2*time.Second {
			delay *= 2
		}
	}
	return err
}

// NewID returns a random 16-hex-character id.
func NewID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

func shortID(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
