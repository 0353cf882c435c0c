package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// errNotReady means a sandbox created on demand was still pending when the
// ready timeout ran out.
var errNotReady = errors.New("sandbox not ready in time")

// errPlacementLost marks a sandbox that will never become active: it failed,
// or was released or removed while starting. Trying again needs a new one.
var errPlacementLost = errors.New("sandbox placement lost")

// placementAttempts bounds how many sandboxes one acquire or session create
// may go through when placements are lost (a node crash mid-create, say).
const placementAttempts = 3

// retryRequestID derives the request ID of the next attempt after the
// sandbox lost was lost. It is a function of the client's key and of what
// happened, so a client retrying with the same Idempotency-Key walks the
// same chain of attempts and still gets exactly one sandbox.
func retryRequestID(reqID, lost string) string {
	if reqID == "" {
		return ""
	}
	return reqID + ":after:" + lost
}

// waitApplied returns once the local FSM has applied index, so a read after
// our own write on a follower sees that write.
func (s *Server) waitApplied(ctx context.Context, index uint64) error {
	for {
		ch := s.state.Watch()
		if s.state.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d: %w", index, ctx.Err())
		}
	}
}

// waitActive waits, at most ReadyTimeout, for sandbox id to be placed. It
// returns the sandbox once it is active (or paused), a 503 carrying the
// placement failure, or errNotReady on timeout.
func (s *Server) waitActive(ctx context.Context, id string, index uint64) (*fsm.Sandbox, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	if err := s.waitApplied(ctx, index); err != nil {
		return nil, s.notReady(ctx, err)
	}
	for {
		sb, wait := s.watchSandbox(id)
		if sb == nil {
			return nil, errUnavailable("sandbox was removed while starting", errors.Join(errPlacementLost, fsm.ErrNotFound))
		}
		switch sb.State {
		case fsm.StateActive, fsm.StatePaused:
			return sb, nil
		case fsm.StateFailed:
			logFrom(ctx).Warn("sandbox placement failed", "sandbox.id", sb.ID, "image", sb.Image, "reason", sb.FailReason)
			return nil, &Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable,
				Msg: s.placementFailedMsg(sb.FailReason), RetryAfter: 5, Err: errPlacementLost}
		case fsm.StateTerminating:
			return nil, errUnavailable("sandbox was released while starting", errPlacementLost)
		}
		if !wait(ctx) {
			return sb, s.notReady(ctx, ctx.Err())
		}
	}
}

// waitResumed waits, at most ReadyTimeout, while sandbox id is resuming,
// and returns it as it then is. A resume is answered only once the agent
// runs where the state says, so a client never reaches the old placement.
func (s *Server) waitResumed(ctx context.Context, id string) (*fsm.Sandbox, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	for {
		sb, wait := s.watchSandbox(id)
		if sb == nil {
			return s.state.Sandbox(id) // gone: its not-found error
		}
		if sb.State != fsm.StateResuming {
			return sb, nil
		}
		if !wait(ctx) {
			return nil, &Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable,
				Msg: "sandbox is still resuming; try again", RetryAfter: 2, Err: errNotReady}
		}
	}
}

// sandboxWatcher is what *fsm.FSM offers to wait on one sandbox: waiters
// wake when that sandbox changes, not at every apply in the cluster.
type sandboxWatcher interface {
	WatchSandbox(id string) (*fsm.Sandbox, fsm.ObjectWatch)
}

// watchSandbox returns the sandbox (nil when there is none) and a wait that
// returns true once it may have changed, false when ctx is done. A state
// without per-object watches falls back to the global one.
func (s *Server) watchSandbox(id string) (*fsm.Sandbox, func(context.Context) bool) {
	if w, ok := s.state.(sandboxWatcher); ok {
		sb, watch := w.WatchSandbox(id)
		return sb, watch.Wait
	}
	ch := s.state.Watch()
	sb, _ := s.state.Sandbox(id)
	return sb, func(ctx context.Context) bool {
		select {
		case <-ch:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

func (s *Server) notReady(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return errNotReady
	}
	return err
}
