package agent

import "testing"

// The guard reads a cgroup's memory.stat under runc and /proc/meminfo
// under gVisor, which shows no cgroup.
func TestStatValue(t *testing.T) {
	const stat = "anon 1048576\nfile 4096\nanon_thp 0\n"
	const meminfo = "MemTotal:         262144 kB\nMemAvailable:     147536 kB\nAnonPages:        107436 kB\n"
	tests := []struct {
		name, doc, key string
		want           int64
		err            bool
	}{
		{"cgroup v2 anon", stat, "anon", 1 << 20, false},
		{"not a prefix match", stat, "anon_thp", 0, false},
		{"meminfo total in kB", meminfo, "MemTotal:", 262144 << 10, false},
		{"meminfo anon in kB", meminfo, "AnonPages:", 107436 << 10, false},
		{"missing key", meminfo, "Shmem:", 0, true},
		{"garbage value", "anon lots\n", "anon", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := statValue([]byte(tc.doc), "doc", tc.key)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("statValue(%q) = %d, %v; want %d, error %v", tc.key, got, err, tc.want, tc.err)
			}
		})
	}
}
