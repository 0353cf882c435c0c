package agent

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Routes of background processes (see procs.go):
//
//	POST /procs                    start → ProcessInfo
//	GET  /procs                    list → []ProcessInfo
//	GET  /procs/{pid}              → ProcessInfo
//	GET  /procs/{pid}/output       ?offset=N&follow=true → NDJSON ProcessEvents
//	POST /procs/{pid}/stdin        StdinRequest → 204
//	POST /procs/{pid}/signal       SignalRequest → 204
//	POST /procs/{pid}/resize       PTYSize → 204
//	GET  /procs/{pid}/wait         ?timeout=30s → ProcessInfo (running if the wait ran out)

const (
	// maxProcRequest bounds the JSON of every process request: a stdin
	// chunk escaped at worst, with room for the rest.
	maxProcRequest = 6*MaxStdinChunk + 64<<10
	// outputBatch is the most output one event carries.
	outputBatch = 64 << 10
	// keepaliveEvery is how long a followed stream stays silent at most.
	keepaliveEvery = 15 * time.Second
	// maxProcWait bounds one wait request; a client waits again for longer.
	maxProcWait = time.Hour
)

func (s *Server) handleProcStart(w http.ResponseWriter, r *http.Request) {
	var req ProcessStartRequest
	if err := decodeProcRequest(w, r, &req); err != nil {
		s.writeError(w, err)
		return
	}
	info, err := s.startBackground(req)
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, info)
}

func (s *Server) handleProcList(w http.ResponseWriter, _ *http.Request) {
	s.writeJSON(w, http.StatusOK, s.procs.list())
}

func (s *Server) handleProcGet(w http.ResponseWriter, r *http.Request) {
	p, err := s.procFromPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, p.info())
}

func (s *Server) handleProcStdin(w http.ResponseWriter, r *http.Request) {
	p, err := s.procFromPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	var req StdinRequest
	if err := decodeProcRequest(w, r, &req); err != nil {
		s.writeError(w, err)
		return
	}
	if err := p.sendStdin(req); err != nil {
		s.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleProcSignal(w http.ResponseWriter, r *http.Request) {
	p, err := s.procFromPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	var req SignalRequest
	if err := decodeProcRequest(w, r, &req); err != nil {
		s.writeError(w, err)
		return
	}
	sig, err := parseSignal(req.Signal)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if err := p.signal(sig); err != nil {
		s.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleProcResize(w http.ResponseWriter, r *http.Request) {
	p, err := s.procFromPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	var req PTYSize
	if err := decodeProcRequest(w, r, &req); err != nil {
		s.writeError(w, err)
		return
	}
	if err := p.resize(req); err != nil {
		s.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleProcWait(w http.ResponseWriter, r *http.Request) {
	p, err := s.procFromPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	timeout := 30 * time.Second
	if v := r.URL.Query().Get("timeout"); v != "" {
		if timeout, err = time.ParseDuration(v); err != nil || timeout < 0 || timeout > maxProcWait {
			s.writeError(w, errBadRequest("timeout %q: want a duration from 0 to %s", v, maxProcWait))
			return
		}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	s.writeJSON(w, http.StatusOK, p.info())
}

// handleProcOutput streams a process's output from an offset as NDJSON:
// what the ring holds, then (with follow, the default) what comes, until the
// process has ended and everything was sent.
func (s *Server) handleProcOutput(w http.ResponseWriter, r *http.Request) {
	p, err := s.procFromPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	q := r.URL.Query()
	var from int64
	if v := q.Get("offset"); v != "" {
		if from, err = strconv.ParseInt(v, 10, 64); err != nil || from < 0 {
			s.writeError(w, errBadRequest("offset %q: want a byte offset of 0 or more", v))
			return
		}
	}
	follow := q.Get("follow") != "false" && q.Get("follow") != "0"
	p.mu.Lock()
	end := p.ring.end
	p.mu.Unlock()
	if from > end {
		s.writeError(w, errBadRequest("offset %d is past the end of the output (%d)", from, end))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	emit := func(ev ProcessEvent) bool {
		if enc.Encode(ev) != nil {
			return false
		}
		return rc.Flush() == nil
	}
	keepalive := time.NewTimer(keepaliveEvery)
	defer keepalive.Stop()
	for {
		p.mu.Lock()
		chunks, lost := p.ring.read(from, outputBatch)
		drained, changed := p.drained, p.changed
		p.mu.Unlock()
		if lost > from {
			if !emit(ProcessEvent{Type: EventGap, Offset: from, End: lost}) {
				return
			}
			from = lost
		}
		for _, c := range chunks {
			end := c.off + int64(len(c.data))
			if !emit(ProcessEvent{Type: c.stream, Data: strings.ToValidUTF8(string(c.data), "\uFFFD"), Offset: c.off, End: end}) {
				return
			}
			from = end
		}
		if len(chunks) > 0 {
			continue
		}
		if drained {
			info := p.info()
			emit(ProcessEvent{Type: EventExit, Offset: from, End: from, Process: &info})
			return
		}
		if !follow {
			return
		}
		select {
		case <-changed:
		case <-keepalive.C:
			if !emit(ProcessEvent{Type: EventKeepalive, Offset: from, End: from}) {
				return
			}
			keepalive.Reset(keepaliveEvery)
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) procFromPath(r *http.Request) (*bgProc, error) {
	pid, err := strconv.Atoi(r.PathValue("pid"))
	if err != nil || pid < 1 {
		return nil, errBadRequest("process id %q is not a positive integer", r.PathValue("pid"))
	}
	return s.procs.get(pid)
}

// decodeProcRequest reads one bounded JSON object and nothing after it.
func decodeProcRequest(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxProcRequest))
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return errBadRequest("decode request: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errBadRequest("decode request: trailing data after the JSON object")
	}
	return nil
}
