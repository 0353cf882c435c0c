package nomadfake

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/nomad/api"
)

// allocRecord is one allocation; reported is false until the client first
// reports, when TaskStates, ClientDescription and NetworkStatus are absent.
type allocRecord struct {
	ID, EvalID, Name, Namespace, JobID, TaskGroup string
	NodeID, NodeName                              string
	JobType                                       string
	JobVersion                                    uint64
	Job                                           *api.Job
	DesiredStatus, DesiredDescription             string
	ClientStatus, ClientDescription               string
	TaskStates                                    map[string]*api.TaskState
	Ports                                         []api.PortMapping
	MemoryMB, CPU                                 int
	CreateIndex, ModifyIndex                      uint64
	CreateTime, ModifyTime                        int64
	reported                                      bool
}

func (a *allocRecord) terminal() bool {
	switch a.ClientStatus {
	case "complete", "failed", "lost":
		return true
	}
	return false
}

func (a *allocRecord) stub() api.AllocationListStub {
	st := api.AllocationListStub{
		ID: a.ID, EvalID: a.EvalID, Name: a.Name, Namespace: a.Namespace,
		NodeID: a.NodeID, NodeName: a.NodeName, JobID: a.JobID, JobType: a.JobType,
		JobVersion: a.JobVersion, TaskGroup: a.TaskGroup,
		DesiredStatus: a.DesiredStatus, DesiredDescription: a.DesiredDescription,
		ClientStatus: a.ClientStatus, ClientDescription: a.ClientDescription,
		TaskStates:  a.TaskStates,
		CreateIndex: a.CreateIndex, ModifyIndex: a.ModifyIndex,
		CreateTime: a.CreateTime, ModifyTime: a.ModifyTime,
		AllocatedResources: a.resources(),
	}
	return st
}

func (a *allocRecord) resources() *api.AllocatedResources {
	return &api.AllocatedResources{
		Shared: api.AllocatedSharedResources{DiskMB: 300, Ports: a.Ports},
		Tasks: map[string]*api.AllocatedTaskResources{
			a.TaskGroup: {
				Cpu:    api.AllocatedCpuResources{CpuShares: int64(a.CPU)},
				Memory: api.AllocatedMemoryResources{MemoryMB: int64(a.MemoryMB)},
			},
		},
	}
}

// full renders GET /v1/allocation/:id. A pending allocation the client has
// not reported on has no TaskStates, ClientDescription or NetworkStatus keys.
func (a *allocRecord) full() (map[string]any, error) {
	al := api.Allocation{
		ID: a.ID, Namespace: a.Namespace, EvalID: a.EvalID, Name: a.Name,
		NodeID: a.NodeID, NodeName: a.NodeName, JobID: a.JobID, Job: a.Job,
		TaskGroup: a.TaskGroup, AllocatedResources: a.resources(),
		DesiredStatus: a.DesiredStatus, DesiredDescription: a.DesiredDescription,
		ClientStatus: a.ClientStatus, ClientDescription: a.ClientDescription,
		TaskStates:    a.TaskStates,
		NetworkStatus: &api.AllocNetworkStatus{},
		CreateIndex:   a.CreateIndex, ModifyIndex: a.ModifyIndex, AllocModifyIndex: a.CreateIndex,
		CreateTime: a.CreateTime, ModifyTime: a.ModifyTime,
	}
	b, err := json.Marshal(al)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if !a.reported {
		delete(m, "TaskStates")
		delete(m, "ClientDescription")
		delete(m, "NetworkStatus")
	}
	return m, nil
}

// evalRecord is one evaluation.
type evalRecord struct {
	ID, Namespace, JobID, Type, TriggeredBy, Status string
	Priority                                        int
	JobModifyIndex, CreateIndex, ModifyIndex        uint64
	CreateTime, ModifyTime                          int64
	FailedTGAllocs                                  map[string]*api.AllocationMetric
	BlockedEval                                     string
	QueuedAllocations                               map[string]int
}

