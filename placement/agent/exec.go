package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"unicode/utf8"
)

// maxArgvCode is the largest program passed as "-c CODE"; Linux refuses
// single arguments over 128 KiB, so larger programs go through a temp file.
const maxArgvCode = 64 << 10

func (s *Server) handleExec(w http.ResponseWriter, r *http.Request) {
	spec, cleanup, err := s.decodeExec(w, r)
	if err != nil {
		s.writeExecError(w, err)
		return
	}
	defer cleanup()
	res, err := s.run(r.Context(), spec, nil)
	if err != nil {
		var se *startError
		if !errors.As(err, &se) {
			if r.Context().Err() != nil {
				s.log.Debug("agent: exec abandoned by the client", "err", err)
				return
			}
			s.writeError(w, err)
			return
		}
		res = se.result()
	}
	s.log.Debug("agent: exec", "argv0", spec.argv[0], "exit_code", res.ExitCode, "duration_ms", res.DurationMs, "timed_out", res.TimedOut)
	if err := writeResult(w, res); err != nil {
		s.log.Debug("agent: write response", "err", err)
	}
}

// resultChunk is how much output is escaped at a time by writeResult.
const resultChunk = 64 << 10

// resultWriters recycles writeResult's 64 KiB buffers across execs.
var resultWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, resultChunk) }}

// writeResult answers res as JSON, byte for byte what json.Encoder writes,
// but escapes stdout and stderr a chunk at a time: the encoder builds the
// whole answer in memory first, up to six times the output (a NUL becomes
// \u0000), and at the 64 MiB cap that killed the agent of a small sandbox.
func writeResult(w http.ResponseWriter, res *ExecResult) error {
	rest := *res
	rest.Stdout, rest.Stderr = "", ""
	frame, err := json.Marshal(&rest) // every other field, so none is forgotten
	if err != nil {
		return fmt.Errorf("encode exec result: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := resultWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() { bw.Reset(nil); resultWriters.Put(bw) }()
	for _, f := range []struct{ key, val string }{{`"stdout":""`, res.Stdout}, {`"stderr":""`, res.Stderr}} {
		before, after, ok := bytes.Cut(frame, []byte(f.key))
		if !ok {
			return fmt.Errorf("encode exec result: no %s in %s", f.key, frame)
		}
		bw.Write(before)
		bw.WriteString(f.key[:len(f.key)-1])
		if err := writeJSONText(bw, f.val); err != nil {
			return err
		}
		bw.WriteByte('"')
		frame = after
	}
	bw.Write(frame)
	bw.WriteByte('\n')
	return bw.Flush()
}

// writeJSONText writes s escaped as inside a JSON string, cut at rune starts
// so that each piece escapes exactly as the whole would.
func writeJSONText(w *bufio.Writer, s string) error {
	for len(s) > 0 {
		n := min(len(s), resultChunk)
		for n < len(s) && !utf8.RuneStart(s[n]) {
			n++
		}
		q, err := json.Marshal(s[:n])
		if err != nil {
			return fmt.Errorf("encode exec output: %w", err)
		}
		if _, err := w.Write(q[1 : len(q)-1]); err != nil {
			return err
		}
		s = s[n:]
	}
	return nil
}

func (s *Server) handleExecStream(w http.ResponseWriter, r *http.Request) {
	spec, cleanup, err := s.decodeExec(w, r)
	var notFound *startError
	if err != nil && !errors.As(err, &notFound) {
		s.writeError(w, err)
		return
	}
	defer cleanup()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()

	// Both output readers emit; one lock keeps lines whole.
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	emit := func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		if err := enc.Encode(ev); err != nil {
			return // the client is gone; its context cancels the exec
		}
		_ = rc.Flush()
	}
	if notFound != nil {
		res := notFound.result()
		emit(Event{Type: EventStderr, Data: res.Stderr})
		emit(Event{Type: EventResult, Result: res})
		return
	}
	res, err := s.run(r.Context(), spec, func(stream, data string) {
		emit(Event{Type: stream, Data: data})
	})
	if err != nil {
		var se *startError
		if !errors.As(err, &se) {
			s.log.Debug("agent: stream exec ended early", "err", err)
			return
		}
		res = se.result()
		emit(Event{Type: EventStderr, Data: res.Stderr})
	}
	emit(Event{Type: EventResult, Result: res})
}

// writeExecError answers a request that could not be started: a missing
// binary is an exit code like a shell's, everything else an error.
func (s *Server) writeExecError(w http.ResponseWriter, err error) {
	var se *startError
	if errors.As(err, &se) {
		s.writeJSON(w, http.StatusOK, se.result())
		return
	}
	s.writeError(w, err)
}

// decodeExec reads and validates a request and resolves what to run.
// cleanup removes any temp file written for it.
func (s *Server) decodeExec(w http.ResponseWriter, r *http.Request) (procSpec, func(), error) {
	noop := func() {}
	var req ExecRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes))
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return procSpec{}, noop, err
		}
		return procSpec{}, noop, errBadRequest("decode exec request: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return procSpec{}, noop, errBadRequest("decode exec request: trailing data after the JSON object")
	}
	return s.prepare(req)
}

