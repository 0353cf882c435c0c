package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/cloud-sandbox/cloud-sandbox/cluster"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// Operator endpoints under /api/v1/admin, admin role only (api/DESIGN.md,
// "Admin"). sandboxctl is their client.

// codeNotImplemented answers a verb this deployment cannot do yet.
const codeNotImplemented = "not_implemented"

// adminOnly refuses everyone but an admin with 403 (requireAdmin, egress.go).
func adminOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := requireAdmin(r); err != nil {
			writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// handleMembers answers GET /api/v1/admin/members: the Raft configuration
// with suffrage, the leader, and whether each member answered a probe on
// its cluster port.
func (s *Server) handleMembers(w http.ResponseWriter, r *http.Request) error {
	members, err := s.cluster.Members(r.Context())
	if err != nil {
		return errUnavailable("read the raft configuration", err)
	}
	leaderID, leaderAddr := s.cluster.Leader()
	writeJSON(w, http.StatusOK, map[string]any{
		"node_id": s.cluster.ID(), "leader_id": leaderID, "leader_addr": leaderAddr, "members": members,
	})
	return nil
}

// handleSnapshot answers GET /api/v1/admin/snapshot with the FSM's own
// snapshot document, after a consistent read so it holds every write
// acknowledged before the request. It is read from this node's replica:
// no leader round trip beyond the read index, nothing written to disk.
func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request) error {
	if err := s.cluster.ConsistentRead(r.Context()); err != nil {
		return errUnavailable("catch up with the cluster before the snapshot", err)
	}
	// Encoded into memory first: a failure is still an error answer, not a
	// truncated file with a 200 (the document is as large as the state).
	var buf bytes.Buffer
	if err := s.cluster.WriteSnapshot(&buf); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="cloud-sandbox-%s.snapshot.json"`,
		time.Now().UTC().Format("20060102T150405Z")))
	w.WriteHeader(http.StatusOK)
	_, _ = buf.WriteTo(w)
	return nil
}

// maxSnapshotBytes bounds a snapshot a restore accepts: far above the
// state of 10,000 sandboxes (make bench-scale), far below what a node's
// memory holds while it checks the file.
const maxSnapshotBytes = 1 << 30

// snapshotLimit is the body limit of a restore: MAX_UPLOAD_BYTES when the
// operator set a smaller one.
func (s *Server) snapshotLimit() int64 {
	if s.cfg.MaxUploadBytes > 0 {
		return min(s.cfg.MaxUploadBytes, maxSnapshotBytes)
	}
	return maxSnapshotBytes
}

// handleRestore answers POST /api/v1/admin/snapshot/restore: the body, a
// document from GET /api/v1/admin/snapshot, replaces the whole replicated
// state on every node (raft user restore on the leader; a follower
// forwards it). It is decoded into a scratch FSM first, so a bad file is a
// 400 and changes nothing.
func (s *Server) handleRestore(w http.ResponseWriter, r *http.Request) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return err // *http.MaxBytesError → 413
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return errBadRequest("empty body: send a snapshot document from GET /api/v1/admin/snapshot")
	}
	if err := cluster.ValidateSnapshot(data); err != nil {
		return errBadRequest("snapshot refused, nothing changed: %v", err)
	}
	data, dropped, err := withoutPool(data)
	if err != nil {
		return errBadRequest("snapshot refused, nothing changed: %v", err)
	}
	if err := s.cluster.Restore(r.Context(), data); err != nil {
		if errors.Is(err, cluster.ErrBadSnapshot) {
			return errBadRequest("snapshot refused, nothing changed: %v", err)
		}
		return errUnavailable("restore snapshot", err)
	}
	noteWrite(r.Context(), s.state.AppliedIndex())
	s.log.Warn("cluster state restored from an operator's snapshot", "bytes", len(data), "pool_dropped", dropped,
		"by", principalFrom(r.Context()).User)
	writeJSON(w, http.StatusOK, map[string]any{"restored": true, "bytes": len(data), "pool_dropped": dropped,
		"applied_index": s.state.AppliedIndex()})
	return nil
}

// withoutPool drops the warm pool from a snapshot document: sandboxes
// without an owner that are idle or still being made. One that was warm
// at the save may have been handed to a user and used since; restored, it
// would be handed to the next caller with that user's leftovers (or, if
// it was still pending, come back under an id the user knew). Dropped, its
// container is an orphan the reconciler removes, and the warmer makes
// fresh ones. Sandboxes that had an owner at the save come back as they
// were: their containers are still theirs (or, if destroyed since, the
// reconciler marks them failed).
func withoutPool(data []byte) ([]byte, int, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, 0, err
	}
	var rows []json.RawMessage
	if raw, ok := doc["sandboxes"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &rows); err != nil {
			return nil, 0, fmt.Errorf("sandboxes: %w", err)
		}
	}
	kept := make([]json.RawMessage, 0, len(rows))
	for _, row := range rows {
		var sb struct {
			State fsm.SandboxState `json:"state"`
			Owner string           `json:"owner"`
		}
		if err := json.Unmarshal(row, &sb); err != nil {
			return nil, 0, fmt.Errorf("sandbox row: %w", err)
		}
		if sb.Owner != "" || (sb.State != fsm.StateIdle && sb.State != fsm.StatePending) {
			kept = append(kept, row)
		}
	}
	if len(kept) == len(rows) {
		return data, 0, nil
	}
	raw, err := json.Marshal(kept)
	if err != nil {
		return nil, 0, err
	}
	doc["sandboxes"] = raw
	out, err := json.Marshal(doc)
	return out, len(rows) - len(kept), err
}

// Drainer is a placement driver whose hosts can be drained (Nomad's
// client nodes; *nomad.Driver). Deps.Drainer is nil with the local Docker
// driver: one host, nowhere to drain to.
type Drainer interface {
	// SetNodeEligible marks the host node (id, id prefix or name) eligible
	// for new sandboxes or not and returns its id; an unknown host wraps
	// placement.ErrNodeNotFound.
	SetNodeEligible(ctx context.Context, node string, eligible bool) (nodeID string, err error)
}

type drainResponse struct {
	Node     string `json:"node"`
	Eligible bool   `json:"eligible"`
	// IdleReleased are the warm pool sandboxes on the node, recycled.
	IdleReleased []string `json:"idle_released"`
	// Remaining counts what stays placed there by state: an active
	// sandbox keeps running until its owner is done with it; a paused one
	// resumes on another node.
	Remaining map[string]int `json:"remaining"`
}

// handleDrain answers POST /api/v1/admin/nodes/{node}/drain: the node
// takes no new sandbox (Nomad scheduling eligibility off), and its idle
// pool sandboxes are released so the warmer replaces them on the other
// nodes. Active sandboxes stay where they run; paused ones resume
// wherever Nomad places them, which is no longer there.
func (s *Server) handleDrain(w http.ResponseWriter, r *http.Request) error {
	node := chi.URLParam(r, "node")
	if s.drainer == nil {
		return errNoDrain(node)
	}
	id, err := s.drainer.SetNodeEligible(r.Context(), node, false)
	if err != nil {
		if errors.Is(err, placement.ErrNodeNotFound) {
			return &Error{Status: http.StatusNotFound, Code: codeNotFound, Msg: err.Error()}
		}
		return errUnavailable("drain "+node, err)
	}
	// Every idle sandbox the cluster has placed there, not only the ones
	// this replica has applied.
	if err := s.cluster.ConsistentRead(r.Context()); err != nil {
		return errUnavailable("catch up with the cluster", err)
	}
	resp := drainResponse{Node: id, IdleReleased: []string{}, Remaining: map[string]int{}}
	for _, sb := range s.state.Sandboxes() {
		if sb.Placement.Node != id {
			continue
		}
		if sb.State == fsm.StateIdle {
			_, err := s.apply(r.Context(), &fsm.SandboxRelease{ID: sb.ID, Admin: true, IdleOnly: true, Reason: "drained"},
				"admin:drain:"+id+":"+sb.ID)
			switch {
			case err == nil:
				resp.IdleReleased = append(resp.IdleReleased, sb.ID)
				continue
			case errors.Is(err, fsm.ErrConflict):
				resp.Remaining["active"]++ // acquired since we looked
				continue
			case errors.Is(err, fsm.ErrNotFound):
				continue
			}
			return err
		}
		resp.Remaining[string(sb.State)]++
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// handleUndrain answers DELETE /api/v1/admin/nodes/{node}/drain: the node
// takes new sandboxes again.
func (s *Server) handleUndrain(w http.ResponseWriter, r *http.Request) error {
	node := chi.URLParam(r, "node")
	if s.drainer == nil {
		return errNoDrain(node)
	}
	id, err := s.drainer.SetNodeEligible(r.Context(), node, true)
	if err != nil {
		if errors.Is(err, placement.ErrNodeNotFound) {
			return &Error{Status: http.StatusNotFound, Code: codeNotFound, Msg: err.Error()}
		}
		return errUnavailable("undrain "+node, err)
	}
	writeJSON(w, http.StatusOK, drainResponse{Node: id, Eligible: true, IdleReleased: []string{}, Remaining: map[string]int{}})
	return nil
}

func errNoDrain(node string) *Error {
	return &Error{Status: http.StatusNotImplemented, Code: codeNotImplemented,
		Msg: fmt.Sprintf("drain %q: not implemented with the local Docker driver: it places on this one host "+
			"and there is nowhere to drain to; drain is for Nomad client nodes (PLACEMENT_DRIVER=nomad)", node)}
}
