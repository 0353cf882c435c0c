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
		ch := s.state.Watch()
		sb, err := s.state.Sandbox(id)
		if err != nil {
			return nil, errUnavailable("sandbox was removed while starting", err)
		}
		switch sb.State {
		case fsm.StateActive, fsm.StatePaused:
			return sb, nil
		case fsm.StateFailed:
			return nil, &Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable,
				Msg: "sandbox placement failed: " + sb.FailReason, RetryAfter: 5}
		case fsm.StateTerminating:
			return nil, errUnavailable("sandbox was released while starting", nil)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return sb, s.notReady(ctx, ctx.Err())
		}
	}
}

func (s *Server) notReady(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return errNotReady
	}
	return err
}
