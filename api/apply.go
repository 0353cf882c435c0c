package api

import (
	"context"
	"errors"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// apply stamps the header (time, request id) and commits cmd. Cluster
// failures become 503; the FSM's business errors pass through typed.
func (s *Server) apply(ctx context.Context, cmd fsm.Command, requestID string) (*fsm.Response, error) {
	h := fsm.Hdr(cmd)
	h.Now = time.Now().UTC()
	h.RequestID = requestID
	resp, err := s.cluster.Apply(ctx, cmd)
	if err != nil {
		s.metrics.countQuotaRejection(err) // a refusal forwarded from the leader
		var fe *fsm.Error
		if errors.As(err, &fe) || errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, errUnavailable("cluster unavailable", err)
	}
	if err := resp.Error(); err != nil {
		s.metrics.countQuotaRejection(err)
		return nil, err
	}
	noteWrite(ctx, resp.Index)
	return resp, nil
}
