package api

import "net/http"

type healthResponse struct {
	Service string `json:"service"`
	Status  string `json:"status"`
	NodeID  string `json:"node_id"`
	Leader  string `json:"leader"`
	Role    string `json:"role"`
	// Reason says why the node is not serving yet (status "starting").
	Reason string `json:"reason,omitempty"`
}

// handleHealth is the readiness check. Until the node has caught up with
// the cluster at start it answers 503 with status "starting" and the reason
// (the API answers 503 not_ready meanwhile); then 200 "ok". Once ready it
// stays 200: leader is "" during an election, which a load balancer should
// not treat as down (reads still work).
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	leader, _ := s.cluster.Leader()
	h := healthResponse{Service: "gateway", Status: "ok", NodeID: s.cluster.ID(), Leader: leader, Role: s.role()}
	status := http.StatusOK
	if ok, reason := s.isReady(); !ok {
		h.Status, h.Reason, status = "starting", reason, http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, h)
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
