package controlnode

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// quotaKeys are the per-user keys of QUOTA_USERS, each setting one field.
var quotaKeys = map[string]func(q *fsm.Quota, v string) error{
	"sandboxes":          func(q *fsm.Quota, v string) error { return quotaInt(v, &q.MaxSandboxes) },
	"sessions":           func(q *fsm.Quota, v string) error { return quotaInt(v, &q.MaxSessions) },
	"cpu":                func(q *fsm.Quota, v string) error { return quotaFloat(v, &q.MaxCPU) },
	"memory_mb":          func(q *fsm.Quota, v string) error { return quotaInt64(v, &q.MaxMemoryMB) },
	"creates_per_minute": func(q *fsm.Quota, v string) error { return quotaInt(v, &q.CreatesPerMinute) },
}

// quotaFromEnv reads the default quota (QUOTA_MAX_SANDBOXES,
// QUOTA_MAX_SESSIONS, QUOTA_MAX_CPU, QUOTA_MAX_MEMORY_MB,
// QUOTA_CREATES_PER_MINUTE; 0 or unset: unlimited) and the per-user
// overrides of QUOTA_USERS. It returns nil when nobody is limited, so that
// the replicated pool then carries no quota at all. The leader replicates
// the result with SetPool at the start of its term, like the pool sizes.
func quotaFromEnv(getenv func(string) string) (*fsm.QuotaConfig, error) {
	var qc fsm.QuotaConfig
	for _, f := range []struct{ env, key string }{
		{"QUOTA_MAX_SANDBOXES", "sandboxes"},
		{"QUOTA_MAX_SESSIONS", "sessions"},
		{"QUOTA_MAX_CPU", "cpu"},
		{"QUOTA_MAX_MEMORY_MB", "memory_mb"},
		{"QUOTA_CREATES_PER_MINUTE", "creates_per_minute"},
	} {
		if v := strings.TrimSpace(getenv(f.env)); v != "" {
			if err := quotaKeys[f.key](&qc.Default, v); err != nil {
				return nil, fmt.Errorf("%s: %w", f.env, err)
			}
		}
	}
	users, err := parseQuotaUsers(getenv("QUOTA_USERS"), qc.Default)
	if err != nil {
		return nil, fmt.Errorf("QUOTA_USERS: %w", err)
	}
	qc.Users = users
	if qc.Default == (fsm.Quota{}) && len(qc.Users) == 0 {
		return nil, nil
	}
	return &qc, nil
}

// parseQuotaUsers reads "alice:sandboxes=10,cpu=8;bob:creates_per_minute=100;root:unlimited".
// A listed user starts from the default and changes only the keys named
// (0 clears that limit); "unlimited" clears every limit, e.g. for an
// operator's or an admin's account.
func parseQuotaUsers(s string, def fsm.Quota) (map[string]fsm.Quota, error) {
	users := map[string]fsm.Quota{}
	for _, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		user, spec, ok := strings.Cut(entry, ":")
		user, spec = strings.TrimSpace(user), strings.TrimSpace(spec)
		switch {
		case !ok || user == "" || spec == "":
			return nil, fmt.Errorf("entry %q: want user:key=value,... or user:unlimited", entry)
		case strings.ContainsAny(user, ",="):
			return nil, fmt.Errorf("entry %q: user %q contains ',' or '='", entry, user)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("user %q is listed twice", user)
		}
		if spec == "unlimited" {
			users[user] = fsm.Quota{}
			continue
		}
		q := def
		for _, kv := range strings.Split(spec, ",") {
			key, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			key = strings.TrimSpace(key)
			set, known := quotaKeys[key]
			switch {
			case !ok:
				return nil, fmt.Errorf("user %q: %q: want key=value", user, kv)
			case !known:
				return nil, fmt.Errorf("user %q: unknown key %q (want sandboxes, sessions, cpu, memory_mb or creates_per_minute)", user, key)
			}
			if err := set(&q, strings.TrimSpace(v)); err != nil {
				return nil, fmt.Errorf("user %q: %s: %w", user, key, err)
			}
		}
		users[user] = q
	}
	if len(users) == 0 {
		return nil, nil
	}
	return users, nil
}

func quotaInt(v string, dst *int) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a non-negative integer (0: unlimited)", v)
	}
	*dst = n
	return nil
}

func quotaInt64(v string, dst *int64) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a non-negative integer (0: unlimited)", v)
	}
	*dst = n
	return nil
}

func quotaFloat(v string, dst *float64) error {
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || n < 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return fmt.Errorf("%q is not a non-negative number (0: unlimited)", v)
	}
	*dst = n
	return nil
}
