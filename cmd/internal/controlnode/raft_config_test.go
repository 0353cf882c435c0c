package controlnode

import (
	"strings"
	"testing"

	"github.com/cloud-sandbox/cloud-sandbox/cluster"
)

// TestLoadConfigRaftMultiplier: RAFT_MULTIPLIER and -raft-multiplier set the
// multiplier (the flag wins), the default is the cluster package's, and a
// value outside 1–10 or not a number stops start-up naming the variable.
func TestLoadConfigRaftMultiplier(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     string
		args    []string
		want    int
		wantErr string
	}{
		{name: "unset: the default", want: cluster.DefaultRaftMultiplier},
		{name: "env", env: "1", want: 1},
		{name: "flag wins over env", env: "1", args: []string{"-raft-multiplier", "10"}, want: 10},
		{name: "zero", env: "0", wantErr: "RAFT_MULTIPLIER"},
		{name: "above 10", args: []string{"-raft-multiplier", "11"}, wantErr: "want 1 to 10"},
		{name: "not a number", env: "fast", wantErr: "RAFT_MULTIPLIER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"LOG_LEVEL": "error", "RAFT_MULTIPLIER": tc.env}
			cfg, err := loadConfig(tc.args, func(k string) string { return env[k] }, Defaults{DataDir: t.TempDir()})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if cfg.RaftMultiplier != tc.want {
				t.Fatalf("RaftMultiplier = %d, want %d", cfg.RaftMultiplier, tc.want)
			}
		})
	}
}
