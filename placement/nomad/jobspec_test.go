package nomad

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

const jobsDir = "../../jobs"

// tree is an HCL body as plain values: attributes by name, blocks by type
// as lists of trees with their labels under "labels".
type tree = map[string]any

// parseHCL parses a job file and evaluates what it can with vars laid over
// the file's variable defaults; an attribute referring to Nomad's runtime
// (attr.*, node.*, NOMAD_*) is kept as "<runtime>".
func parseHCL(t *testing.T, path string, vars map[string]cty.Value) tree {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(path)
	if diags.HasErrors() {
		t.Fatalf("parse %s: %s", path, diags.Error())
	}
	body := f.Body.(*hclsyntax.Body)
	all := map[string]cty.Value{}
	for _, b := range body.Blocks {
		if b.Type != "variable" {
			continue
		}
		if a, ok := b.Body.Attributes["default"]; ok {
			v, d := a.Expr.Value(nil)
			if d.HasErrors() {
				t.Fatalf("%s: variable %s default: %s", path, b.Labels[0], d.Error())
			}
			all[b.Labels[0]] = v
		}
	}
	for k, v := range vars {
		all[k] = v
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(all)}}
	return toTree(t, body, ctx)
}

func toTree(t *testing.T, body *hclsyntax.Body, ctx *hcl.EvalContext) tree {
	out := tree{}
	for name, a := range body.Attributes {
		v, d := a.Expr.Value(ctx)
		if d.HasErrors() {
			out[name] = "<runtime>"
			continue
		}
		b, err := ctyjson.Marshal(v, v.Type())
		if err != nil {
			t.Fatalf("attribute %s: %v", name, err)
		}
		var g any
		if err := json.Unmarshal(b, &g); err != nil {
			t.Fatal(err)
		}
		out[name] = g
	}
	for _, b := range body.Blocks {
		sub := toTree(t, b.Body, ctx)
		if len(b.Labels) > 0 {
			sub["labels"] = b.Labels
		}
		list, _ := out[b.Type].([]tree)
		out[b.Type] = append(list, sub)
	}
	return out
}

func one(t *testing.T, tr tree, typ string) tree {
	t.Helper()
	l, _ := tr[typ].([]tree)
	if len(l) != 1 {
		t.Fatalf("want one %q block, have %d", typ, len(l))
	}
	return l[0]
}

// templateTo is the task's template block that renders dest.
func templateTo(t *testing.T, task tree, dest string) tree {
	t.Helper()
	l, _ := task["template"].([]tree)
	for _, tm := range l {
		if tm["destination"] == dest {
			return tm
		}
	}
	t.Fatalf("no template renders %s", dest)
	return nil
}

// norm makes Go and HCL values comparable: both through JSON.
func norm(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var g any
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestEveryJobFileParses(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(jobsDir, "*.hcl"))
	if err != nil || len(files) < 2 {
		t.Fatalf("job files: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			vars := map[string]cty.Value{"sandbox_id": cty.StringVal("x"), "image": cty.StringVal("i"), "agent_secret": cty.StringVal("s")}
			if tr := parseHCL(t, f, vars); len(tr["job"].([]tree)) != 1 {
				t.Errorf("%s: want exactly one job block", f)
			}
		})
	}
}