func (e *evalRecord) render() map[string]any {
	m := map[string]any{
		"ID": e.ID, "Namespace": e.Namespace, "JobID": e.JobID, "Type": e.Type,
		"TriggeredBy": e.TriggeredBy, "Status": e.Status, "Priority": e.Priority,
		"JobModifyIndex": e.JobModifyIndex, "CreateIndex": e.CreateIndex, "ModifyIndex": e.ModifyIndex,
		"CreateTime": e.CreateTime, "ModifyTime": e.ModifyTime,
		"QueuedAllocations": e.QueuedAllocations, "SnapshotIndex": e.CreateIndex,
	}
	if len(e.FailedTGAllocs) > 0 {
		m["FailedTGAllocs"] = e.FailedTGAllocs
	}
	if e.BlockedEval != "" {
		m["BlockedEval"] = e.BlockedEval
	}
	return m
}

// nodeRecord is one client node; Status is "ready" or "down".
type nodeRecord struct {
	ID, Name, Addr, Status string
}

func newNode(o Options, i int) *nodeRecord {
	name := "fake-client"
	if i > 0 {
		name = fmt.Sprintf("fake-client-%d", i+1)
	}
	return &nodeRecord{ID: uuid(), Name: name, Addr: o.NodeAddr, Status: "ready"}
}

func (n *nodeRecord) render() map[string]any {
	return map[string]any{
		"ID": n.ID, "Name": n.Name, "Datacenter": "dc1", "NodePool": "default",
		"Status": n.Status, "SchedulingEligibility": "eligible",
		"HTTPAddr":   n.Addr + ":4646",
		"Attributes": map[string]string{"unique.network.ip-address": n.Addr, "driver.docker": "1"},
	}
}

func (s *Server) newEval(job *api.Job, trigger string, idx uint64) *evalRecord {
	now := time.Now().UnixNano()
	e := &evalRecord{
		ID: uuid(), Namespace: *job.Namespace, JobID: *job.ID, Type: *job.Type,
		TriggeredBy: trigger, Status: "complete", Priority: *job.Priority,
		JobModifyIndex: idx, CreateIndex: idx, ModifyIndex: idx, CreateTime: now, ModifyTime: now,
		QueuedAllocations: map[string]int{},
	}
	s.evals[e.ID] = e
	s.bump(tableEvals)
	return e
}

// schedule places the job's groups on the node, or records why it cannot:
// an unplaceable group is not an error but an eval with FailedTGAllocs and
// a blocked eval. The caller holds s.mu.
func (s *Server) schedule(job *api.Job, ev *evalRecord) {
	if s.opts.HoldEvals {
		ev.Status = "pending"
		return
	}
	s.stopAllocs(*job.ID, *job.Namespace, "alloc not needed due to job update")
	for _, tg := range job.TaskGroups {
		mem, cpu := 0, 0
		for _, t := range tg.Tasks {
			if t.Resources != nil && t.Resources.MemoryMB != nil {
				mem += *t.Resources.MemoryMB
			}
			if t.Resources != nil && t.Resources.CPU != nil {
				cpu += *t.Resources.CPU
			}
		}
		if mem > s.opts.NodeMemoryMB || cpu > s.opts.NodeCPU {
			s.block(job, ev, *tg.Name, mem, cpu)
			continue
		}
		n, filtered := s.pickNode(job, tg)
		if n == nil {
			s.blockFiltered(job, ev, *tg.Name, filtered)
			continue
		}
		for i := 0; i < *tg.Count; i++ {
			s.place(job, ev, tg, i, mem, cpu, n)
		}
	}
}

// pickNode returns the first ready node that satisfies the job's and the
// group's node-id constraints (the only attribute the fake knows), and the
// constraints that filtered ready nodes out. Down nodes are not candidates,
// as in Nomad.
func (s *Server) pickNode(job *api.Job, tg *api.TaskGroup) (*nodeRecord, map[string]int) {
	filtered := map[string]int{}
	cons := append(append([]*api.Constraint(nil), job.Constraints...), tg.Constraints...)
next:
	for _, n := range s.nodes {
		if n.Status != "ready" {
			continue
		}
		for _, c := range cons {
			if c.LTarget != "${node.unique.id}" || (c.Operand != "=" && c.Operand != "==") {
				continue
			}
			if c.RTarget != n.ID {
				filtered[c.LTarget+" "+c.Operand+" "+c.RTarget]++
				continue next
			}
		}
		return n, nil
	}
	return nil, filtered
}

