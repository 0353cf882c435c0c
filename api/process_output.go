package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// handleProcessOutput relays the agent's output events as they come. Once
// the 200 header is out, a failure can only be reported in-band, as an
// "error" event; the client reconnects from the last "end" it saw.
func (s *Server) handleProcessOutput(w http.ResponseWriter, r *http.Request) error {
	pid, err := pidParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var offset int64
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.ParseInt(v, 10, 64); err != nil || offset < 0 {
			return errBadRequest("offset must be a byte offset of 0 or more")
		}
	}
	follow := true
	if v := q.Get("follow"); v != "" {
		if follow, err = strconv.ParseBool(v); err != nil {
			return errBadRequest("follow must be true or false")
		}
	}
	_, pa, err := s.processTarget(r, q.Get("sandbox_id"))
	if err != nil {
		return err
	}
	stream := newNDJSON(w)
	emit := stream.emit
	errClient := errors.New("client gone")
	err = pa.ProcessOutput(r.Context(), pid, offset, follow, func(ev agent.ProcessEvent) error {
		if emit(ev) != nil {
			return errClient
		}
		return nil
	})
	switch {
	case err == nil:
		stream.finish() // nothing held and not following: an empty stream
		return nil
	case errors.Is(err, errClient), r.Context().Err() != nil:
		return nil
	case !stream.Started():
		return agentFailure(err)
	}
	e := classify(agentFailure(err))
	_ = emit(map[string]any{"type": "error", "data": e.Msg, "code": e.Code})
	return nil
}
