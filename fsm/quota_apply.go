package fsm

import (
	"math"
	"time"
)

// admitCreate is the quota check of a create by owner (an acquire, or a
// session create when session is set) that would add one live sandbox of
// res. On success it records the create for the rate limit; on refusal the
// caller returns the error and the transaction is dropped. Only user
// commands call it: the warmer's SandboxCreate and admin commands are never
// limited.
func (t *tx) admitCreate(owner string, res Resources, session bool) *Error {
	q := t.pool().Quota.For(owner)
	if q == (Quota{}) {
		return nil
	}
	u := usageOf(t.txn, owner, time.Time{})
	switch {
	case q.MaxSandboxes > 0 && u.Sandboxes+1 > q.MaxSandboxes:
		return quotaError(LimitSandboxes, concurrencyRetryAfter,
			"%s already has %d of %d live sandboxes", owner, u.Sandboxes, q.MaxSandboxes)
	case session && q.MaxSessions > 0 && u.Sessions+1 > q.MaxSessions:
		return quotaError(LimitSessions, concurrencyRetryAfter,
			"%s already has %d of %d sessions", owner, u.Sessions, q.MaxSessions)
	case q.MaxCPU > 0 && u.CPU+res.CPUCount > q.MaxCPU+1e-9:
		return quotaError(LimitCPU, concurrencyRetryAfter,
			"%s uses %g of %g vCPU and asks for %g more", owner, u.CPU, q.MaxCPU, res.CPUCount)
	case q.MaxMemoryMB > 0 && u.MemoryMB+res.MemoryMB > q.MaxMemoryMB:
		return quotaError(LimitMemoryMB, concurrencyRetryAfter,
			"%s uses %d of %d MB and asks for %d more", owner, u.MemoryMB, q.MaxMemoryMB, res.MemoryMB)
	}
	return t.recordCreate(owner, q.CreatesPerMinute)
}

// recordCreate admits a create under a limit of perMinute (0: unlimited) in
// the sliding minute before t.now, and records it. Only the last perMinute
// times are kept: that is all the check ever needs.
func (t *tx) recordCreate(owner string, perMinute int) *Error {
	recent := t.createLog(owner).recent(t.now)
	if perMinute > 0 && len(recent) >= perMinute {
		oldest := recent[len(recent)-perMinute]
		wait := oldest.Add(quotaWindow).Sub(t.now)
		return quotaError(LimitCreatesPerMinute, max(1, int(math.Ceil(wait.Seconds()))),
			"%s made %d creates in the last minute (limit %d)", owner, len(recent), perMinute)
	}
	keep := perMinute
	if keep <= 0 {
		keep = untrackedCreates
	}
	times := append(append(make([]time.Time, 0, len(recent)+1), recent...), t.now)
	if len(times) > keep {
		times = times[len(times)-keep:]
	}
	must(t.txn.Insert(tableQuotaCreates, &createLog{User: owner, Times: times}))
	return nil
}

func (t *tx) createLog(owner string) *createLog { return readCreateLog(t.txn, owner) }

// quotaError names the limit first, so that the message a user reads says
// which quota refused them.
func quotaError(limit string, retryAfter int, format string, args ...any) *Error {
	e := errorf(CodeQuotaExceeded, "quota exceeded ("+limit+"): "+format, args...)
	e.Limit = limit
	e.RetryAfter = retryAfter
	return e
}