func TestSandboxdJobDeploysThreeServers(t *testing.T) {
	job := one(t, parseHCL(t, filepath.Join(jobsDir, "sandboxd.nomad.hcl"), nil), "job")
	up := one(t, job, "update")
	grp := one(t, job, "group")
	task := one(t, grp, "task")
	env := one(t, task, "env")
	checks := []struct {
		name      string
		got, want any
	}{
		{"type", job["type"], "service"},
		{"update.max_parallel", up["max_parallel"], 1.0},
		{"update.health_check", up["health_check"], "checks"},
		{"update.auto_revert", up["auto_revert"], true},
		{"count", grp["count"], 3.0},
		{"constraint", one(t, grp, "constraint")["operator"], "distinct_hosts"},
		{"raft volume", one(t, grp, "volume")["type"], "host"},
		{"volume mount", one(t, task, "volume_mount")["volume"], "raft"},
		{"service check path", one(t, one(t, grp, "service"), "check")["path"], "/health"},
		{"PLACEMENT_DRIVER", env["PLACEMENT_DRIVER"], "nomad"},
		{"BOOTSTRAP_EXPECT", env["BOOTSTRAP_EXPECT"], "3"},
		{"CONSUL_HTTP_ADDR", env["CONSUL_HTTP_ADDR"], "<runtime>"},
		{"secrets template env", templateTo(t, task, "secrets/sandboxd.env")["env"], true},
		{"SANDBOX_MODE", env["SANDBOX_MODE"], "production"},
		{"TLS_CA_FILE", env["TLS_CA_FILE"], "<runtime>"},
		{"TLS cert rendered", templateTo(t, task, "secrets/tls/node.pem")["perms"], "0400"},
		{"TLS key rendered", templateTo(t, task, "secrets/tls/node-key.pem")["perms"], "0400"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

// The template in jobs/ and the job the driver registers cannot drift:
// every field the template sets is compared with the driver's job for the
// same spec.
func TestSandboxTemplateMatchesDriverJob(t *testing.T) {
	d, err := New(Config{Address: "http://127.0.0.1:1", Cluster: "test", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	s := placement.Spec{ID: "sb1", Image: "cloud-sandbox/python:3.11", Resources: fsm.Resources{CPUCount: 0.5, MemoryMB: 256, DiskMB: 128}}
	job := d.Job(s, "s3cret", agent.TLSIdentity{CertPEM: []byte("cert"), KeyPEM: []byte("key")})
	vars := map[string]cty.Value{
		"sandbox_id": cty.StringVal("sb1"), "cluster": cty.StringVal("test"), "job_prefix": cty.StringVal("cs-test"),
		"image": cty.StringVal(s.Image), "cpu_mhz": cty.NumberIntVal(500), "memory_mb": cty.NumberIntVal(256),
		"disk_mb": cty.NumberIntVal(128), "agent_secret": cty.StringVal("s3cret"),
		"agent_tls_cert": cty.StringVal("cert"), "agent_tls_key": cty.StringVal("key"),
	}
	hj := one(t, parseHCL(t, filepath.Join(jobsDir, "sandbox.nomad.hcl"), vars), "job")
	hg := one(t, hj, "group")
	ht := one(t, hg, "task")
	hc := one(t, ht, "config")
	tg := job.TaskGroups[0]
	task := tg.Tasks[0]
	net := tg.Networks[0]
	kill, _ := time.ParseDuration(ht["kill_timeout"].(string))

	checks := []struct {
		name      string
		hcl, goes any
	}{
		{"job id", hj["id"], *job.ID},
		{"type", hj["type"], *job.Type},
		{"priority", hj["priority"], *job.Priority},
		{"datacenters", hj["datacenters"], job.Datacenters},
		{"meta", one(t, hj, "meta"), job.Meta},
		{"group", hg["labels"], []string{*tg.Name}},
		{"count", hg["count"], *tg.Count},
		{"restart attempts", one(t, hg, "restart")["attempts"], *tg.RestartPolicy.Attempts},
		{"restart mode", one(t, hg, "restart")["mode"], *tg.RestartPolicy.Mode},
		{"reschedule attempts", one(t, hg, "reschedule")["attempts"], *tg.ReschedulePolicy.Attempts},
		{"reschedule unlimited", one(t, hg, "reschedule")["unlimited"], *tg.ReschedulePolicy.Unlimited},
		{"no disconnect block (Nomad 1.6)", hg["disconnect"], nil},
		{"log files", one(t, ht, "logs")["max_files"], *task.LogConfig.MaxFiles},
		{"log file size", one(t, ht, "logs")["max_file_size"], *task.LogConfig.MaxFileSizeMB},
		{"ephemeral disk", one(t, hg, "ephemeral_disk")["size"], *tg.EphemeralDisk.SizeMB},
		{"network mode", one(t, hg, "network")["mode"], net.Mode},
		{"agent port", one(t, one(t, hg, "network"), "port")["labels"], []string{net.DynamicPorts[0].Label}},
		{"agent port to", one(t, one(t, hg, "network"), "port")["to"], net.DynamicPorts[0].To},
		{"task", ht["labels"], []string{task.Name}},
		{"driver", ht["driver"], task.Driver},
		{"user", ht["user"], task.User},
		{"kill timeout", kill, *task.KillTimeout},
		{"cpu", one(t, ht, "resources")["cpu"], *task.Resources.CPU},
		{"memory", one(t, ht, "resources")["memory"], *task.Resources.MemoryMB},
		{"memory max", one(t, ht, "resources")["memory_max"], *task.Resources.MemoryMaxMB},
		{"env", one(t, ht, "env"), task.Env},
		{"template count", len(ht["template"].([]tree)), len(task.Templates)},
	}
	for k, v := range task.Config {
		switch k {
		case "mount":
			var mounts []tree
			for _, m := range hc["mount"].([]tree) {
				if o, ok := m["tmpfs_options"].([]tree); ok {
					m["tmpfs_options"] = o[0]
				}
				mounts = append(mounts, m)
			}
			checks = append(checks, struct {
				name      string
				hcl, goes any
			}{"config.mount", mounts, v})
		case "logging":
			lg := one(t, hc, "logging")
			lg["config"] = lg["config"].([]tree)
			checks = append(checks, struct {
				name      string
				hcl, goes any
			}{"config.logging", lg, v})
		case "labels":
			checks = append(checks, struct {
				name      string
				hcl, goes any
			}{"config.labels", []any{hc["labels"]}, v})
		default:
			checks = append(checks, struct {
				name      string
				hcl, goes any
			}{"config." + k, hc[k], v})
		}
	}
	for k := range hc {
		if _, ok := task.Config[k]; !ok {
			t.Errorf("template sets config.%s, the driver does not", k)
		}
	}
	// Every file the driver renders into the task (secret, TLS certificate
	// and key) is rendered alike by the template.
	for _, tm := range task.Templates {
		ht := templateTo(t, ht, *tm.DestPath)
		checks = append(checks, []struct {
			name      string
			hcl, goes any
		}{
			{*tm.DestPath + " data", ht["data"], *tm.EmbeddedTmpl},
			{*tm.DestPath + " perms", ht["perms"], *tm.Perms},
			{*tm.DestPath + " uid", ht["uid"], *tm.Uid},
			{*tm.DestPath + " gid", ht["gid"], *tm.Gid},
			{*tm.DestPath + " change mode", ht["change_mode"], *tm.ChangeMode},
			{*tm.DestPath + " left delimiter", ht["left_delimiter"], *tm.LeftDelim},
			{*tm.DestPath + " right delimiter", ht["right_delimiter"], *tm.RightDelim},
		}...)
	}
	for _, c := range checks {
		if h, g := norm(t, c.hcl), norm(t, c.goes); !reflect.DeepEqual(h, g) {
			t.Errorf("%s: template %#v, driver %#v", c.name, h, g)
		}
	}
}

// The job's safety settings, and what a session's network choice changes.
func TestDriverJobShape(t *testing.T) {
	d, err := New(Config{Address: "http://127.0.0.1:1", Cluster: "test", Runtime: "runsc", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		network  bool
		wantMode string
		cpus     float64
		wantMHz  int
	}{
		{"no egress", false, DefaultNoEgressNetwork, 0.5, 500},
		{"egress", true, DefaultEgressNetwork, 2, 2000},
		{"default size", false, DefaultNoEgressNetwork, 0, 1000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			job := d.Job(placement.Spec{ID: "a", Image: "img", Network: tc.network, Resources: fsm.Resources{CPUCount: tc.cpus}}, "sec", agent.TLSIdentity{})
			tg := job.TaskGroups[0]
			task := tg.Tasks[0]
			checks := []struct {
				name      string
				got, want any
			}{
				{"restart attempts", *tg.RestartPolicy.Attempts, 0},
				{"reschedule attempts", *tg.ReschedulePolicy.Attempts, 0},
				{"reschedule unlimited", *tg.ReschedulePolicy.Unlimited, false},
				{"no disconnect block for 1.6", tg.Disconnect == nil, true},
				{"logs fit the ephemeral disk", *task.LogConfig.MaxFiles**task.LogConfig.MaxFileSizeMB < *tg.EphemeralDisk.SizeMB, true},
				{"no oom_score_adj (1.6 refuses it)", task.Config["oom_score_adj"], nil},
				{"network mode", tg.Networks[0].Mode, tc.wantMode},
				{"cpu MHz", *task.Resources.CPU, tc.wantMHz},
				{"memory: user's 512 + disk 512 + /tmp and /dev/shm 64 each", *task.Resources.MemoryMB, 512 + 512 + 2*64},
				{"memory max equal: no oversubscription", *task.Resources.MemoryMaxMB, *task.Resources.MemoryMB},
				{"cap_drop", task.Config["cap_drop"], []string{"ALL"}},
				{"readonly_rootfs", task.Config["readonly_rootfs"], true},
				{"security_opt", task.Config["security_opt"], []string{"no-new-privileges"}},
				{"user", task.User, "1000:1000"},
				{"runtime", task.Config["runtime"], "runsc"},
				{"meta cluster", job.Meta[MetaCluster], "test"},
				{"meta sandbox", job.Meta[MetaSandbox], "a"},
				{"job id", *job.ID, "cs-test-a"},
			}
			for _, c := range checks {
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
				}
			}
			if _, ok := task.Config["network_mode"]; ok {
				t.Error("task sets network_mode: it must join the group's network namespace")
			}
		})
	}
}

func TestJobFilesExist(t *testing.T) {
	for _, f := range []string{"sandbox.nomad.hcl", "sandboxd.nomad.hcl"} {
		if _, err := os.Stat(filepath.Join(jobsDir, f)); err != nil {
			t.Error(err)
		}
	}
}
