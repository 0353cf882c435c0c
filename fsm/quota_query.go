package fsm

import (
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// QuotaUsage returns what counts against user's quota, with creates counted
// in the minute before now. The API passes its clock; Apply never calls this
// with anything but the command's Now.
func (f *FSM) QuotaUsage(user string, now time.Time) QuotaUsage {
	return usageOf(f.read(), user, now)
}

// Quota returns the quota that applies to user (zero: unlimited).
func (f *FSM) Quota(user string) Quota { return readPool(f.read()).Quota.For(user) }

// usageOf sums user's live sandboxes and open sessions through the owner
// indexes, and counts creates before now (a zero now skips that count).
func usageOf(txn *memdb.Txn, user string, now time.Time) QuotaUsage {
	var u QuotaUsage
	it, err := txn.Get(tableSandboxes, "owner", user)
	must(err)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		s := raw.(*Sandbox)
		if !s.Live() {
			continue
		}
		u.Sandboxes++
		u.CPU += s.Resources.CPUCount
		u.MemoryMB += s.Resources.MemoryMB
	}
	it, err = txn.Get(tableSessions, "owner", user)
	must(err)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if raw.(*Session).State != SessionDeleted {
			u.Sessions++
		}
	}
	if !now.IsZero() {
		u.CreatesLastMinute = len(readCreateLog(txn, user).recent(now))
	}
	return u
}

func readCreateLog(txn *memdb.Txn, user string) *createLog {
	raw, err := txn.First(tableQuotaCreates, "id", user)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*createLog)
}