// blockFiltered records a group no ready node may run, as Nomad's eval does:
// NodesFiltered with the constraint that filtered them, and a blocked eval.
func (s *Server) blockFiltered(job *api.Job, ev *evalRecord, group string, filtered map[string]int) {
	ready, total := 0, 0
	for _, n := range filtered {
		total += n
	}
	for _, n := range s.nodes {
		if n.Status == "ready" {
			ready++
		}
	}
	ev.FailedTGAllocs = map[string]*api.AllocationMetric{group: {
		NodesEvaluated: ready, NodesFiltered: total, NodesInPool: len(s.nodes),
		NodesAvailable:     map[string]int{"dc1": ready},
		ConstraintFiltered: filtered,
	}}
	ev.QueuedAllocations[group] = 1
	blocked := s.newEval(job, ev.TriggeredBy, s.index)
	blocked.Status = "blocked"
	blocked.QueuedAllocations = map[string]int{group: 1}
	blocked.FailedTGAllocs = ev.FailedTGAllocs
	ev.BlockedEval = blocked.ID
}

func (s *Server) block(job *api.Job, ev *evalRecord, group string, mem, cpu int) {
	dim := map[string]int{}
	if mem > s.opts.NodeMemoryMB {
		dim["memory"] = 1
	} else {
		dim["cpu"] = 1
	}
	ev.FailedTGAllocs = map[string]*api.AllocationMetric{group: {
		NodesEvaluated: 1, NodesExhausted: 1, NodesInPool: 1,
		NodesAvailable:     map[string]int{"dc1": 1},
		DimensionExhausted: dim,
		ResourcesExhausted: map[string]*api.Resources{group: {MemoryMB: ptr(mem), CPU: ptr(cpu)}},
	}}
	ev.QueuedAllocations[group] = 1
	blocked := s.newEval(job, ev.TriggeredBy, s.index)
	blocked.Status = "blocked"
	blocked.QueuedAllocations = map[string]int{group: 1}
	blocked.FailedTGAllocs = ev.FailedTGAllocs
	ev.BlockedEval = blocked.ID
}

func (s *Server) place(job *api.Job, ev *evalRecord, tg *api.TaskGroup, i, mem, cpu int, node *nodeRecord) {
	idx := s.bump(tableAllocs)
	now := time.Now().UnixNano()
	a := &allocRecord{
		ID: uuid(), EvalID: ev.ID, Name: fmt.Sprintf("%s.%s[%d]", *job.ID, *tg.Name, i),
		Namespace: *job.Namespace, JobID: *job.ID, TaskGroup: *tg.Name, JobType: *job.Type,
		JobVersion: *job.Version, Job: job, NodeID: node.ID, NodeName: node.Name,
		DesiredStatus: "run", ClientStatus: "pending",
		MemoryMB: mem, CPU: cpu, CreateIndex: idx, ModifyIndex: idx, CreateTime: now, ModifyTime: now,
	}
	for _, n := range tg.Networks {
		for _, p := range n.ReservedPorts {
			v := p.Value
			if s.opts.PortFor != nil {
				v = s.opts.PortFor(job, p.Label, p.Value)
			}
			a.Ports = append(a.Ports, api.PortMapping{Label: p.Label, Value: v, To: p.To, HostIP: node.Addr})
		}
		for _, p := range n.DynamicPorts {
			v := 0
			if s.opts.PortFor != nil {
				v = s.opts.PortFor(job, p.Label, 0)
			}
			if v == 0 {
				v = s.nextPort
				s.nextPort++
			}
			a.Ports = append(a.Ports, api.PortMapping{Label: p.Label, Value: v, To: p.To, HostIP: node.Addr})
		}
	}
	s.allocs[a.ID] = a
	if s.opts.AutoRun {
		s.transition(a, "running", 0)
	}
}

// stopAllocs stops every live allocation of a job: Nomad kills the task
// (Terminated 143, Killed) and the client reports complete.
func (s *Server) stopAllocs(jobID, ns, why string) {
	for _, a := range s.allocs {
		if a.JobID != jobID || a.Namespace != ns || a.terminal() {
			continue
		}
		a.DesiredStatus = "stop"
		a.DesiredDescription = why
		s.transition(a, "complete", 143)
	}
}

