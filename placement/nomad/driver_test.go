package nomad

import (
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
	"github.com/cloud-sandbox/cloud-sandbox/placement/nomad/nomadfake"
)

var spec = placement.Spec{ID: "sb1", Image: "cloud-sandbox/python:3.11", Resources: fsm.Resources{CPUCount: 0.5, MemoryMB: 256, DiskMB: 128}}

func TestCreateRunsAndServesExecAndFiles(t *testing.T) {
	e := newEnv(t, nomadfake.Options{AutoRun: true}, nil)
	ctx := ctxT(t)
	p, err := e.d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	allocs := e.fake.Allocs("cs-test-sb1")
	if len(allocs) != 1 {
		t.Fatalf("allocations = %v, want one", allocs)
	}
	if p.Driver != "nomad" || p.Node != e.fake.NodeID() || p.ContainerID != allocs[0] {
		t.Errorf("placement = %+v, want driver nomad on node %s alloc %s", p, e.fake.NodeID(), allocs[0])
	}
	if !regexp.MustCompile(`^https://127\.0\.0\.1:\d+$`).MatchString(p.AgentEndpoint) {
		t.Errorf("endpoint = %q, want https://<node ip>:<mapped port>", p.AgentEndpoint)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(p.AgentSecret) {
		t.Errorf("secret = %q, want 32 random bytes in hex", p.AgentSecret)
	}
	// The pin is the certificate the job gave the agent, which the agent
	// reads beside its secret with its key, both for the sandbox's uid only.
	job := e.fake.Job("cs-test-sb1")
	if pin, err := agent.CertSHA256([]byte(jobTemplate(job, tlsCertFile))); err != nil || p.AgentCertSHA256 != pin {
		t.Errorf("pin = %q, want the job's certificate %q (%v)", p.AgentCertSHA256, pin, err)
	}
	for _, tm := range job.TaskGroups[0].Tasks[0].Templates {
		if *tm.Perms != "0400" || *tm.Uid != placement.SandboxUID {
			t.Errorf("template %s: perms %s uid %d, want 0400 for the sandbox's uid", *tm.DestPath, *tm.Perms, *tm.Uid)
		}
	}
	if jobTemplate(job, tlsKeyFile) == "" {
		t.Error("the job gives the agent no TLS key")
	}

	c := agent.NewPinnedClient(p.AgentEndpoint, p.AgentSecret, p.AgentCertSHA256)
	defer c.Close()
	res, err := c.Exec(ctx, agent.ExecRequest{Shell: "echo hello from $HOME"})
	if err != nil {
		t.Fatalf("exec over the agent port: %v", err)
	}
	if res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "hello from "+e.ws {
		t.Errorf("exec = %+v", res)
	}
	if _, err := c.WriteFile(ctx, e.ws+"/a.txt", strings.NewReader("data"), 0o644); err != nil {
		t.Fatalf("write file: %v", err)
	}
	rc, err := c.ReadFile(ctx, e.ws+"/a.txt")
	if err != nil {
		t.Fatalf("read file: %v", err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "data" {
		t.Errorf("read back %q, want data", got)
	}
	bad := agent.NewPinnedClient(p.AgentEndpoint, strings.Repeat("0", 64), p.AgentCertSHA256)
	defer bad.Close()
	var aerr *agent.Error
	if _, err := bad.Exec(ctx, agent.ExecRequest{Argv: []string{"true"}}); !errors.As(err, &aerr) || aerr.Status != http.StatusUnauthorized {
		t.Errorf("exec with a wrong secret: %v, want 401", err)
	}
	wrongPin := agent.NewPinnedClient(p.AgentEndpoint, p.AgentSecret, strings.Repeat("0", 64))
	defer wrongPin.Close()
	if _, err := wrongPin.Health(ctx); !errors.Is(err, agent.ErrCertMismatch) {
		t.Errorf("health with a wrong pin: %v, want ErrCertMismatch", err)
	}
	plain := agent.NewClient(strings.Replace(p.AgentEndpoint, "https://", "http://", 1), p.AgentSecret)
	defer plain.Close()
	if _, err := plain.Health(ctx); err == nil {
		t.Error("the agent answered plain http")
	}

	list, err := e.d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].SandboxID != "sb1" || !list[0].Running || list[0].Placement.ContainerID != allocs[0] {
		t.Errorf("list = %+v, want sb1 running", list)
	}

	for i := 0; i < 2; i++ { // the second destroy finds nothing: still success
		if err := e.d.Destroy(ctx, "sb1", p); err != nil {
			t.Fatalf("destroy %d: %v", i, err)
		}
	}
	if e.fake.Job("cs-test-sb1") != nil {
		t.Error("job still registered after destroy: want purged")
	}
	if list, _ := e.d.List(ctx); len(list) != 0 {
		t.Errorf("list after destroy = %+v, want empty", list)
	}
}

// A destroy that arrives late, naming the allocation of a job purged since,
// leaves the job registered anew under the same sandbox id.
func TestDestroyOldAllocationKeepsNewerJob(t *testing.T) {
	e := newEnv(t, nomadfake.Options{AutoRun: true}, nil)
	ctx := ctxT(t)
	old, err := e.d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := e.d.Destroy(ctx, spec.ID, old); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	newer, err := e.d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("second create: %v", err)
	}
	if err := e.d.Destroy(ctx, spec.ID, old); err != nil {
		t.Fatalf("late destroy of the old allocation: %v", err)
	}
	if e.fake.Job("cs-test-sb1") == nil {
		t.Fatal("the newer job was purged by a destroy naming the old allocation")
	}
	list, err := e.d.List(ctx)
	if err != nil || len(list) != 1 || list[0].Placement.ContainerID != newer.ContainerID || !list[0].Running {
		t.Fatalf("list = %+v, %v; want the newer allocation %s running", list, err, newer.ContainerID)
	}
	if err := e.d.Destroy(ctx, spec.ID, newer); err != nil {
		t.Fatalf("destroy of the newer allocation: %v", err)
	}
	if e.fake.Job("cs-test-sb1") != nil {
		t.Error("job still registered after the destroy naming its allocation")
	}
}

func TestCreateFailuresPurgeTheJob(t *testing.T) {
	cases := []struct {
		name  string
		opts  nomadfake.Options
		res   fsm.Resources
		drive func(e *env)
		check func(t *testing.T, err error)
	}{
		{
			name:  "task exits",
			drive: func(e *env) { _ = e.fake.Fail(e.waitAlloc("cs-test-sb1", 1), 1) },
			check: func(t *testing.T, err error) {
				var af *AllocFailedError
				if !errors.As(err, &af) || af.Status != "failed" || !strings.Contains(af.Reason, "Exit Code: 1") {
					t.Errorf("err = %v, want AllocFailedError failed with exit code 1", err)
				}
			},
		},
		{
			name: "unplaceable",
			opts: nomadfake.Options{NodeMemoryMB: 1024},
			res:  fsm.Resources{MemoryMB: 10000000},
			check: func(t *testing.T, err error) {
				var ue *UnplaceableError
				if !errors.As(err, &ue) || ue.Exhausted["memory"] != 1 {
					t.Errorf("err = %v, want UnplaceableError with memory exhausted", err)
				}
			},
		},
		{
			name: "scheduler slower than the timeout",
			opts: nomadfake.Options{HoldEvals: true},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrPlaceTimeout) {
					t.Errorf("err = %v, want ErrPlaceTimeout", err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts, func(c *Config) { c.PlaceTimeout = 400 * time.Millisecond })
			if tc.drive != nil {
				go tc.drive(e)
			}
			s := spec
			if tc.res.MemoryMB != 0 {
				s.Resources = tc.res
			}
			_, err := e.d.Create(ctxT(t), s)
			tc.check(t, err)
			if j := e.fake.Job("cs-test-sb1"); j != nil {
				t.Errorf("job left registered after a failed create: status %s", *j.Status)
			}
		})
	}
}

