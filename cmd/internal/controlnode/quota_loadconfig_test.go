package controlnode

import (
	"strings"
	"testing"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// TestLoadConfigQuota: the quota variables reach the pool configuration the
// leader replicates, and a bad one stops start-up with the variable named.
func TestLoadConfigQuota(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    *fsm.QuotaConfig
		wantErr string
	}{
		{name: "unset: no quota", env: map[string]string{}, want: nil},
		{name: "default and a user", env: map[string]string{"QUOTA_MAX_SANDBOXES": "4", "QUOTA_USERS": "ops:unlimited"},
			want: &fsm.QuotaConfig{Default: fsm.Quota{MaxSandboxes: 4}, Users: map[string]fsm.Quota{"ops": {}}}},
		{name: "bad user entry", env: map[string]string{"QUOTA_USERS": "alice:gpus=1"}, wantErr: "QUOTA_USERS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["LOG_LEVEL"] = "error"
			cfg, err := loadConfig(nil, func(k string) string { return tc.env[k] }, Defaults{DataDir: t.TempDir()})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.want.Equal(cfg.Pool.Quota) || (tc.want == nil) != (cfg.Pool.Quota == nil) {
				t.Errorf("pool quota = %+v, want %+v", cfg.Pool.Quota, tc.want)
			}
		})
	}
}
