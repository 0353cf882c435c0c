package placement

import (
	"context"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// Expiry works as Consul's session TTL timers do: each object's next
// deadline is a timer on the work queue, set again whenever the object
// changes (activity moves an idle deadline), and checked against the state
// when it fires, so an early or repeated timer costs a read and nothing else.

// enforceLifetime releases an owned sandbox past its lifetime or (while
// active) its idle timeout, or sets a timer for the earlier of the two.
// Session sandboxes expire through their session.
func (r *Reconciler) enforceLifetime(ctx context.Context, sb *fsm.Sandbox) {
	if sb.Owner == "" || sb.SessionID != "" {
		return
	}
	var deadlines []deadline
	if !sb.ExpiresAt.IsZero() {
		deadlines = append(deadlines, deadline{sb.ExpiresAt, "lifetime expired"})
	}
	// A paused sandbox is not idle: only its lifetime runs on.
	if sb.IdleTimeout > 0 && sb.State == fsm.StateActive {
		deadlines = append(deadlines, deadline{sb.LastActiveAt.Add(sb.IdleTimeout), "idle timeout"})
	}
	reason, wait := r.due(deadlines)
	if reason == "" {
		if wait > 0 {
			r.q.addAfter(sandboxKey(sb.ID), wait)
		}
		return
	}
	r.log.Info("releasing sandbox", "sandbox.id", sb.ID, "owner", sb.Owner, "reason", reason)
	r.submit(ctx, withID(&fsm.SandboxRelease{ID: sb.ID, Admin: true, Reason: reason}, requestID("release", sb.ID, "")))
}

// syncSession deletes a session past its maximum lifetime or idle timeout,
// or sets a timer for the earlier of the two. A session is active when it
// or its sandbox last was.
func (r *Reconciler) syncSession(ctx context.Context, id string) {
	s, err := r.state.Session(id)
	if err != nil || s.State == fsm.SessionDeleted {
		return
	}
	var deadlines []deadline
	if s.MaxLifetime > 0 {
		deadlines = append(deadlines, deadline{s.CreatedAt.Add(s.MaxLifetime), "max lifetime reached"})
	}
	if s.State == fsm.SessionActive && s.IdleTimeout > 0 {
		last := s.LastActiveAt
		if s.SandboxID != "" {
			if sb, err := r.state.Sandbox(s.SandboxID); err == nil && sb.SessionID == s.ID && sb.LastActiveAt.After(last) {
				last = sb.LastActiveAt
			}
		}
		deadlines = append(deadlines, deadline{last.Add(s.IdleTimeout), "idle timeout"})
	}
	reason, wait := r.due(deadlines)
	if reason == "" {
		if wait > 0 {
			r.q.addAfter(sessionKey(id), wait)
		}
		return
	}
	r.log.Info("deleting session", "session.id", s.ID, "owner", s.Owner, "reason", reason)
	r.submit(ctx, withID(&fsm.SessionDelete{ID: s.ID, Admin: true, Reason: reason}, requestID("session-delete", s.ID, "")))
}

// deadline is a moment after which an object expires, and why.
type deadline struct {
	at     time.Time
	reason string
}

// due returns the reason of the first deadline passed, or, when none has,
// how long until the earliest (0: there is none).
func (r *Reconciler) due(ds []deadline) (reason string, wait time.Duration) {
	now := r.clock.Now()
	for _, d := range ds {
		if !now.Before(d.at) {
			return d.reason, 0
		}
		if left := d.at.Sub(now); wait == 0 || left < wait {
			wait = left
		}
	}
	return "", wait
}
