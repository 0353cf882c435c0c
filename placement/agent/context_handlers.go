package agent

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
)

// HTTP side of code contexts:
//
//	POST   /contexts              ContextRequest → 201 ContextInfo
//	GET    /contexts              → 200 []ContextInfo
//	POST   /contexts/{id}/restart → 200 ContextInfo
//	DELETE /contexts/{id}         → 204
//	POST   /contexts/{id}/run     RunCodeRequest → 200 RunCodeResult
//	POST   /contexts/{id}/run/stream  → 200 NDJSON CodeEvent lines
func (s *Server) contextRoutes(mux *http.ServeMux) {
	mux.Handle("POST /contexts", s.auth(s.handleCreateContext))
	mux.Handle("GET /contexts", s.auth(s.handleListContexts))
	mux.Handle("POST /contexts/{id}/restart", s.auth(s.handleRestartContext))
	mux.Handle("DELETE /contexts/{id}", s.auth(s.handleDeleteContext))
	mux.Handle("POST /contexts/{id}/run", s.auth(s.handleRunCode))
	mux.Handle("POST /contexts/{id}/run/stream", s.auth(s.handleRunCodeStream))
}

// decodeBody reads one JSON object within the request bound.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes))
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		if errors.Is(err, io.EOF) {
			return nil // no body: every field takes its default
		}
		return errBadRequest("decode request: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errBadRequest("decode request: trailing data after the JSON object")
	}
	return nil
}

func (s *Server) handleCreateContext(w http.ResponseWriter, r *http.Request) {
	var req ContextRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		s.writeError(w, err)
		return
	}
	info, err := s.contexts.create(req)
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusCreated, info)
}

func (s *Server) handleListContexts(w http.ResponseWriter, _ *http.Request) {
	s.writeJSON(w, http.StatusOK, s.contexts.list())
}

func (s *Server) handleRestartContext(w http.ResponseWriter, r *http.Request) {
	info, err := s.contexts.restart(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, info)
}

func (s *Server) handleDeleteContext(w http.ResponseWriter, r *http.Request) {
	if err := s.contexts.remove(r.PathValue("id")); err != nil {
		s.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRunCode(w http.ResponseWriter, r *http.Request) {
	var req RunCodeRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		s.writeError(w, err)
		return
	}
	res, err := s.contexts.run(r.Context(), r.PathValue("id"), req, nil)
	if err != nil {
		if r.Context().Err() != nil {
			return // the client is gone; nobody reads an answer
		}
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, res)
}

// handleRunCodeStream sends the cell's output as it is printed, then its
// result. Errors found before the cell starts are plain JSON errors.
func (s *Server) handleRunCodeStream(w http.ResponseWriter, r *http.Request) {
	var req RunCodeRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		s.writeError(w, err)
		return
	}
	id := r.PathValue("id")
	if _, err := s.contexts.get(id); err != nil {
		s.writeError(w, err)
		return
	}
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	var mu sync.Mutex
	started := false
	emit := func(ev CodeEvent) {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if err := enc.Encode(ev); err != nil {
			return // the client is gone; its context interrupts the cell
		}
		_ = rc.Flush()
	}
	res, err := s.contexts.run(r.Context(), id, req, func(stream, data string) {
		emit(CodeEvent{Type: stream, Data: data})
	})
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		mu.Lock()
		headerOut := started
		mu.Unlock()
		if !headerOut {
			s.writeError(w, err)
			return
		}
		emit(CodeEvent{Type: "error", Data: toError(err).Message})
		return
	}
	emit(CodeEvent{Type: EventResult, Result: res})
}
