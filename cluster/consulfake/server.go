// Package consulfake is an in-process fake of the Consul agent and health
// endpoints that cluster discovery uses, for tests: service register and
// deregister, TTL check updates (a check not updated within its TTL turns
// critical), and /v1/health/service/:name with ?passing and blocking
// queries (?index, ?wait), answering with X-Consul-Index,
// X-Consul-Knownleader and X-Consul-Lastcontact as Consul does. One fake
// stands for the whole cluster's catalog.
package consulfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// Server is the fake; create it with New and Close it.
type Server struct {
	ts *httptest.Server

	mu       sync.Mutex
	index    uint64
	changed  chan struct{}
	services map[string]*service // by service id
	checks   map[string]*check   // by check id
}

type service struct {
	reg api.AgentServiceRegistration
}

type check struct {
	id, serviceID, name string
	status, output      string
	ttl                 time.Duration
	timer               *time.Timer
}

// New starts the fake on a loopback port.
func New() *Server {
	s := &Server{index: 1, changed: make(chan struct{}), services: map[string]*service{}, checks: map[string]*check{}}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/agent/service/register", s.handleRegister)
	mux.HandleFunc("PUT /v1/agent/service/deregister/{id}", s.handleDeregister)
	mux.HandleFunc("PUT /v1/agent/check/update/{id}", s.handleUpdate)
	mux.HandleFunc("PUT /v1/agent/check/pass/{id}", s.handleStatus("passing"))
	mux.HandleFunc("PUT /v1/agent/check/warn/{id}", s.handleStatus("warning"))
	mux.HandleFunc("PUT /v1/agent/check/fail/{id}", s.handleStatus("critical"))
	mux.HandleFunc("GET /v1/health/service/{name}", s.handleHealth)
	s.ts = httptest.NewServer(mux)
	return s
}

// Addr is host:port, for CONSUL_HTTP_ADDR.
func (s *Server) Addr() string { return s.ts.Listener.Addr().String() }

// Close stops the server and its TTL timers.
func (s *Server) Close() {
	s.ts.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.checks {
		if c.timer != nil {
			c.timer.Stop()
		}
	}
}

// CheckStatus returns a check's status ("" when unknown).
func (s *Server) CheckStatus(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.checks[id]; ok {
		return c.status
	}
	return ""
}

