package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// fileOpsAgent is what the file operations beyond the guide's ask of an
// agent (*agent.Client). It is kept apart from sandboxAgent so that each
// group of operations states its own needs.
type fileOpsAgent interface {
	OpenFile(ctx context.Context, path string) (io.ReadCloser, int64, error)
	Stat(ctx context.Context, path string) (*agent.FileInfo, error)
	Walk(ctx context.Context, path string, depth, limit int) (*agent.ListResult, error)
	Rename(ctx context.Context, from, to string) error
	Watch(ctx context.Context, path string, recursive bool, onEvent func(agent.WatchEvent) error) error
}

func (s *Server) fileOps(sb *fsm.Sandbox) (fileOpsAgent, error) {
	a, ok := s.agents.get(sb).(fileOpsAgent)
	if !ok {
		return nil, &Error{Status: http.StatusNotImplemented, Code: codeInternal, Msg: "this sandbox's agent has no file operations"}
	}
	return a, nil
}

// uploadSlack is what an upload may carry beyond its sandbox's disk size:
// a tar's headers and padding. The disk refuses the excess data anyway.
const uploadSlack = 1 << 20

// limitUpload applies MAX_UPLOAD_BYTES when it is set; every upload is also
// bounded by its sandbox's disk once the handler knows the sandbox
// (boundUpload).
func (s *Server) limitUpload(next http.Handler) http.Handler {
	if s.cfg.MaxUploadBytes > 0 {
		return limitBody(s.cfg.MaxUploadBytes)(next)
	}
	return next
}

// boundUpload refuses at once an upload that says it is larger than the
// sandbox's disk, and cuts one that turns out larger while streaming: a
// file can never be larger than the tmpfs it is written to, so nothing
// useful is refused, and nothing larger is read.
func (s *Server) boundUpload(w http.ResponseWriter, r *http.Request, sb *fsm.Sandbox) error {
	limit := sb.Resources.DiskMB << 20
	if limit > 0 {
		limit += uploadSlack
	}
	if m := s.cfg.MaxUploadBytes; m > 0 && (limit == 0 || m < limit) {
		limit = m
	}
	if limit == 0 {
		return nil // disk size unknown: the agent's free-space check decides
	}
	if r.ContentLength > limit {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: codeTooLarge,
			Msg: fmt.Sprintf("upload of %d bytes is larger than this sandbox's disk (%d MiB)", r.ContentLength, sb.Resources.DiskMB)}
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	return nil
}

func (s *Server) handleStat(w http.ResponseWriter, r *http.Request) error {
	sb, p, err := s.queryTarget(r)
	if err != nil {
		return err
	}
	a, err := s.fileOps(sb)
	if err != nil {
		return err
	}
	fi, err := a.Stat(r.Context(), p)
	if err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, fi)
	return nil
}

func (s *Server) handleExists(w http.ResponseWriter, r *http.Request) error {
	sb, p, err := s.queryTarget(r)
	if err != nil {
		return err
	}
	a, err := s.fileOps(sb)
	if err != nil {
		return err
	}
	_, err = a.Stat(r.Context(), p)
	var ae *agent.Error
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]any{"path": p, "exists": true})
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		writeJSON(w, http.StatusOK, map[string]any{"path": p, "exists": false})
	default:
		return agentFailure(err)
	}
	return nil
}

type renameRequest struct {
	SandboxID string `json:"sandbox_id"`
	From      string `json:"from"`
	To        string `json:"to"`
}

func (s *Server) handleRename(w http.ResponseWriter, r *http.Request) error {
	var req renameRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	to, err := cleanPath("to", req.To)
	if err != nil {
		return err
	}
	sb, from, err := s.fileTarget(r, req.SandboxID, req.From)
	if err != nil {
		return err
	}
	a, err := s.fileOps(sb)
	if err != nil {
		return err
	}
	if err := a.Rename(r.Context(), from, to); err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, agent.RenameResult{From: from, To: to})
	return nil
}

// fileListQuery reads depth and limit for GET /files; zero means the agent's
// default (depth 1, DefaultListLimit entries).
func fileListQuery(r *http.Request) (depth, limit int, err error) {
	q := r.URL.Query()
	if v := q.Get("depth"); v != "" {
		if depth, err = strconv.Atoi(v); err != nil || depth < 1 || depth > agent.MaxListDepth {
			return 0, 0, errUnprocessable("depth must be an integer from 1 to %d", agent.MaxListDepth)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > agent.MaxListLimit {
			return 0, 0, errUnprocessable("limit must be an integer from 1 to %d", agent.MaxListLimit)
		}
	}
	return depth, limit, nil
}

// handleWatch streams a directory's changes as NDJSON. Nothing is written
// until the agent's watch is in place, so a missing directory or a refused
// watch gets its own status; after that the stream ends with an "error"
// line if the agent's stream breaks. Each event is decoded and encoded
// again: what reaches the client is always our shape, never raw agent bytes.
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) error {
	sb, p, err := s.queryTarget(r)
	if err != nil {
		return err
	}
	recursive := false
	if v := r.URL.Query().Get("recursive"); v != "" {
		if recursive, err = strconv.ParseBool(v); err != nil {
			return errBadRequest("recursive must be true or false")
		}
	}
	a, err := s.fileOps(sb)
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	started := false
	err = a.Watch(r.Context(), p, recursive, func(ev agent.WatchEvent) error {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		switch ev.Type {
		case "": // the agent's heartbeat: pass it on, so idle clients and proxies see traffic
			if _, err := w.Write([]byte("\n")); err != nil {
				return err
			}
			return rc.Flush()
		case agent.WatchReady:
		default:
			s.touches.mark(sb.ID) // a watched sandbox is in use
		}
		if err := enc.Encode(ev); err != nil {
			return err
		}
		return rc.Flush()
	})
	if !started {
		if err == nil {
			err = errors.New("the agent ended the watch before it started")
		}
		return agentFailure(err)
	}
	if err != nil && r.Context().Err() == nil {
		_ = enc.Encode(agent.WatchEvent{Type: agent.WatchError, Path: p, Data: "watch stream from the sandbox broke"})
		_ = rc.Flush()
	}
	return nil
}

// abortOnCut copies a streamed answer whose status is already sent. If the
// copy fails (the agent's stream broke), returning would end a chunked
// answer cleanly and the client would take a cut file for a whole one:
// aborting the handler breaks the connection instead, so it sees an error.
func abortOnCut(w http.ResponseWriter, body io.Reader) {
	if _, err := io.Copy(w, body); err != nil {
		panic(http.ErrAbortHandler)
	}
}
