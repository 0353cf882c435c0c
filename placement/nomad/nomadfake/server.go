// Package nomadfake is a strict in-process fake of the part of Nomad's HTTP
// API that the nomad placement driver uses, for tests. It answers as Nomad
// 1.6.5 does in the recordings under shared/fixtures/nomad-1.6.5: the same
// paths and JSON field names, X-Nomad-* headers (on 404s too), per-table
// indexes with blocking queries, text/plain errors, the allocation lifecycle
// pending → running → failed/lost/complete driven by the test, unplaceable
// evaluations, deregister with and without purge, and garbage collection.
//
// Nothing runs: a test decides when an allocation starts, fails or is lost,
// and which host:port it reports for a port label, so that a real agent
// listening on loopback can stand in for the task.
package nomadfake

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Tables whose index a blocking query watches; Nomad keeps one per table,
// not per object.
const (
	tableJobs   = "jobs"
	tableAllocs = "allocs"
	tableEvals  = "evals"
	tableNodes  = "nodes"
)

// Options shape the fake cluster.
type Options struct {
	// Nodes is how many client nodes there are (default 1). The scheduler
	// places on the first ready one the job's constraints allow.
	Nodes int
	// NodeMemoryMB is each client node's memory; a group asking for more
	// is unplaceable (default 16384).
	NodeMemoryMB int
	// NodeCPU is the node's compute in MHz (default 8000).
	NodeCPU int
	// NodeAddr is the node's advertised IP, reported as the HTTPAddr host
	// and as HostIP of allocated ports (default 127.0.0.1).
	NodeAddr string
	// AutoRun makes every new allocation report running right after it is
	// placed (as a second index bump, so a blocking reader sees pending
	// first when it asks between the two). Off: the test drives it.
	AutoRun bool
	// HoldEvals leaves new evaluations pending with no allocation: a slow
	// or stuck scheduler.
	HoldEvals bool
	// PortFor returns the host port to report for a port label of a new
	// allocation of job; reserved is the static port the job asks for (0:
	// dynamic). nil or a 0 result picks one from 20000 up (or the reserved
	// one). Tests start the stand-in for the task here. It runs under the
	// fake's lock: it must not call the Server.
	PortFor func(job *api.Job, label string, reserved int) int
	// OnStop is told when an allocation stops running (stopped, failed,
	// lost, purged), so a test can stop its stand-in. Same lock rule.
	OnStop func(job *api.Job, allocID string)
	// MaxWait caps a blocking query's wait (default 10 minutes as Nomad;
	// tests may shorten it).
	MaxWait time.Duration
	Logger  *slog.Logger
}

// Server is the fake. Create it with New; Close it when done.
type Server struct {
	// IgnoreDisconnect models Nomad before 1.8, which ignores the group's
	// disconnect block and prevent_reschedule_on_lost: a lost allocation is
	// always replaced. Set it before the first request.
	IgnoreDisconnect bool

	opts Options
	ts   *httptest.Server
	log  *slog.Logger

	mu       sync.Mutex
	index    uint64
	tables   map[string]uint64
	changed  chan struct{} // closed and replaced on every write
	jobs     map[string]*jobRecord
	allocs   map[string]*allocRecord
	evals    map[string]*evalRecord
	nodes    []*nodeRecord
	nextPort int
	requests []string // "METHOD path?query", for assertions
}

// New starts a fake Nomad on a loopback port.
func New(opts Options) *Server {
	if opts.NodeMemoryMB == 0 {
		opts.NodeMemoryMB = 16384
	}
	if opts.NodeCPU == 0 {
		opts.NodeCPU = 8000
	}
	if opts.NodeAddr == "" {
		opts.NodeAddr = "127.0.0.1"
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger.With("component", "nomadfake"),
		tables:   map[string]uint64{},
		changed:  make(chan struct{}),
		jobs:     map[string]*jobRecord{},
		allocs:   map[string]*allocRecord{},
		evals:    map[string]*evalRecord{},
		nextPort: 20000,
	}
	for i := 0; i < max(opts.Nodes, 1); i++ {
		s.nodes = append(s.nodes, newNode(opts, i))
	}
	s.bump(tableNodes)
	s.ts = httptest.NewServer(s.routes())
	return s
}

// URL is the fake's address, for NOMAD_ADDR.
func (s *Server) URL() string { return s.ts.URL }

// Close stops the server.
func (s *Server) Close() { s.ts.Close() }

// NodeID is the first client node's id (the only one by default).
func (s *Server) NodeID() string { return s.nodes[0].ID }