// bump advances the index and wakes blocking queries; the caller holds s.mu.
func (s *Server) bump() {
	s.index++
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	var reg api.AgentServiceRegistration
	if err := json.NewDecoder(r.Body).Decode(&reg); err != nil {
		textError(w, http.StatusBadRequest, "Request decode failed: "+err.Error())
		return
	}
	if reg.Name == "" {
		textError(w, http.StatusBadRequest, "Invalid Service: Missing service name")
		return
	}
	if reg.ID == "" {
		reg.ID = reg.Name
	}
	var cks []*api.AgentServiceCheck
	if reg.Check != nil {
		cks = append(cks, reg.Check)
	}
	cks = append(cks, reg.Checks...)
	var ttls []time.Duration
	for _, c := range cks {
		if c.TTL == "" {
			textError(w, http.StatusBadRequest, "Invalid check: TTL must be > 0 for TTL checks")
			return
		}
		d, err := time.ParseDuration(c.TTL)
		if err != nil || d <= 0 {
			textError(w, http.StatusBadRequest, fmt.Sprintf("Invalid check: TTL %q", c.TTL))
			return
		}
		ttls = append(ttls, d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked(reg.ID)
	s.services[reg.ID] = &service{reg: reg}
	for i, c := range cks {
		id := c.CheckID
		if id == "" {
			id = "service:" + reg.ID
			if len(cks) > 1 {
				id += ":" + strconv.Itoa(i+1)
			}
		}
		status := c.Status
		if status == "" {
			status = "critical" // Consul's initial state of a TTL check
		}
		ck := &check{id: id, serviceID: reg.ID, name: c.Name, status: status, ttl: ttls[i]}
		s.checks[id] = ck
		s.armLocked(ck)
	}
	s.bump()
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleDeregister(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.services[id]; !ok {
		textError(w, http.StatusNotFound, fmt.Sprintf("Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id))
		return
	}
	s.dropLocked(id)
	s.bump()
	w.WriteHeader(http.StatusOK)
}

func (s *Server) dropLocked(serviceID string) {
	delete(s.services, serviceID)
	for id, c := range s.checks {
		if c.serviceID == serviceID {
			if c.timer != nil {
				c.timer.Stop()
			}
			delete(s.checks, id)
		}
	}
}

func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request) {
	var body struct{ Status, Output string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		textError(w, http.StatusBadRequest, "Request decode failed: "+err.Error())
		return
	}
	s.setStatus(w, r.PathValue("id"), body.Status, body.Output)
}

func (s *Server) handleStatus(status string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.setStatus(w, r.PathValue("id"), status, r.URL.Query().Get("note"))
	}
}

func (s *Server) setStatus(w http.ResponseWriter, id, status, output string) {
	switch status {
	case "passing", "warning", "critical":
	default:
		textError(w, http.StatusBadRequest, fmt.Sprintf("Invalid check status: %q", status))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.checks[id]
	if !ok {
		textError(w, http.StatusNotFound, fmt.Sprintf("Unknown check ID %q. Ensure that the check ID is passed, not the check name.", id))
		return
	}
	if c.status != status || c.output != output {
		c.status, c.output = status, output
		s.bump()
	}
	s.armLocked(c)
	w.WriteHeader(http.StatusOK)
}

// armLocked restarts a check's TTL: when it runs out the check turns
// critical with Consul's "TTL expired" output.
func (s *Server) armLocked(c *check) {
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timer = time.AfterFunc(c.ttl, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if cur, ok := s.checks[c.id]; ok && cur == c && c.status != "critical" {
			c.status, c.output = "critical", "TTL expired"
			s.bump()
		}
	})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := r.URL.Query()
	_, passingOnly := q["passing"]
	if v := q.Get("passing"); v == "0" || v == "false" {
		passingOnly = false
	}
	var minIndex uint64
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			textError(w, http.StatusBadRequest, "Invalid index: "+v)
			return
		}
		minIndex = n
	}
	wait := 5 * time.Minute
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			textError(w, http.StatusBadRequest, "Invalid wait time: "+v)
			return
		}
		wait = min(d, 10*time.Minute)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		idx, ch := s.index, s.changed
		if minIndex == 0 || idx > minIndex {
			entries := s.entriesLocked(name, passingOnly)
			s.mu.Unlock()
			writeRead(w, idx, entries)
			return
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			s.mu.Lock()
			entries := s.entriesLocked(name, passingOnly)
			idx = s.index
			s.mu.Unlock()
			writeRead(w, idx, entries)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) entriesLocked(name string, passingOnly bool) []*api.ServiceEntry {
	out := []*api.ServiceEntry{}
	for id, svc := range s.services {
		if svc.reg.Name != name {
			continue
		}
		e := &api.ServiceEntry{
			Node: &api.Node{Node: "consul-fake", Address: "127.0.0.1", Datacenter: "dc1"},
			Service: &api.AgentService{
				ID: id, Service: svc.reg.Name, Tags: svc.reg.Tags, Address: svc.reg.Address,
				Port: svc.reg.Port, Meta: svc.reg.Meta,
			},
			Checks: api.HealthChecks{{Node: "consul-fake", CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing"}},
		}
		healthy := true
		for _, c := range s.checks {
			if c.serviceID != id {
				continue
			}
			e.Checks = append(e.Checks, &api.HealthCheck{
				Node: "consul-fake", CheckID: c.id, Name: c.name, Status: c.status, Output: c.output,
				ServiceID: id, ServiceName: svc.reg.Name, Type: "ttl",
			})
			if c.status != "passing" {
				healthy = false
			}
		}
		if passingOnly && !healthy {
			continue
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service.ID < out[j].Service.ID })
	return out
}

func writeRead(w http.ResponseWriter, idx uint64, body any) {
	h := w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(idx, 10))
	h.Set("X-Consul-Knownleader", "true")
	h.Set("X-Consul-Lastcontact", "0")
	h.Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

func textError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg))
}
