package controlnode

import "strings"

// The guide starts the system as three programs:
//
//	go run ./cmd/scheduler &
//	go run ./cmd/session-manager &
//	go run ./cmd/gateway
//
// Here every node does every job, so those three are three nodes of one local
// cluster, laid out exactly as `make run-all` lays them out.
var localNodes = []struct {
	id, listen, ops, raft string
}{
	{"gateway", "127.0.0.1:8080", "127.0.0.1:9090", "127.0.0.1:7001"},
	{"scheduler", "127.0.0.1:8081", "127.0.0.1:9091", "127.0.0.1:7002"},
	{"session-manager", "127.0.0.1:8082", "127.0.0.1:9092", "127.0.0.1:7003"},
}

// LocalNode returns the defaults of one of the guide's three services as a
// node of the local three-node cluster, run from the repository root.
func LocalNode(id string) Defaults {
	var peers []string
	for _, n := range localNodes {
		peers = append(peers, n.id+"="+n.raft)
	}
	for _, n := range localNodes {
		if n.id == id {
			return Defaults{
				NodeID:     n.id,
				DataDir:    ".data/" + n.id,
				Listen:     n.listen,
				OpsListen:  n.ops,
				RaftAddr:   n.raft,
				Peers:      strings.Join(peers, ","),
				StateDir:   ".data/sb",
				AgentBin:   "bin/sandbox-agent",
				BuildAgent: true,
			}
		}
	}
	panic("controlnode: unknown local node " + id)
}
