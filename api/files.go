package api

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// fileTarget resolves the sandbox and path of a files request. Files work on
// an active sandbox only: a paused one cannot answer.
func (s *Server) fileTarget(r *http.Request, sandboxID, p string) (*fsm.Sandbox, string, error) {
	if sandboxID == "" {
		return nil, "", errBadRequest("sandbox_id is required")
	}
	clean, err := cleanPath("path", p)
	if err != nil {
		return nil, "", err
	}
	sb, err := s.runnableSandbox(r, sandboxID)
	if err != nil {
		return nil, "", err
	}
	s.touches.mark(sb.ID)
	return sb, clean, nil
}

// queryTarget reads sandbox_id and path from the query string.
func (s *Server) queryTarget(r *http.Request) (*fsm.Sandbox, string, error) {
	q := r.URL.Query()
	return s.fileTarget(r, q.Get("sandbox_id"), q.Get("path"))
}

// fileMode is the mode of files written through the API.
const fileMode = 0o644

type writeFileRequest struct {
	SandboxID string  `json:"sandbox_id"`
	Path      string  `json:"path"`
	Content   *string `json:"content"`
	Encoding  string  `json:"encoding"`
}

type pathResult struct {
	Path string `json:"path"`
}

func (s *Server) handleWriteFile(w http.ResponseWriter, r *http.Request) error {
	var req writeFileRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	if req.Content == nil {
		return errBadRequest("content is required")
	}
	data := []byte(*req.Content)
	switch req.Encoding {
	case "", "utf-8", "utf8":
	case "base64":
		var err error
		if data, err = base64.StdEncoding.DecodeString(*req.Content); err != nil {
			return errBadRequest("content is not valid base64")
		}
	default:
		return errUnprocessable("encoding must be utf-8 or base64")
	}
	sb, p, err := s.fileTarget(r, req.SandboxID, req.Path)
	if err != nil {
		return err
	}
	n, err := s.agents.get(sb).WriteFile(r.Context(), p, bytes.NewReader(data), fileMode)
	if err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, agent.WriteResult{Path: p, Size: n})
	return nil
}

func (s *Server) handleWriteContent(w http.ResponseWriter, r *http.Request) error {
	sb, p, err := s.queryTarget(r)
	if err != nil {
		return err
	}
	if err := s.boundUpload(w, r, sb); err != nil {
		return err
	}
	n, err := s.agents.get(sb).WriteFile(r.Context(), p, r.Body, fileMode)
	if err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, agent.WriteResult{Path: p, Size: n})
	return nil
}

func (s *Server) handleListFiles(w http.ResponseWriter, r *http.Request) error {
	sb, p, err := s.queryTarget(r)
	if err != nil {
		return err
	}
	depth, limit, err := fileListQuery(r)
	if err != nil {
		return err
	}
	a, err := s.fileOps(sb)
	if err != nil {
		return err
	}
	res, err := a.Walk(r.Context(), p, depth, limit)
	if err != nil {
		return agentFailure(err)
	}
	if res.Entries == nil {
		res.Entries = []agent.FileInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"path": p, "files": res.Entries, "truncated": res.Truncated})
	return nil
}

func (s *Server) handleDeleteFile(w http.ResponseWriter, r *http.Request) error {
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
	if p == "/" {
		return errBadRequest("refusing to delete /")
	}
	if err := s.agents.get(sb).Delete(r.Context(), p, recursive); err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"path": p, "deleted": true})
	return nil
}

func (s *Server) handleReadContent(w http.ResponseWriter, r *http.Request) error {
	sb, p, err := s.queryTarget(r)
	if err != nil {
		return err
	}
	a, err := s.fileOps(sb)
	if err != nil {
		return err
	}
	body, size, err := a.OpenFile(r.Context(), p)
	if err != nil {
		return agentFailure(err)
	}
	defer body.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	if size >= 0 {
		// The length lets a client size its buffer or progress bar, and
		// tell a cut answer from a whole one by itself.
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	w.WriteHeader(http.StatusOK)
	abortOnCut(w, body)
	return nil
}

type mkdirRequest struct {
	SandboxID string `json:"sandbox_id"`
	Path      string `json:"path"`
}

func (s *Server) handleMkdir(w http.ResponseWriter, r *http.Request) error {
	var req mkdirRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	sb, p, err := s.fileTarget(r, req.SandboxID, req.Path)
	if err != nil {
		return err
	}
	if err := s.agents.get(sb).Mkdir(r.Context(), p); err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, pathResult{Path: p})
	return nil
}

func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) error {
	sb, p, err := s.queryTarget(r)
	if err != nil {
		return err
	}
	body, err := s.agents.get(sb).Download(r.Context(), p)
	if err != nil {
		return agentFailure(err)
	}
	defer body.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	abortOnCut(w, body)
	return nil
}

func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) error {
	sb, p, err := s.queryTarget(r)
	if err != nil {
		return err
	}
	if err := s.boundUpload(w, r, sb); err != nil {
		return err
	}
	n, err := s.agents.get(sb).Upload(r.Context(), p, r.Body)
	if err != nil {
		return agentFailure(err)
	}
	writeJSON(w, http.StatusOK, agent.UploadResult{Path: p, Files: n})
	return nil
}
