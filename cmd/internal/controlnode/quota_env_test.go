package controlnode

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

func TestQuotaFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    *fsm.QuotaConfig
		wantErr string
	}{
		{name: "nothing set: nobody is limited", env: nil, want: nil},
		{name: "zeros are unlimited", env: map[string]string{"QUOTA_MAX_SANDBOXES": "0"}, want: nil},
		{name: "defaults", env: map[string]string{
			"QUOTA_MAX_SANDBOXES": "5", "QUOTA_MAX_SESSIONS": "3", "QUOTA_MAX_CPU": "8.5",
			"QUOTA_MAX_MEMORY_MB": "16384", "QUOTA_CREATES_PER_MINUTE": "30"},
			want: &fsm.QuotaConfig{Default: fsm.Quota{MaxSandboxes: 5, MaxSessions: 3, MaxCPU: 8.5, MaxMemoryMB: 16384, CreatesPerMinute: 30}}},
		{name: "users start from the default", env: map[string]string{
			"QUOTA_MAX_SANDBOXES": "5", "QUOTA_CREATES_PER_MINUTE": "30",
			"QUOTA_USERS": " alice: sandboxes=10, cpu=8 ; bob:creates_per_minute=100;root:unlimited;carol:sandboxes=0;"},
			want: &fsm.QuotaConfig{Default: fsm.Quota{MaxSandboxes: 5, CreatesPerMinute: 30}, Users: map[string]fsm.Quota{
				"alice": {MaxSandboxes: 10, MaxCPU: 8, CreatesPerMinute: 30},
				"bob":   {MaxSandboxes: 5, CreatesPerMinute: 100},
				"root":  {},
				"carol": {CreatesPerMinute: 30},
			}}},
		{name: "users without a default", env: map[string]string{"QUOTA_USERS": "bob:sessions=1"},
			want: &fsm.QuotaConfig{Users: map[string]fsm.Quota{"bob": {MaxSessions: 1}}}},
		{name: "negative default", env: map[string]string{"QUOTA_MAX_CPU": "-1"}, wantErr: "QUOTA_MAX_CPU"},
		{name: "not a number", env: map[string]string{"QUOTA_MAX_SANDBOXES": "ten"}, wantErr: "QUOTA_MAX_SANDBOXES"},
		{name: "unknown key", env: map[string]string{"QUOTA_USERS": "alice:gpus=1"}, wantErr: `unknown key "gpus"`},
		{name: "no colon", env: map[string]string{"QUOTA_USERS": "alice"}, wantErr: "want user:key=value"},
		{name: "no value", env: map[string]string{"QUOTA_USERS": "alice:sandboxes"}, wantErr: "want key=value"},
		{name: "bad value", env: map[string]string{"QUOTA_USERS": "alice:cpu=lots"}, wantErr: `user "alice": cpu`},
		{name: "listed twice", env: map[string]string{"QUOTA_USERS": "alice:cpu=1;alice:cpu=2"}, wantErr: "listed twice"},
		{name: "comma instead of semicolon", env: map[string]string{"QUOTA_USERS": "alice:cpu=1,bob:cpu=2"}, wantErr: "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := quotaFromEnv(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("quota = %+v, want %+v", got, tc.want)
			}
		})
	}
}
