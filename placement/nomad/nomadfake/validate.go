package nomadfake

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// canonicalize fills what Nomad's server fills before validation; a missing
// Datacenters becomes ["*"] (fixture 19f/19g), a missing Type "service".
func canonicalize(job *api.Job, ns string) {
	if ns == "" {
		ns = "default"
	}
	if job.Namespace == nil || *job.Namespace == "" {
		job.Namespace = &ns
	}
	if job.Name == nil || *job.Name == "" {
		job.Name = ptr(*job.ID)
	}
	if job.Type == nil || *job.Type == "" {
		job.Type = ptr("service")
	}
	if job.Priority == nil || *job.Priority == 0 {
		job.Priority = ptr(50)
	}
	if len(job.Datacenters) == 0 {
		job.Datacenters = []string{"*"}
	}
	if job.NodePool == nil || *job.NodePool == "" {
		job.NodePool = ptr("default")
	}
	if job.Region == nil || *job.Region == "" {
		job.Region = ptr("global")
	}
	for _, tg := range job.TaskGroups {
		if tg.Count == nil {
			tg.Count = ptr(1)
		}
	}
}

// validate returns the errors Nomad's Job.Validate reports for the checks
// this fake knows, nested and worded as Nomad words them.
func validate(job *api.Job) []string {
	var errs []string
	switch *job.Type {
	case "service", "batch", "system", "sysbatch":
	default:
		errs = append(errs, fmt.Sprintf("Invalid job type: %q", *job.Type))
	}
	if len(job.TaskGroups) == 0 {
		errs = append(errs, "Missing job task groups")
	}
	for i, tg := range job.TaskGroups {
		name := ""
		if tg.Name != nil {
			name = *tg.Name
		}
		var tgErrs []string
		if name == "" {
			errs = append(errs, fmt.Sprintf("Job task group %d missing name", i+1))
			continue
		}
		if *tg.Count < 0 {
			tgErrs = append(tgErrs, "Task group count can't be negative")
		}
		if len(tg.Tasks) == 0 {
			tgErrs = append(tgErrs, "Missing tasks for task group")
		}
		if rp := tg.ReschedulePolicy; rp != nil && rp.Attempts != nil && *rp.Attempts < 0 {
			tgErrs = append(tgErrs, "Attempts must be >= 0")
		}
		for j, t := range tg.Tasks {
			if t.Name == "" {
				tgErrs = append(tgErrs, fmt.Sprintf("Task %d missing name", j+1))
				continue
			}
			var tErrs []string
			if t.Driver == "" {
				tErrs = append(tErrs, "Missing task driver")
			}
			if t.Resources != nil && t.Resources.MemoryMB != nil && *t.Resources.MemoryMB < 10 {
				tErrs = append(tErrs, fmt.Sprintf("minimum MemoryMB value is 10; got %d", *t.Resources.MemoryMB))
			}
			if len(tErrs) > 0 {
				tgErrs = append(tgErrs, fmt.Sprintf("Task %s validation failed: %s", t.Name, multierror(tErrs)))
			}
		}
		if len(tgErrs) > 0 {
			errs = append(errs, fmt.Sprintf("Task group %s validation failed: %s", name, multierror(tgErrs)))
		}
	}
	return errs
}

// filterClause is the one form of Nomad's bexpr filters this fake supports:
// Meta.key == "value", joined with "and".
var filterClause = regexp.MustCompile(`^\s*Meta\.([A-Za-z0-9_]+)\s*==\s*"([^"]*)"\s*$`)

// parseFilter turns a ?filter expression into a predicate. Anything it does
// not understand is refused, as an expression Nomad cannot parse is (400).
func parseFilter(expr string) (func(*api.Job) bool, error) {
	if strings.TrimSpace(expr) == "" {
		return func(*api.Job) bool { return true }, nil
	}
	type clause struct{ key, val string }
	var clauses []clause
	for _, part := range strings.Split(expr, " and ") {
		m := filterClause.FindStringSubmatch(part)
		if m == nil {
			return nil, fmt.Errorf("1:%d (%d): no match found, expected: \"-\", \"0\", \"\\\"\", \"`\", [ \\t\\r\\n], [1-9] or [a-zA-Z]", len(expr)+1, len(expr))
		}
		clauses = append(clauses, clause{m[1], m[2]})
	}
	return func(j *api.Job) bool {
		for _, c := range clauses {
			if v, ok := j.Meta[c.key]; !ok || v != c.val {
				return false
			}
		}
		return true
	}, nil
}
