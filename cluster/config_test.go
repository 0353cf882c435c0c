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
		{"raft multiplier 1", func(c *Config) { c.RaftMultiplier = 1 }, ""},
		{"raft multiplier 10", func(c *Config) { c.RaftMultiplier = MaxRaftMultiplier }, ""},
		{"raft multiplier 11", func(c *Config) { c.RaftMultiplier = 11 }, "RaftMultiplier must be 1–10"},
		{"negative raft multiplier", func(c *Config) { c.RaftMultiplier = -1 }, "RaftMultiplier must be 1–10"},
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
	// The failover promise (writes back within 1 s median after a leader
	// dies, BenchmarkLeaderKill) rests on these; see DESIGN.md.
	if c.RaftMultiplier != 3 || c.HeartbeatTimeout != 450*time.Millisecond || c.ElectionTimeout != 450*time.Millisecond ||
		c.LeaderLeaseTimeout != 225*time.Millisecond || c.CommitTimeout != 30*time.Millisecond {
		t.Fatalf("timeouts = multiplier %d heartbeat %s election %s lease %s commit %s", c.RaftMultiplier,
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout)
	}
	if c.SnapshotThreshold != 8192 || c.TrailingLogs != 10240 {
		t.Fatalf("snapshot threshold %d trailing logs %d", c.SnapshotThreshold, c.TrailingLogs)
	}
	if c.Logger == nil || c.ApplyTimeout <= 0 || c.JoinAttempts <= 0 {
		t.Fatalf("defaults missing: %+v", c)
	}
}

func TestConfigRaftMultiplier(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want [4]time.Duration // heartbeat, election, lease, commit
	}{
		{"multiplier 1 is the LAN base", Config{RaftMultiplier: 1},
			[4]time.Duration{BaseHeartbeatTimeout, BaseElectionTimeout, BaseLeaderLeaseTimeout, BaseCommitTimeout}},
		{"multiplier 10 scales all four", Config{RaftMultiplier: 10},
			[4]time.Duration{1500 * time.Millisecond, 1500 * time.Millisecond, 750 * time.Millisecond, 100 * time.Millisecond}},
		{"an explicit timeout wins", Config{RaftMultiplier: 10, HeartbeatTimeout: 200 * time.Millisecond},
			[4]time.Duration{200 * time.Millisecond, 1500 * time.Millisecond, 200 * time.Millisecond, 100 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg.withDefaults()
			got := [4]time.Duration{c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout}
			if got != tc.want {
				t.Fatalf("heartbeat, election, lease, commit = %v, want %v", got, tc.want)
			}
		})
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
