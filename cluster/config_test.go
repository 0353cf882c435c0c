package cluster

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config { return Config{ID: "n1", DataDir: "/tmp/x", BindAddr: "127.0.0.1:0"} }
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		wantErr string // substring; "" means valid
	}{
		{"defaults are valid", func(*Config) {}, ""},
		{"static peers including self", func(c *Config) {
			c.Peers = []Peer{{"n1", "127.0.0.1:7001"}, {"n2", "127.0.0.1:7002"}}
		}, ""},
		{"missing id", func(c *Config) { c.ID = "" }, "ID is required"},
		{"missing data dir", func(c *Config) { c.DataDir = "" }, "DataDir is required"},
		{"missing bind address", func(c *Config) { c.BindAddr = "" }, "BindAddr is required"},
		{"lease longer than heartbeat", func(c *Config) {
			c.HeartbeatTimeout, c.LeaderLeaseTimeout = 100*time.Millisecond, 200*time.Millisecond
		}, "LeaderLeaseTimeout"},
		{"negative apply timeout", func(c *Config) { c.ApplyTimeout = -time.Second }, "ApplyTimeout must be positive"},
		{"peers without self", func(c *Config) { c.Peers = []Peer{{"n2", "127.0.0.1:7002"}} }, "must include this node"},
		{"duplicate peer id", func(c *Config) {
			c.Peers = []Peer{{"n1", "127.0.0.1:7001"}, {"n1", "127.0.0.1:7002"}}
		}, "listed twice"},
		{"peer without address", func(c *Config) { c.Peers = []Peer{{"n1", ""}} }, "ID and Addr are required"},
		{"bootstrap and peers", func(c *Config) {
			c.Bootstrap = true
			c.Peers = []Peer{{"n1", "127.0.0.1:7001"}}
		}, "exclusive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	// The failover promise (a new leader within 2 s on loopback) rests on
	// these; see DESIGN.md.
	if c.HeartbeatTimeout != 500*time.Millisecond || c.ElectionTimeout != 500*time.Millisecond ||
		c.LeaderLeaseTimeout != 250*time.Millisecond {
		t.Fatalf("timeouts = heartbeat %s election %s lease %s", c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout)
	}
	if c.SnapshotThreshold != 8192 || c.TrailingLogs != 10240 {
		t.Fatalf("snapshot threshold %d trailing logs %d", c.SnapshotThreshold, c.TrailingLogs)
	}
	if c.Logger == nil || c.ApplyTimeout <= 0 || c.JoinAttempts <= 0 {
		t.Fatalf("defaults missing: %+v", c)
	}
}

func TestOpenAdvertiseAddress(t *testing.T) {
	if _, err := Open(Config{ID: "n1", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", Bootstrap: true}, nil); err == nil {
		t.Fatal("Open with a nil FSM succeeded")
	}
	named := freeAddr(t)
	_, port, _ := strings.Cut(named, ":")
	for _, tc := range []struct {
		name      string
		bind, adv string
		wantAddr  string // "" means Open must fail
	}{
		{"wildcard bind without advertise", "0.0.0.0:0", "", ""},
		{"wildcard advertise", "127.0.0.1:0", "0.0.0.0:7000", ""},
		{"advertise without port", "127.0.0.1:0", "node1", ""},
		{"DNS name is kept as given", named, "localhost:" + port, "localhost:" + port},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := Open(Config{ID: "n1", DataDir: t.TempDir(), BindAddr: tc.bind, AdvertiseAddr: tc.adv,
				Bootstrap: true, Logger: testLogger()}, fsmForTest())
			if tc.wantAddr == "" {
				if err == nil {
					_ = n.Close()
					t.Fatalf("Open(bind %q, advertise %q) succeeded, want an error", tc.bind, tc.adv)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = n.Close() })
			if n.Addr() != tc.wantAddr {
				t.Fatalf("Addr() = %q, want %q", n.Addr(), tc.wantAddr)
			}
			if err := n.WaitForLeader(testCtx(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := n.Apply(testCtx(t, 10*time.Second), setPool(1)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
