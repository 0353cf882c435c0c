package controlnode

import (
	"os"
	"strings"
	"testing"
)

// The guide's three services must be the same three nodes `make run-all`
// starts (deploy/run-all.sh), so either way of starting gives one cluster.
func TestLocalNodesMatchRunAll(t *testing.T) {
	script, err := os.ReadFile("../../../deploy/run-all.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range localNodes {
		d := LocalNode(n.id)
		for _, want := range []string{n.listen, n.ops, n.raft} {
			if !strings.Contains(string(script), want) {
				t.Errorf("%s: %s is not in deploy/run-all.sh", n.id, want)
			}
		}
		if !strings.Contains(d.Peers, n.id+"="+n.raft) || strings.Count(d.Peers, "=") != 3 {
			t.Errorf("%s: peers %q", n.id, d.Peers)
		}
		cfg, err := loadConfig(nil, func(string) string { return "" }, d)
		if err != nil {
			t.Fatalf("%s: %v", n.id, err)
		}
		if cfg.NodeID != n.id || cfg.Listen != n.listen || cfg.Bootstrap || len(cfg.Peers) != 3 {
			t.Errorf("%s: config %+v", n.id, cfg)
		}
	}
}