func (s *Server) prepare(req ExecRequest) (procSpec, func(), error) {
	noop := func() {}
	set := 0
	for _, b := range []bool{len(req.Argv) > 0, req.Shell != "", req.Code != ""} {
		if b {
			set++
		}
	}
	if set != 1 {
		return procSpec{}, noop, errBadRequest("exactly one of argv, shell and code must be set")
	}
	if req.Language != "" && req.Code == "" {
		return procSpec{}, noop, errBadRequest("language is only valid with code")
	}
	p := procSpec{timeout: req.Timeout, maxOutput: req.MaxOutputBytes, stdin: req.Stdin}
	switch {
	case p.timeout < 0 || p.timeout > s.cfg.MaxTimeout:
		return procSpec{}, noop, errUnprocessable("timeout %s out of range (0 to %s)", p.timeout, s.cfg.MaxTimeout)
	case p.timeout == 0:
		p.timeout = s.cfg.DefaultTimeout
	}
	switch {
	case p.maxOutput < 0 || p.maxOutput > s.cfg.MaxOutputLimit:
		return procSpec{}, noop, errUnprocessable("max_output_bytes %d out of range (0 to %d)", p.maxOutput, s.cfg.MaxOutputLimit)
	case p.maxOutput == 0:
		p.maxOutput = s.cfg.DefaultMaxOutput
	}
	env, pathEnv, err := s.mergeEnv(req.Env)
	if err != nil {
		return procSpec{}, noop, err
	}
	p.env = env
	p.dir = req.Cwd
	if p.dir == "" {
		p.dir = s.cfg.Workdir
	}
	if !filepath.IsAbs(p.dir) {
		return procSpec{}, noop, errBadRequest("cwd %q is not absolute", p.dir)
	}
	if fi, err := os.Stat(p.dir); err != nil || !fi.IsDir() {
		return procSpec{}, noop, errBadRequest("cwd %q is not a directory in the sandbox", p.dir)
	}

	cleanup := noop
	switch {
	case len(req.Argv) > 0:
		p.argv = req.Argv
	case req.Shell != "":
		p.argv = []string{"/bin/sh", "-c", req.Shell}
	default:
		lang := strings.ToLower(req.Language)
		interp, ok := Languages[lang]
		if !ok {
			return procSpec{}, noop, errUnprocessable("unknown language %q (supported: %s)", req.Language, strings.Join(languageNames(), ", "))
		}
		path, found := lookPath(interp, pathEnv, p.dir)
		if !found {
			return procSpec{}, noop, errUnprocessable("language %s: interpreter %s is not installed in this sandbox image", lang, interp)
		}
		p.argv = []string{path, "-c", req.Code}
		if len(req.Code) > maxArgvCode {
			file, err := s.writeCodeFile(req.Code)
			if err != nil {
				return procSpec{}, noop, err
			}
			p.argv = []string{path, file}
			cleanup = func() { _ = os.Remove(file) }
		}
	}
	for _, a := range p.argv {
		if strings.IndexByte(a, 0) >= 0 {
			cleanup()
			return procSpec{}, noop, errBadRequest("argv, shell and code cannot contain NUL bytes")
		}
	}
	if strings.Contains(p.argv[0], "/") {
		p.path = p.argv[0]
	} else if path, ok := lookPath(p.argv[0], pathEnv, p.dir); ok {
		p.path = path
	} else {
		cleanup()
		return procSpec{}, noop, &startError{name: p.argv[0], err: syscall.ENOENT}
	}
	return p, cleanup, nil
}

// mergeEnv lays the request's variables over the base environment.
func (s *Server) mergeEnv(extra map[string]string) (env []string, path string, err error) {
	merged := make(map[string]string, len(s.baseEnv)+len(extra))
	for k, v := range s.baseEnv {
		merged[k] = v
	}
	for k, v := range extra {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return nil, "", errBadRequest("invalid environment variable %q", k)
		}
		merged[k] = v
	}
	env = make([]string, 0, len(merged))
	for k, v := range merged {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env, merged["PATH"], nil
}

func (s *Server) writeCodeFile(code string) (string, error) {
	f, err := os.CreateTemp(s.cfg.TempDir, "sandbox-code-*")
	if err != nil {
		return "", fmt.Errorf("write code file: %w", err)
	}
	_, werr := f.WriteString(code)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("write code file: %w", err)
	}
	return f.Name(), nil
}

func languageNames() []string {
	names := make([]string, 0, len(Languages))
	for k := range Languages {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
