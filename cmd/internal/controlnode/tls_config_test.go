package controlnode

import (
	"testing"
)

// A cluster port reachable off loopback needs TLS in production mode; in
// development it only warns. The three TLS files go together.
func TestTLSConfigAtStartup(t *testing.T) {
	prod := map[string]string{"SANDBOX_MODE": "production"}
	tlsFiles := map[string]string{"TLS_CA_FILE": "ca.pem", "TLS_CERT_FILE": "n1.pem", "TLS_KEY_FILE": "n1-key.pem"}
	cases := []struct {
		name    string
		env     []map[string]string
		args    []string
		wantErr []string // every one in the error; none: accepted
		warn    bool
	}{
		{name: "default loopback, development", env: nil},
		{name: "default loopback, production", env: []map[string]string{prod}},
		{name: "loopback peers, production", env: []map[string]string{prod,
			{"PEERS": "n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=localhost:7003", "NODE_ID": "n1", "RAFT_ADDR": "127.0.0.1:7001"}}},
		{name: "all interfaces, development", env: []map[string]string{{"RAFT_ADDR": ":7000", "RAFT_ADVERTISE": "127.0.0.1:7000"}}, warn: true},
		{name: "all interfaces, production", env: []map[string]string{prod, {"RAFT_ADDR": "0.0.0.0:7000", "RAFT_ADVERTISE": "127.0.0.1:7000"}},
			wantErr: []string{"RAFT_ADDR 0.0.0.0:7000", "TLS_CA_FILE", "sandboxd tls ca create", "SANDBOX_MODE=production"}},
		{name: "advertised name, production", env: []map[string]string{prod, {"RAFT_ADVERTISE": "sandboxd-0.sandboxd:7000"}},
			wantErr: []string{"RAFT_ADVERTISE sandboxd-0.sandboxd:7000", "SANDBOX_MODE=production"}},
		{name: "remote peers, production", env: []map[string]string{prod, {"PEERS": "n1=127.0.0.1:7000,n2=10.0.0.2:7000", "NODE_ID": "n1"}},
			wantErr: []string{"PEERS 10.0.0.2:7000"}},
		{name: "remote join, production", env: []map[string]string{prod, {"JOIN": "10.0.0.2:7000"}},
			wantErr: []string{"JOIN 10.0.0.2:7000"}},
		{name: "remote peers with TLS, production", env: []map[string]string{prod, tlsFiles,
			{"RAFT_ADDR": "0.0.0.0:7000", "RAFT_ADVERTISE": "10.0.0.1:7000", "PEERS": "n1=10.0.0.1:7000,n2=10.0.0.2:7000", "NODE_ID": "n1"}}},
		{name: "TLS by flags, production", env: []map[string]string{prod, {"RAFT_ADDR": "10.0.0.1:7000"}},
			args: []string{"-tls-ca", "ca.pem", "-tls-cert", "n1.pem", "-tls-key", "n1-key.pem"}},
		{name: "TLS files incomplete", env: []map[string]string{{"TLS_CA_FILE": "ca.pem", "TLS_CERT_FILE": "n1.pem"}},
			wantErr: []string{"set all three or none"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"LOG_LEVEL": "error"}
			for _, m := range tc.env {
				for k, v := range m {
					env[k] = v
				}
			}
			cfg, err := loadConfig(tc.args, func(k string) string { return env[k] }, Defaults{DataDir: t.TempDir()})
			if loaded(t, err, tc.wantErr) {
				if got := cfg.tlsWarning != ""; got != tc.warn {
					t.Errorf("warning %q, want one: %v", cfg.tlsWarning, tc.warn)
				}
			}
		})
	}
}
