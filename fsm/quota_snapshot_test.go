package fsm

import (
	"reflect"
	"testing"
	"time"
)

// TestQuotaSnapshotRoundTrip: the quota configuration and every user's
// recent creates survive snapshot and restore, so a restored node refuses
// exactly what the others refuse.
func TestQuotaSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.mustApply(quotaPool(Quota{CreatesPerMinute: 2, MaxSandboxes: 10},
		map[string]Quota{"bob": {CreatesPerMinute: 1}}))
	h.mustApply(at(10*time.Second, acquire("alice", "a")), at(20*time.Second, acquire("alice", "b")),
		at(30*time.Second, sessionCreate("s1", "bob", "c")))

	data := persist(t, h.f)
	f := restore(t, data)
	if !f.Pool().Equal(h.f.Pool()) {
		t.Errorf("pool after restore = %+v, want %+v", f.Pool(), h.f.Pool())
	}
	for _, user := range []string{"alice", "bob", "carol"} {
		if got, want := f.QuotaUsage(user, t0.Add(time.Minute)), h.f.QuotaUsage(user, t0.Add(time.Minute)); got != want {
			t.Errorf("%s usage after restore = %+v, want %+v", user, got, want)
		}
		if got, want := readCreateLog(f.read(), user), readCreateLog(h.f.read(), user); !reflect.DeepEqual(got, want) {
			t.Errorf("%s creates after restore = %+v, want %+v", user, got, want)
		}
	}
	if again := persist(t, f); string(again) != string(data) {
		t.Errorf("persist after restore differs:\n%s\n%s", again, data)
	}

	// The restored node refuses and admits exactly as the original.
	h2 := &harness{t: t, f: f, index: f.AppliedIndex(), now: t0.Add(time.Minute)}
	r := h2.apply(acquire("alice", "d"))
	if r.Err == nil || r.Err.Limit != LimitCreatesPerMinute || r.Err.RetryAfter != 10 {
		t.Errorf("acquire after restore = %v, want creates_per_minute refusal with retry-after 10", r.Err)
	}
	h2.now = t0.Add(time.Minute + 10*time.Second)
	h2.mustApply(acquire("alice", "d"))
}