func TestLostAllocationIsNotRunning(t *testing.T) {
	cases := []struct {
		name       string
		oldNomad   bool // before 1.8 the disconnect block is ignored
		wantAllocs int
	}{
		// Nomad 1.6 has no disconnect block: it replaces a lost allocation.
		{"nomad replaces it anyway", true, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nomadfake.Options{AutoRun: true}, nil)
			e.fake.IgnoreDisconnect = tc.oldNomad
			ctx := ctxT(t)
			p, err := e.d.Create(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.fake.Lose(p.ContainerID); err != nil {
				t.Fatal(err)
			}
			if n := len(e.fake.Allocs("cs-test-sb1")); n != tc.wantAllocs {
				t.Errorf("allocations after loss = %d, want %d", n, tc.wantAllocs)
			}
			list, err := e.d.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 || list[0].Running || !strings.Contains(list[0].Status, "lost") {
				t.Errorf("list = %+v, want sb1 not running, status lost", list)
			}
			if list[0].Placement.ContainerID != p.ContainerID {
				t.Errorf("listed alloc %s, want the original %s", list[0].Placement.ContainerID, p.ContainerID)
			}
		})
	}
}

func TestPauseResumeKeepsWorkspaceFiles(t *testing.T) {
	cases := []struct {
		name  string
		nodes int
		// originalDown takes the node the sandbox ran on down while paused.
		originalDown bool
		// wantNode picks the node the resumed sandbox must run on.
		wantNode func(e *env, original string) string
	}{
		{name: "same node still there", nodes: 1,
			wantNode: func(_ *env, original string) string { return original }},
		{name: "original node gone, resumes on another", nodes: 2, originalDown: true,
			wantNode: func(e *env, _ string) string { return e.fake.NodeIDs()[1] }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nomadfake.Options{AutoRun: true, Nodes: tc.nodes}, nil)
			ctx := ctxT(t)
			p, err := e.d.Create(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			c := agent.NewPinnedClient(p.AgentEndpoint, p.AgentSecret, p.AgentCertSHA256)
			defer c.Close()
			if _, err := c.WriteFile(ctx, e.ws+"/src/main.py", strings.NewReader("print(42)\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				if err := e.d.Pause(ctx, "sb1"); err != nil {
					t.Fatalf("pause %d: %v", i, err)
				}
			}
			if j := e.fake.Job("cs-test-sb1"); j == nil || !*j.Stop {
				t.Error("job not stopped while paused")
			}
			if _, err := c.Health(ctx); err == nil {
				t.Error("agent still answers while paused: want the task stopped")
			}
			list, err := e.d.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 || !list[0].Paused || !list[0].Running {
				t.Errorf("list while paused = %+v, want sb1 paused", list)
			}
			if tc.originalDown {
				if err := e.fake.NodeDown(p.Node); err != nil {
					t.Fatal(err)
				}
			}

			np, moved, err := e.d.Resume(ctx, "sb1")
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			allocs := e.fake.Allocs("cs-test-sb1")
			if !moved || np.ContainerID != allocs[len(allocs)-1] || np.Node != tc.wantNode(e, p.Node) {
				t.Errorf("resume = %+v moved %v, want moved to the new alloc %s on node %s", np, moved, allocs[len(allocs)-1], tc.wantNode(e, p.Node))
			}
			// The files are back, at the endpoint and with the secret Resume reported.
			nc := agent.NewPinnedClient(np.AgentEndpoint, np.AgentSecret, np.AgentCertSHA256)
			defer nc.Close()
			rc, err := nc.ReadFile(ctx, e.ws+"/src/main.py")
			if err != nil {
				t.Fatalf("read after resume at %s: %v", np.AgentEndpoint, err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != "print(42)\n" {
				t.Errorf("file after resume = %q", got)
			}
			// A new allocation has a new key; the old certificate is refused.
			if np.AgentCertSHA256 == "" || np.AgentCertSHA256 == p.AgentCertSHA256 || np.AgentSecret != p.AgentSecret {
				t.Errorf("resumed pin %q secret %q; want a new pin (old %q) and the same secret", np.AgentCertSHA256, np.AgentSecret, p.AgentCertSHA256)
			}
			oldPin := agent.NewPinnedClient(np.AgentEndpoint, np.AgentSecret, p.AgentCertSHA256)
			defer oldPin.Close()
			if _, err := oldPin.Health(ctx); !errors.Is(err, agent.ErrCertMismatch) {
				t.Errorf("resumed agent with the old pin: %v, want ErrCertMismatch", err)
			}
			if len(allocs) != 2 {
				t.Errorf("allocations = %d, want the original and the resumed one", len(allocs))
			}
			list, _ = e.d.List(ctx)
			if len(list) != 1 || list[0].Paused || !list[0].Running || list[0].Placement.ContainerID != np.ContainerID {
				t.Errorf("list after resume = %+v, want sb1 running in %s", list, np.ContainerID)
			}
			// Running already: success, and where it runs, in case the first
			// result was never recorded.
			again, moved, err := e.d.Resume(ctx, "sb1")
			if err != nil || !moved || again != np {
				t.Errorf("resume of a running sandbox = %+v moved %v err %v, want %+v moved", again, moved, err, np)
			}
		})
	}
}

func TestResumeWithNoNodeLeftStaysPaused(t *testing.T) {
	e := newEnv(t, nomadfake.Options{AutoRun: true}, nil)
	ctx := ctxT(t)
	p, err := e.d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.d.Pause(ctx, "sb1"); err != nil {
		t.Fatal(err)
	}
	if err := e.fake.NodeDown(p.Node); err != nil {
		t.Fatal(err)
	}
	var ue *UnplaceableError
	if _, moved, err := e.d.Resume(ctx, "sb1"); !errors.As(err, &ue) || moved {
		t.Fatalf("resume with every node down = moved %v, %v; want *UnplaceableError", moved, err)
	}
	list, err := e.d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !list[0].Paused {
		t.Errorf("list after failed resume = %+v, want sb1 still paused (archive kept for a retry)", list)
	}
}

func TestUpdateRefusesLimitChanges(t *testing.T) {
	e := newEnv(t, nomadfake.Options{}, nil)
	if err := e.d.Update(ctxT(t), "sb1", fsm.Resources{MemoryMB: 1024}); !errors.Is(err, ErrLimitsFixed) {
		t.Errorf("update = %v, want ErrLimitsFixed", err)
	}
}

// setAgentTLS gives a job the agent's certificate and key once: a job from
// before agents served TLS gains them, a resumed one has them replaced.
func TestSetAgentTLSReplaces(t *testing.T) {
	d, err := New(Config{Address: "http://127.0.0.1:1", Cluster: "test", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	task := api.NewTask(taskName, "docker")
	task.Templates = []*api.Template{secretTemplate(secretFile, "s")}
	job := &api.Job{ID: ptr("j"), TaskGroups: []*api.TaskGroup{{Tasks: []*api.Task{task}}}}
	for i := 0; i < 2; i++ {
		id, err := d.newAgentTLS("sb1")
		if err != nil {
			t.Fatal(err)
		}
		setAgentTLS(task, id)
		if len(task.Templates) != 3 || jobSecret(job) != "s" || jobTemplate(job, tlsKeyFile) != string(id.KeyPEM) {
			t.Fatalf("round %d: %d templates, secret %q", i, len(task.Templates), jobSecret(job))
		}
		p, err := agentAccess(fsmPlacement("http://10.0.0.1:2000"), job)
		if err != nil || p.AgentEndpoint != "https://10.0.0.1:2000" || p.AgentCertSHA256 != id.SHA256 || p.AgentSecret != "s" {
			t.Fatalf("round %d: placement %+v, %v; want https pinned to %s", i, p, err, id.SHA256)
		}
	}
	// A job without a certificate (registered before TLS) keeps plain http.
	task.Templates = task.Templates[:1]
	if p, err := agentAccess(fsmPlacement("http://10.0.0.1:2000"), job); err != nil || p.AgentEndpoint != "http://10.0.0.1:2000" || p.AgentCertSHA256 != "" {
		t.Fatalf("job without TLS: %+v, %v", p, err)
	}
	// A certificate that does not parse fails rather than downgrading.
	task.Templates = append(task.Templates, secretTemplate(tlsCertFile, "not a certificate"))
	if _, err := agentAccess(fsmPlacement("http://10.0.0.1:2000"), job); err == nil {
		t.Fatal("a job with a broken certificate: no error")
	}
}

func fsmPlacement(endpoint string) fsm.Placement {
	return fsm.Placement{Driver: "nomad", AgentEndpoint: endpoint}
}
