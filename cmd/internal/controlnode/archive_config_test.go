package controlnode

import (
	"testing"
)

// A Nomad control node that could not pause, or whose archives another
// node could not resume, is refused at start-up with the variables to set.
func TestArchiveConfigAtStartup(t *testing.T) {
	nomad := map[string]string{"PLACEMENT_DRIVER": "nomad", "NOMAD_ADDR": "http://127.0.0.1:4646"}
	dir := map[string]string{"SANDBOX_ARCHIVE_DIR": "/var/lib/cloud-sandbox/archives"}
	s3 := map[string]string{"MINIO_ENDPOINT": "127.0.0.1:9000", "MINIO_ACCESS_KEY": "ak", "MINIO_SECRET_KEY": "sk"}
	peers := map[string]string{"PEERS": "n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003", "NODE_ID": "n1"}
	prod := map[string]string{"SANDBOX_MODE": "production"}
	cases := []struct {
		name    string
		env     []map[string]string
		wantErr []string // every one in the error; none: accepted
		warn    bool
	}{
		{name: "docker needs no archive store", env: nil},
		{name: "nomad with neither", env: []map[string]string{nomad},
			wantErr: []string{"SANDBOX_ARCHIVE_DIR", "MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"}},
		{name: "nomad, one node, dir", env: []map[string]string{nomad, dir}},
		{name: "nomad, one node, dir, production", env: []map[string]string{nomad, dir, prod}},
		{name: "nomad, peers, dir, development", env: []map[string]string{nomad, dir, peers}, warn: true},
		{name: "nomad, peers, dir, production", env: []map[string]string{nomad, dir, peers, prod},
			wantErr: []string{"SANDBOX_ARCHIVE_DIR", "MINIO_ENDPOINT", "SANDBOX_MODE=production"}},
		{name: "nomad, join, dir, production", env: []map[string]string{nomad, dir, prod, {"JOIN": "127.0.0.1:7001"}},
			wantErr: []string{"cannot be resumed by another node"}},
		{name: "nomad, consul, dir, production", env: []map[string]string{nomad, dir, prod, {"CONSUL_HTTP_ADDR": "127.0.0.1:8500"}},
			wantErr: []string{"cannot be resumed by another node"}},
		{name: "nomad, peers, s3, production", env: []map[string]string{nomad, s3, peers, prod}},
		{name: "nomad, s3 without keys", env: []map[string]string{nomad, {"MINIO_ENDPOINT": "127.0.0.1:9000"}},
			wantErr: []string{"MINIO_ACCESS_KEY and MINIO_SECRET_KEY are required"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"LOG_LEVEL": "error"}
			for _, m := range tc.env {
				for k, v := range m {
					env[k] = v
				}
			}
			cfg, err := loadConfig(nil, func(k string) string { return env[k] }, Defaults{DataDir: t.TempDir()})
			if loaded(t, err, tc.wantErr) {
				if got := cfg.archiveWarning != ""; got != tc.warn {
					t.Errorf("warning %q, want one: %v", cfg.archiveWarning, tc.warn)
				}
			}
		})
	}
}
