package api

import "net/http"

type healthResponse struct {
	Service string `json:"service"`
	Status  string `json:"status"`
	NodeID  string `json:"node_id"`
	Leader  string `json:"leader"`
	Role    string `json:"role"`
}

// handleHealth answers 200 while the process serves; leader is "" during an
// election, which a load balancer should not treat as down (reads still work).
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	leader, _ := s.cluster.Leader()
	writeJSON(w, http.StatusOK, healthResponse{
		Service: "gateway", Status: "ok", NodeID: s.cluster.ID(), Leader: leader, Role: s.role(),
	})
	return nil
}

func (s *Server) role() string {
	if s.cluster.IsLeader() {
		return "leader"
	}
	return "follower"
}

type clusterResponse struct {
	NodeID       string `json:"node_id"`
	Role         string `json:"role"`
	LeaderID     string `json:"leader_id"`
	LeaderAddr   string `json:"leader_addr"`
	AppliedIndex uint64 `json:"applied_index"`
}

// handleCluster is the operator's view of this node's place in the cluster.
func (s *Server) handleCluster(w http.ResponseWriter, r *http.Request) error {
	id, addr := s.cluster.Leader()
	writeJSON(w, http.StatusOK, clusterResponse{
		NodeID: s.cluster.ID(), Role: s.role(), LeaderID: id, LeaderAddr: addr,
		AppliedIndex: s.state.AppliedIndex(),
	})
	return nil
}