// transition moves an allocation to a client status with the task events a
// Nomad client records for it. The caller holds s.mu.
func (s *Server) transition(a *allocRecord, status string, exitCode int) {
	idx := s.bump(tableAllocs)
	now := time.Now()
	if status != "running" && s.opts.OnStop != nil {
		s.opts.OnStop(a.Job, a.ID)
	}
	a.ModifyIndex, a.ModifyTime = idx, now.UnixNano()
	a.ClientStatus = status
	a.reported = true
	ts := a.TaskStates[a.TaskGroup]
	if a.TaskStates == nil || ts == nil {
		a.TaskStates = map[string]*api.TaskState{}
		ts = &api.TaskState{State: "pending"}
		a.TaskStates[a.TaskGroup] = ts
		ts.Events = append(ts.Events, event("Received", "Task received by client", now, nil))
	}
	switch status {
	case "running":
		ts.Events = append(ts.Events,
			event("Task Setup", "Building Task Directory", now, map[string]string{"message": "Building Task Directory"}),
			event("Started", "Task started by client", now, nil))
		ts.State, ts.StartedAt = "running", now
		a.ClientDescription = "Tasks are running"
	case "failed":
		ts.Events = append(ts.Events,
			event("Terminated", "Exit Code: "+strconv.Itoa(exitCode), now, map[string]string{"exit_code": strconv.Itoa(exitCode)}),
			event("Not Restarting", "Policy allows no restarts", now, nil))
		ts.State, ts.Failed, ts.FinishedAt = "dead", true, now
		a.ClientDescription = "Failed tasks"
	case "complete":
		if ts.State == "running" {
			ts.Events = append(ts.Events,
				event("Terminated", "Exit Code: "+strconv.Itoa(exitCode), now, map[string]string{"exit_code": strconv.Itoa(exitCode)}))
		}
		ts.Events = append(ts.Events, event("Killed", "Task successfully killed", now, nil))
		ts.State, ts.FinishedAt = "dead", now
		a.ClientDescription = "All tasks have completed"
	case "lost":
		ts.State = "dead"
		a.DesiredStatus = "stop"
		a.DesiredDescription = "alloc is lost since its node is down"
		a.ClientDescription = "alloc is lost since its node is down"
	}
	s.setJobStatus(jobKey(a.Namespace, a.JobID))
}

func event(typ, msg string, t time.Time, details map[string]string) *api.TaskEvent {
	if details == nil {
		details = map[string]string{}
	}
	return &api.TaskEvent{Type: typ, DisplayMessage: msg, Time: t.UnixNano(), Details: details}
}

func (s *Server) handleJobAllocs(w http.ResponseWriter, r *http.Request) {
	id, ns := r.PathValue("id"), namespace(r)
	s.read(w, r, tableAllocs, func() (any, string) {
		out := []api.AllocationListStub{}
		for _, a := range s.allocs {
			if a.JobID == id && a.Namespace == ns {
				out = append(out, a.stub())
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].CreateIndex < out[j].CreateIndex })
		return out, ""
	})
}

func (s *Server) handleAllocGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.read(w, r, tableAllocs, func() (any, string) {
		a, ok := s.allocs[id]
		if !ok {
			return nil, "alloc not found"
		}
		m, err := a.full()
		if err != nil {
			return nil, "alloc not found"
		}
		return m, ""
	})
}

func (s *Server) handleEvalGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.read(w, r, tableEvals, func() (any, string) {
		e, ok := s.evals[id]
		if !ok {
			return nil, "eval not found"
		}
		return e.render(), ""
	})
}

func (s *Server) handleNodeGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.read(w, r, tableNodes, func() (any, string) {
		for _, n := range s.nodes {
			if n.ID == id {
				return n.render(), ""
			}
		}
		return nil, "node not found"
	})
}

// handleGC forgets stopped and dead jobs, terminal allocations whose job is
// gone or dead, and their terminal evaluations. 200, empty body, no headers.
func (s *Server) handleGC(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, j := range s.jobs {
		if *j.job.Stop || *j.job.Status == "dead" {
			delete(s.jobs, key)
		}
	}
	for id, a := range s.allocs {
		if _, ok := s.jobs[jobKey(a.Namespace, a.JobID)]; !ok && a.terminal() {
			delete(s.allocs, id)
		}
	}
	for id, e := range s.evals {
		if _, ok := s.jobs[jobKey(e.Namespace, e.JobID)]; !ok && e.Status != "pending" {
			delete(s.evals, id)
		}
	}
	s.bump(tableJobs)
	s.bump(tableAllocs)
	s.bump(tableEvals)
	w.WriteHeader(http.StatusOK)
}

func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