// NodeIDs returns every client node's id, in scheduling order.
func (s *Server) NodeIDs() []string {
	ids := make([]string, len(s.nodes))
	for i, n := range s.nodes {
		ids[i] = n.ID
	}
	return ids
}

// Requests returns the requests served so far ("METHOD /path?query").
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// bump advances the raft index for table; the caller holds s.mu.
func (s *Server) bump(table string) uint64 {
	s.index++
	s.tables[table] = s.index
	close(s.changed)
	s.changed = make(chan struct{})
	return s.index
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/jobs", s.handleRegister)
	mux.HandleFunc("POST /v1/jobs", s.handleRegister)
	mux.HandleFunc("GET /v1/jobs", s.handleJobList)
	mux.HandleFunc("GET /v1/job/{id}", s.handleJobGet)
	mux.HandleFunc("DELETE /v1/job/{id}", s.handleDeregister)
	mux.HandleFunc("GET /v1/job/{id}/allocations", s.handleJobAllocs)
	mux.HandleFunc("GET /v1/job/{id}/summary", s.handleJobSummary)
	mux.HandleFunc("GET /v1/allocation/{id}", s.handleAllocGet)
	mux.HandleFunc("GET /v1/evaluation/{id}", s.handleEvalGet)
	mux.HandleFunc("GET /v1/node/{id}", s.handleNodeGet)
	mux.HandleFunc("PUT /v1/system/gc", s.handleGC)
	return s.record(mux)
}

func (s *Server) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		line := r.Method + " " + r.URL.Path
		if r.URL.RawQuery != "" {
			line += "?" + r.URL.RawQuery
		}
		s.requests = append(s.requests, line)
		s.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// read serves a blocking read: render runs under s.mu and returns the body
// (nil for 404 with notFound text) once table's index passes ?index, or when
// ?wait runs out.
func (s *Server) read(w http.ResponseWriter, r *http.Request, table string, render func() (any, string)) {
	minIndex, wait, err := blockingParams(r, s.opts.MaxWait)
	if err != nil {
		textError(w, http.StatusBadRequest, err.Error())
		return
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		idx := s.tables[table]
		if idx == 0 {
			idx = 1 // Nomad never reports index 0: clients would spin
		}
		if minIndex == 0 || idx > minIndex {
			body, notFound := render()
			s.mu.Unlock()
			writeRead(w, idx, body, notFound)
			return
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			s.mu.Lock()
			body, notFound := render()
			s.mu.Unlock()
			writeRead(w, idx, body, notFound)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func blockingParams(r *http.Request, maxWait time.Duration) (uint64, time.Duration, error) {
	q := r.URL.Query()
	var idx uint64
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("Invalid index: %v", err)
		}
		idx = n
	}
	wait := 5 * time.Minute // Nomad's default when only index is given
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, 0, fmt.Errorf("Invalid wait time: %v", err)
		}
		wait = d
	}
	return idx, min(wait, maxWait), nil
}

// writeRead sets the read headers Nomad sends on every read, 404 included.
func writeRead(w http.ResponseWriter, idx uint64, body any, notFound string) {
	h := w.Header()
	h.Set("X-Nomad-Index", strconv.FormatUint(idx, 10))
	h.Set("X-Nomad-Knownleader", "true")
	h.Set("X-Nomad-Lastcontact", "0")
	if notFound != "" {
		textError(w, http.StatusNotFound, notFound)
		return
	}
	writeJSON(w, body)
}

// writeWrite answers a write: only X-Nomad-Index as a header; the body
// repeats the write meta.
func writeWrite(w http.ResponseWriter, idx uint64, body map[string]any) {
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(idx, 10))
	body["Index"] = idx
	body["KnownLeader"] = false
	body["LastContact"] = 0
	body["NextToken"] = ""
	writeJSON(w, body)
}

func writeJSON(w http.ResponseWriter, body any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(body); err != nil {
		slog.Default().Warn("nomadfake: encode response", "err", err)
	}
}

// textError is how Nomad reports every error: text/plain, never JSON.
func textError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg))
}

// multierror renders errors as hashicorp/go-multierror does, which is the
// text Nomad returns for a job that fails validation.
func multierror(errs []string) string {
	points := make([]string, len(errs))
	for i, e := range errs {
		points[i] = "* " + e
	}
	if len(errs) == 1 {
		return fmt.Sprintf("1 error occurred:\n\t%s\n\n", points[0])
	}
	return fmt.Sprintf("%d errors occurred:\n\t%s\n\n", len(errs), strings.Join(points, "\n\t"))
}
