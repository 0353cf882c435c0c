package nomadfake

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
)

// jobRecord is a registered job and the fields Nomad keeps beside the spec.
type jobRecord struct {
	job *api.Job
}

func (j *jobRecord) stub(withMeta bool, summary *api.JobSummary) api.JobListStub {
	st := api.JobListStub{
		ID:             *j.job.ID,
		Name:           *j.job.Name,
		Namespace:      *j.job.Namespace,
		Datacenters:    j.job.Datacenters,
		Type:           *j.job.Type,
		Priority:       *j.job.Priority,
		Stop:           *j.job.Stop,
		Status:         *j.job.Status,
		JobSummary:     summary,
		CreateIndex:    *j.job.CreateIndex,
		ModifyIndex:    *j.job.ModifyIndex,
		JobModifyIndex: *j.job.JobModifyIndex,
		SubmitTime:     *j.job.SubmitTime,
	}
	if withMeta {
		st.Meta = j.job.Meta
	}
	return st
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Job *api.Job
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		textError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Job == nil {
		textError(w, http.StatusBadRequest, "Job must be specified")
		return
	}
	if req.Job.ID == nil || *req.Job.ID == "" {
		textError(w, http.StatusBadRequest, "Job ID hasn't been provided")
		return
	}
	job := req.Job
	canonicalize(job, r.URL.Query().Get("namespace"))
	if errs := validate(job); len(errs) > 0 {
		textError(w, http.StatusInternalServerError, multierror(errs))
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.bump(tableJobs)
	now := time.Now().UnixNano()
	key := jobKey(*job.Namespace, *job.ID)
	version := uint64(0)
	createIndex := idx
	if old, ok := s.jobs[key]; ok {
		version = *old.job.Version + 1
		createIndex = *old.job.CreateIndex
	}
	job.Version = &version
	job.CreateIndex = &createIndex
	job.ModifyIndex = ptr(idx)
	job.JobModifyIndex = ptr(idx)
	job.SubmitTime = &now
	job.Stop = ptr(false)
	job.Status = ptr("pending")
	job.StatusDescription = ptr("")
	s.jobs[key] = &jobRecord{job: job}
	ev := s.newEval(job, "job-register", idx)
	s.schedule(job, ev)
	s.setJobStatus(key)
	writeWrite(w, idx, map[string]any{
		"EvalID":          ev.ID,
		"EvalCreateIndex": idx,
		"JobModifyIndex":  idx,
		"Warnings":        "",
	})
}

func (s *Server) handleJobGet(w http.ResponseWriter, r *http.Request) {
	key := jobKey(namespace(r), r.PathValue("id"))
	s.read(w, r, tableJobs, func() (any, string) {
		j, ok := s.jobs[key]
		if !ok {
			return nil, "job not found"
		}
		return j.job, ""
	})
}

func (s *Server) handleJobSummary(w http.ResponseWriter, r *http.Request) {
	key := jobKey(namespace(r), r.PathValue("id"))
	s.read(w, r, tableJobs, func() (any, string) {
		j, ok := s.jobs[key]
		if !ok {
			return nil, "job not found"
		}
		return s.summary(j), ""
	})
}

func (s *Server) handleJobList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	match, err := parseFilter(q.Get("filter"))
	if err != nil {
		textError(w, http.StatusBadRequest, "failed to create result paginator: failed to read filter expression: "+err.Error())
		return
	}
	ns := namespace(r)
	prefix := q.Get("prefix")
	withMeta := q.Get("meta") == "true"
	s.read(w, r, tableJobs, func() (any, string) {
		out := []api.JobListStub{}
		for _, j := range s.jobs {
			if ns != "*" && *j.job.Namespace != ns {
				continue
			}
			if !strings.HasPrefix(*j.job.ID, prefix) || !match(j.job) {
				continue
			}
			out = append(out, j.stub(withMeta, s.summary(j)))
		}
		sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
		return out, ""
	})
}

