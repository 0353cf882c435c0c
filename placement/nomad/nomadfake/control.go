package nomadfake

import (
	"fmt"
	"sort"

	"github.com/hashicorp/nomad/api"
)

// What a test does to drive the cluster. Every method bumps the indexes a
// real client update would, so blocking readers wake.

// Allocs returns the ids of every allocation of a job in the default
// namespace, oldest first.
func (s *Server) Allocs(jobID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var as []*allocRecord
	for _, a := range s.allocs {
		if a.JobID == jobID {
			as = append(as, a)
		}
	}
	sort.Slice(as, func(i, j int) bool { return as[i].CreateIndex < as[j].CreateIndex })
	ids := make([]string, len(as))
	for i, a := range as {
		ids[i] = a.ID
	}
	return ids
}

// Job returns the registered job (nil when absent or purged).
func (s *Server) Job(jobID string) *api.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[jobKey("default", jobID)]
	if !ok {
		return nil
	}
	return j.job
}

// Run reports an allocation running.
func (s *Server) Run(allocID string) error { return s.set(allocID, "running", 0) }

// Fail reports an allocation's task exited with code and is not restarted.
func (s *Server) Fail(allocID string, code int) error { return s.set(allocID, "failed", code) }

// Lose reports an allocation's node down. As Nomad, the scheduler then
// places a replacement unless the group forbids it (disconnect.replace =
// false, or prevent_reschedule_on_lost) and IgnoreDisconnect is off.
func (s *Server) Lose(allocID string) error {
	if err := s.set(allocID, "lost", 0); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replaceLost(s.allocs[allocID])
	return nil
}

// NodeDown marks a client node down: it is no longer a scheduling
// candidate, and every live allocation on it is lost (and replaced as Lose
// says, on another node).
func (s *Server) NodeDown(nodeID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var node *nodeRecord
	for _, n := range s.nodes {
		if n.ID == nodeID {
			node = n
		}
	}
	if node == nil {
		return fmt.Errorf("nomadfake: node %s not found", nodeID)
	}
	node.Status = "down"
	s.bump(tableNodes)
	for _, a := range s.allocs {
		if a.NodeID == nodeID && !a.terminal() {
			s.transition(a, "lost", 0)
			s.replaceLost(a)
		}
	}
	return nil
}

// replaceLost schedules a replacement for a lost allocation unless the
// group forbids it. The caller holds s.mu.
func (s *Server) replaceLost(a *allocRecord) {
	j, ok := s.jobs[jobKey(a.Namespace, a.JobID)]
	if !ok || *j.job.Stop {
		return
	}
	for _, tg := range j.job.TaskGroups {
		if *tg.Name != a.TaskGroup {
			continue
		}
		if !s.IgnoreDisconnect && preventsReplace(tg) {
			return
		}
		ev := s.newEval(j.job, "node-update", s.index)
		n, filtered := s.pickNode(j.job, tg)
		if n == nil {
			s.blockFiltered(j.job, ev, *tg.Name, filtered)
			continue
		}
		s.place(j.job, ev, tg, 0, a.MemoryMB, a.CPU, n)
		s.setJobStatus(jobKey(a.Namespace, a.JobID))
	}
}

func preventsReplace(tg *api.TaskGroup) bool {
	if tg.Disconnect != nil && tg.Disconnect.Replace != nil && !*tg.Disconnect.Replace {
		return true
	}
	return tg.PreventRescheduleOnLost != nil && *tg.PreventRescheduleOnLost
}

// ReleaseEvals lets a held scheduler place the pending evaluations' jobs.
func (s *Server) ReleaseEvals() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.HoldEvals = false
	for _, e := range s.evals {
		if e.Status != "pending" {
			continue
		}
		j, ok := s.jobs[jobKey(e.Namespace, e.JobID)]
		e.Status = "complete"
		e.ModifyIndex = s.bump(tableEvals)
		if ok && !*j.job.Stop {
			s.schedule(j.job, e)
			s.setJobStatus(jobKey(e.Namespace, e.JobID))
		}
	}
}

func (s *Server) set(allocID, status string, code int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.allocs[allocID]
	if !ok {
		return fmt.Errorf("nomadfake: alloc %s not found", allocID)
	}
	if a.terminal() {
		return fmt.Errorf("nomadfake: alloc %s is already %s", allocID, a.ClientStatus)
	}
	s.transition(a, status, code)
	return nil
}