func (s *Server) handleDeregister(w http.ResponseWriter, r *http.Request) {
	key := jobKey(namespace(r), r.PathValue("id"))
	purge := r.URL.Query().Get("purge") == "true"
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[key]
	if !ok {
		textError(w, http.StatusNotFound, "job not found")
		return
	}
	idx := s.bump(tableJobs)
	j.job.Stop = ptr(true)
	j.job.ModifyIndex = ptr(idx)
	j.job.JobModifyIndex = ptr(idx)
	ev := s.newEval(j.job, "job-deregister", idx)
	s.stopAllocs(*j.job.ID, *j.job.Namespace, "alloc not needed due to job update")
	for _, e := range s.evals {
		if e.JobID == *j.job.ID && e.Status == "blocked" {
			e.Status = "cancelled"
			e.ModifyIndex = idx
		}
	}
	if purge {
		delete(s.jobs, key)
	} else {
		s.setJobStatus(key)
	}
	writeWrite(w, idx, map[string]any{
		"EvalID":          ev.ID,
		"EvalCreateIndex": idx,
		"JobModifyIndex":  idx,
		"VolumeEvalID":    "",
		"VolumeEvalIndex": 0,
	})
}

// summary counts a job's allocations by client status, as /summary does.
func (s *Server) summary(j *jobRecord) *api.JobSummary {
	sum := &api.JobSummary{
		JobID:       *j.job.ID,
		Namespace:   *j.job.Namespace,
		Summary:     map[string]api.TaskGroupSummary{},
		Children:    &api.JobChildrenSummary{},
		CreateIndex: *j.job.CreateIndex,
		ModifyIndex: *j.job.ModifyIndex,
	}
	for _, tg := range j.job.TaskGroups {
		sum.Summary[*tg.Name] = api.TaskGroupSummary{}
	}
	for _, e := range s.evals {
		if e.JobID == *j.job.ID && e.Status == "blocked" {
			for tg, n := range e.QueuedAllocations {
				c := sum.Summary[tg]
				c.Queued += n
				sum.Summary[tg] = c
			}
		}
	}
	for _, a := range s.allocs {
		if a.JobID != *j.job.ID || a.Namespace != *j.job.Namespace || a.CreateIndex < *j.job.CreateIndex {
			continue
		}
		c := sum.Summary[a.TaskGroup]
		switch a.ClientStatus {
		case "pending":
			c.Starting++
		case "running":
			c.Running++
		case "failed":
			c.Failed++
		case "complete":
			c.Complete++
		case "lost":
			c.Lost++
		case "unknown":
			c.Unknown++
		}
		sum.Summary[a.TaskGroup] = c
	}
	return sum
}

// setJobStatus derives a job's status as Nomad does: dead when stopped or
// all its work is done, running while an allocation is live, else pending.
func (s *Server) setJobStatus(key string) {
	j, ok := s.jobs[key]
	if !ok {
		return
	}
	status := "pending"
	live, terminal, queued := false, false, false
	for _, a := range s.allocs {
		if a.JobID != *j.job.ID || a.Namespace != *j.job.Namespace || a.CreateIndex < *j.job.CreateIndex {
			continue
		}
		if a.terminal() {
			terminal = true
		} else {
			live = true
		}
	}
	for _, e := range s.evals {
		if e.JobID == *j.job.ID && (e.Status == "pending" || e.Status == "blocked") {
			queued = true
		}
	}
	switch {
	case *j.job.Stop:
		status = "dead"
	case live:
		status = "running"
	case queued:
		status = "pending"
	case terminal:
		status = "dead"
	}
	j.job.Status = &status
}

func namespace(r *http.Request) string {
	if ns := r.URL.Query().Get("namespace"); ns != "" {
		return ns
	}
	return "default"
}

func jobKey(ns, id string) string { return ns + "/" + id }

func ptr[T any](v T) *T { return &v }
