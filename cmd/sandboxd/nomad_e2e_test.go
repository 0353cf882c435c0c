package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNomadGuideFlow runs sandboxd with PLACEMENT_DRIVER=nomad against a
// real Nomad dev agent configured from deploy/nomad/, and walks what a user
// does through the API: the sandboxes are Nomad Docker tasks on this
// machine's Docker. Subtests share the agent and run in order.
func TestNomadGuideFlow(t *testing.T) {
	nomad := startNomad(t)
	cluster := uniqueCluster(t)
	archives := t.TempDir()
	env := map[string]string{
		"PLACEMENT_DRIVER":    "nomad",
		"NOMAD_ADDR":          nomad.addr,
		"SANDBOX_AGENT_PATH":  agentBin,
		"SANDBOX_ARCHIVE_DIR": archives,
		"POOL_MIN_SIZE":       "2",
		"POOL_MAX_SIZE":       "6",
		// A CPU is a core as the client reports it; a quarter lets a
		// 2-core test machine hold the pool and a few sessions.
		"SANDBOX_CPU_COUNT":   "0.25",
		"NOMAD_PLACE_TIMEOUT": "90s",
		// The missing-image case below names a registry on loopback.
		"SANDBOX_ALLOWED_IMAGES": "127.0.0.1:1/*",
		"ADMIN_USERS":            "root",
	}
	n := startNode(t, nodeOpts{cluster: cluster, env: env})
	prefix := "cs-" + cluster + "-"
	alice := n.login(t, "alice", "user")
	var timings []string
	note := func(format string, args ...any) {
		timings = append(timings, fmt.Sprintf(format, args...))
	}
	t.Cleanup(func() {
		t.Logf("Nomad suite timings (medians):\n  %s", strings.Join(timings, "\n  "))
	})

	t.Run("every job spec validates", func(t *testing.T) {
		files, _ := filepath.Glob("../../jobs/*.nomad.hcl")
		if len(files) == 0 {
			t.Fatal("no job specs in jobs/")
		}
		for _, f := range files {
			args := []string{"job", "validate"}
			if strings.HasSuffix(f, "sandbox.nomad.hcl") {
				args = append(args, "-var", "sandbox_id=validate", "-var", "image=python:3.11-slim", "-var", "agent_secret=x",
					"-var", "agent_tls_cert=x", "-var", "agent_tls_key=x")
			}
			if out, err := nomad.nomad(append(args, f)...); err != nil {
				t.Errorf("nomad job validate %s: %v\n%s", f, err, out)
			}
		}
	})

	t.Run("pool fills with hardened Nomad tasks", func(t *testing.T) {
		eventually(t, "2 idle sandboxes", 2*time.Minute, func() bool {
			var st struct{ Idle int }
			return alice.call("GET", "/api/v1/sandbox/stats", nil, &st) == nil && st.Idle == 2
		})
		if js := nomad.jobs(prefix); len(js) != 2 {
			t.Fatalf("nomad jobs %v, want one per pool sandbox", js)
		}
		id := clusterContainer(t, cluster)
		got := inspect(t, id, `{{.Config.User}}|{{.HostConfig.CapDrop}}|{{.HostConfig.ReadonlyRootfs}}|{{.HostConfig.SecurityOpt}}|{{.HostConfig.PidsLimit}}|{{.HostConfig.Memory}}|{{.HostConfig.Privileged}}`)
		// Memory: the session's 512 MiB beside its 512 MiB disk, /tmp and /dev/shm.
		want := fmt.Sprintf("1000:1000|[all]|true|[no-new-privileges]|256|%d|false", (512+512+2*64)<<20)
		if got != want {
			t.Errorf("docker inspect of a sandbox task:\n got %s\nwant %s", got, want)
		}
	})

	var sb sandboxView
	t.Run("acquire, exec, stream, files", func(t *testing.T) {
		var acquire []time.Duration
		start := time.Now()
		alice.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
		acquire = append(acquire, time.Since(start))
		if sb.Status != "active" || sb.IP != "" {
			t.Fatalf("acquired %+v, want active with no ip (no network)", sb)
		}
		// sandboxd reaches the agent over TLS pinned to its job's certificate.
		checkAgentTLS(t, nomad, prefix+sb.SandboxID, sb.ContainerID, n)
		var r execResult
		alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "code": "import os; print(os.getuid(), 6*7)"}, 200, &r)
		if r.Stdout != "1000 42\n" || r.ExitCode != 0 {
			t.Fatalf("python: %+v", r)
		}
		alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": "echo out; echo err >&2; exit 3"}, 200, &r)
		if r.Stdout != "out\n" || r.Stderr != "err\n" || r.ExitCode != 3 {
			t.Fatalf("command: %+v", r)
		}
		frames := alice.stream(sb.SandboxID, "for i in 1 2 3; do echo $i; done")
		if len(frames) == 0 || frames[len(frames)-1]["type"] != "result" || joinData(frames, "stdout") != "1\n2\n3\n" {
			t.Fatalf("stream frames %v", frames)
		}

		// Files: write, list, read, raw upload, mkdir, archive out and in, delete.
		alice.do("PUT", "/api/v1/files", map[string]any{"sandbox_id": sb.SandboxID, "path": "/workspace/a.py", "content": "print('a')"}, 200, nil)
		alice.do("POST", "/api/v1/files/mkdir", map[string]any{"sandbox_id": sb.SandboxID, "path": "/workspace/d"}, 200, nil)
		if code, body := alice.rawBody("PUT", "/api/v1/files/content?sandbox_id="+sb.SandboxID+"&path=/workspace/d/raw.bin", []byte{0, 1, 2, 255}, "application/octet-stream"); code != 200 {
			t.Fatalf("raw upload: %d %s", code, body)
		}
		raw, err := alice.raw("GET", "/api/v1/files/content?sandbox_id="+sb.SandboxID+"&path=/workspace/d/raw.bin")
		if err != nil || !bytes.Equal(raw, []byte{0, 1, 2, 255}) {
			t.Fatalf("raw read %v %v", raw, err)
		}
		tarball, err := alice.raw("GET", "/api/v1/files/archive?sandbox_id="+sb.SandboxID+"&path=/workspace")
		if err != nil {
			t.Fatal(err)
		}
		names := tarNames(t, tarball)
		if !slices.Contains(names, "a.py") || !slices.Contains(names, "d/raw.bin") {
			t.Fatalf("archive of /workspace holds %v", names)
		}
		if code, body := alice.rawBody("PUT", "/api/v1/files/archive?sandbox_id="+sb.SandboxID+"&path=/workspace/copy", tarball, "application/x-tar"); code != 200 {
			t.Fatalf("archive upload: %d %s", code, body)
		}
		alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": "python3 /workspace/copy/a.py && ls /workspace/copy/d"}, 200, &r)
		if r.Stdout != "a\nraw.bin\n" {
			t.Fatalf("files from the archive: %+v", r)
		}
		alice.do("DELETE", "/api/v1/files?sandbox_id="+sb.SandboxID+"&path=/workspace/a.py", nil, 200, nil)
		var files struct {
			Files []struct{ Name string } `json:"files"`
		}
		alice.do("GET", "/api/v1/files?sandbox_id="+sb.SandboxID+"&path=/workspace", nil, 200, &files)
		for _, f := range files.Files {
			if f.Name == "a.py" {
				t.Fatalf("a.py still listed after delete: %+v", files.Files)
			}
		}

		// Warm acquires via REST against Nomad's own register → running.
		for i := 0; i < 3; i++ {
			alice.waitIdle(t, 2*time.Minute)
			var more sandboxView
			start := time.Now()
			alice.do("POST", "/api/v1/sandbox/acquire", nil, 200, &more)
			acquire = append(acquire, time.Since(start))
			alice.do("POST", "/api/v1/sandbox/release", map[string]any{"sandbox_id": more.SandboxID}, 200, nil)
		}
		reg := nomad.registerToRunning(t, 3)
		note("warm acquire via REST %s vs Nomad register→running %s (%.0f×)", med(acquire), med(reg), ratio(med(reg), med(acquire)))

		var viaAgent, viaNomad []time.Duration
		for i := 0; i < 20; i++ {
			start := time.Now()
			alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": []string{"true"}}, 200, nil)
			viaAgent = append(viaAgent, time.Since(start))
		}
		for i := 0; i < 5; i++ {
			start := time.Now()
			if out, err := nomad.nomad("alloc", "exec", "-task", "sandbox", sb.ContainerID, "true"); err != nil {
				t.Fatalf("nomad alloc exec: %v %s", err, out)
			}
			viaNomad = append(viaNomad, time.Since(start))
		}
		note("exec true via REST→agent %s vs `nomad alloc exec` %s (%.0f×)", med(viaAgent), med(viaNomad), ratio(med(viaNomad), med(viaAgent)))
	})

	t.Run("no network: nothing outside the sandbox answers", func(t *testing.T) {
		probe := startProbe(t)
		gw := bridgeGateway(t, "cs-noegress0")
		host := listenAll(t)
		targets := []string{probe.addr, net.JoinHostPort(gw, host), net.JoinHostPort(dockerGateway(t), host)}
		var r execResult
		alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID,
			"command": append([]string{"python3", "-c", connectScript}, targets...), "timeout": 30}, 200, &r)
		for _, a := range targets {
			if !strings.Contains(r.Stdout, a+" blocked") {
				t.Errorf("no-network sandbox reached %s: %q %q", a, r.Stdout, r.Stderr)
			}
		}
	})

	// Egress under Nomad: the grant's firewall is installed by the job's
	// prestart task. The "internet" is two TEST-NET addresses the test puts
	// on the host's end of Nomad's bridge; the sandbox's routes to them
	// are on-link (set by the test in its namespace), so nothing leaves the
	// machine. An open grant reaching both proves the probe can succeed.
	t.Run("egress follows the grant", func(t *testing.T) {
		root := n.login(t, "root", "admin")
		alice.do("POST", "/api/v1/sessions", map[string]any{"network": true}, 403, nil)
		host := listenAll(t)
		publicA, publicB := "203.0.113.10", "203.0.113.11"
		probe := startProbe(t)
		cases := []struct {
			name  string
			allow []string
			open  []string
		}{
			{"open grant: public only", []string{}, []string{publicA, publicB}},
			{"allow-list", []string{publicA + "/32"}, []string{publicA}},
		}
		for i, tc := range cases {
			root.do("PUT", "/api/v1/egress/grants/user:alice", map[string]any{"allow": tc.allow}, 200, nil)
			var s sessionView
			alice.do("POST", "/api/v1/sessions", map[string]any{"network": true}, 201, &s)
			if i == 0 {
				// The bridge exists once a bridge-mode allocation runs.
				for _, a := range []string{publicA, publicB} {
					run(t, "ip", "addr", "add", a+"/32", "dev", "nomad")
					t.Cleanup(func() { exec.Command("ip", "addr", "del", a+"/32", "dev", "nomad").Run() })
				}
			}
			pid := inspect(t, sandboxContainer(t, cluster, s.SandboxID), "{{.State.Pid}}")
			for _, a := range []string{publicA, publicB} {
				run(t, "nsenter", "-t", pid, "-n", "ip", "route", "replace", a+"/32", "dev", "eth0")
			}
			targets := []string{net.JoinHostPort(publicA, host), net.JoinHostPort(publicB, host),
				net.JoinHostPort(bridgeGateway(t, "nomad"), host), net.JoinHostPort(dockerGateway(t), host), probe.addr}
			var r execResult
			alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": s.SandboxID,
				"command": append([]string{"python3", "-c", connectScript}, targets...), "timeout": 60}, 200, &r)
			for _, a := range targets {
				h, _, _ := net.SplitHostPort(a)
				want := " blocked"
				if slices.Contains(tc.open, h) {
					want = " open"
				}
				if !strings.Contains(r.Stdout, a+want) {
					t.Errorf("%s: %s not%s: %q %q", tc.name, a, want, r.Stdout, r.Stderr)
				}
			}
			alice.do("DELETE", "/api/v1/sessions/"+s.SessionID, nil, 200, nil)
		}
	})

	t.Run("nothing writable on the client's disk", func(t *testing.T) {
		var r execResult
		alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "timeout": 60,
			"command": "for d in /alloc/data /alloc/tmp /alloc/logs /alloc /local; do dd if=/dev/zero of=$d/fill bs=1M count=300 2>/dev/null && echo $d wrote || echo $d refused; done; echo x > /workspace/ok && echo workspace ok"}, 200, &r)
		for _, d := range []string{"/alloc/data", "/alloc/tmp", "/alloc/logs", "/alloc", "/local"} {
			if !strings.Contains(r.Stdout, d+" refused") {
				t.Errorf("write of 300 MiB into %s not refused: %q", d, r.Stdout)
			}
		}
		if !strings.Contains(r.Stdout, "workspace ok") {
			t.Errorf("/workspace not writable: %q %q", r.Stdout, r.Stderr)
		}
		big, _ := filepath.Glob(filepath.Join(nomad.dataDir, "alloc", sb.ContainerID, "*", "fill"))
		big2, _ := filepath.Glob(filepath.Join(nomad.dataDir, "alloc", sb.ContainerID, "*", "*", "fill"))
		if len(big)+len(big2) > 0 {
			t.Errorf("files left on the client's disk: %v %v", big, big2)
		}
	})

	t.Run("pause and resume keep /workspace, exec works at once", func(t *testing.T) {
		var s sessionView
		alice.do("POST", "/api/v1/sessions", map[string]any{}, 201, &s)
		alice.do("PUT", "/api/v1/files", map[string]any{"sandbox_id": s.SandboxID, "path": "/workspace/keep.txt", "content": "kept"}, 200, nil)
		var before sandboxView
		alice.do("GET", "/api/v1/sandbox/"+s.SandboxID, nil, 200, &before)
		certBefore := checkAgentTLS(t, nomad, prefix+s.SandboxID, before.ContainerID, n)
		alice.do("POST", "/api/v1/sessions/"+s.SessionID+"/pause", nil, 200, &s)
		eventually(t, "the paused sandbox's job stopped", time.Minute, func() bool {
			return !slices.Contains(nomad.jobs(prefix), prefix+s.SandboxID)
		})
		start := time.Now()
		alice.do("POST", "/api/v1/sessions/"+s.SessionID+"/resume", nil, 200, &s)
		var r execResult
		alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": s.SandboxID, "command": []string{"cat", "/workspace/keep.txt"}}, 200, &r)
		first := time.Since(start)
		if r.Stdout != "kept" || r.ExitCode != 0 {
			t.Fatalf("first exec after resume: %+v", r)
		}
		var after sandboxView
		alice.do("GET", "/api/v1/sandbox/"+s.SandboxID, nil, 200, &after)
		if after.ContainerID == before.ContainerID {
			t.Errorf("resume kept allocation %s; Nomad places a new one", after.ContainerID)
		}
		if checkAgentTLS(t, nomad, prefix+s.SandboxID, after.ContainerID, n) == certBefore {
			t.Errorf("the resumed allocation serves the paused one's certificate; want a new key")
		}
		note("resume → first successful exec %s (one try)", first.Round(time.Millisecond))
		alice.do("DELETE", "/api/v1/sessions/"+s.SessionID, nil, 200, nil)
	})

	t.Run("release purges the job", func(t *testing.T) {
		alice.do("POST", "/api/v1/sandbox/release", map[string]any{"sandbox_id": sb.SandboxID}, 200, nil)
		eventually(t, "job purged", time.Minute, func() bool {
			code, err := nomad.get("/v1/job/"+prefix+sb.SandboxID, nil)
			return err == nil && code == 404
		})
	})

	t.Run("a full cluster is answered at once", func(t *testing.T) {
		start := time.Now()
		code, body := alice.send("POST", "/api/v1/sessions", map[string]any{"cpu_count": 16}, nil)
		took := time.Since(start)
		if code != 503 || !strings.Contains(string(body), "exhausted") {
			t.Fatalf("a session no client can hold: %d %s, want 503 naming the exhausted resource", code, body)
		}
		note("unplaceable session answered in %s: %s", took.Round(time.Millisecond), body)
	})

	t.Run("a failure carries Nomad's own reason", func(t *testing.T) {
		// A registry on loopback that is not there: the pull fails at once,
		// and no traffic leaves the machine.
		img := "127.0.0.1:1/cloud-sandbox/missing:1"
		code, body := alice.send("POST", "/api/v1/sandbox/acquire", map[string]any{"image": img}, nil)
		if code/100 == 2 || !strings.Contains(string(body), img) || !strings.Contains(string(body), "Failed to pull") {
			t.Fatalf("acquire of a missing image: %d %s, want an error naming the image and Nomad's pull failure", code, body)
		}
		if !strings.Contains(n.logs.String(), "Failed to pull") {
			t.Errorf("sandboxd's log does not carry Nomad's reason")
		}
	})

	t.Run("kill -9 of sandboxd: its sandboxes are adopted", func(t *testing.T) {
		var s sessionView
		alice.do("POST", "/api/v1/sessions", map[string]any{}, 201, &s)
		jobsBefore := nomad.jobs(prefix)
		n.kill()
		n.start()
		var r execResult
		alice.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": s.SandboxID, "command": []string{"echo", "still here"}}, 200, &r)
		if r.Stdout != "still here\n" {
			t.Fatalf("exec after restart: %+v", r)
		}
		time.Sleep(3 * time.Second) // a resync: nothing adopted may go
		if js := nomad.jobs(prefix); !slices.Contains(js, prefix+s.SandboxID) || len(js) < len(jobsBefore) {
			t.Errorf("jobs after restart %v, before %v", js, jobsBefore)
		}
		alice.do("DELETE", "/api/v1/sessions/"+s.SessionID, nil, 200, nil)
	})

	t.Run("an orphan job is removed", func(t *testing.T) {
		orphan := prefix + "0rphan0000000001"
		nomad.registerOrphan(t, orphan, cluster)
		eventually(t, "orphan job removed", 2*time.Minute, func() bool {
			code, err := nomad.get("/v1/job/"+orphan, nil)
			return err == nil && code == 404
		})
	})

	t.Run("a killed container is replaced", func(t *testing.T) {
		alice.waitIdle(t, 2*time.Minute)
		var list struct {
			Sandboxes []struct {
				SandboxID string `json:"sandbox_id"`
				Status    string `json:"status"`
			} `json:"sandboxes"`
		}
		admin := n.login(t, "root", "admin")
		admin.do("GET", "/api/v1/sandboxes", nil, 200, &list)
		victim := ""
		for _, s := range list.Sandboxes {
			if s.Status == "idle" {
				victim = s.SandboxID
			}
		}
		if victim == "" {
			t.Fatalf("no idle sandbox in %+v", list.Sandboxes)
		}
		run(t, "docker", "kill", sandboxContainer(t, cluster, victim))
		eventually(t, "killed sandbox gone and the pool refilled", 2*time.Minute, func() bool {
			var st struct{ Idle int }
			code, _ := admin.send("GET", "/api/v1/sandbox/"+victim, nil, nil)
			return code == 404 && admin.call("GET", "/api/v1/sandbox/stats", nil, &st) == nil && st.Idle == 2
		})
	})
}

// stream runs a command through /execute/stream and returns its frames.
func (c *client) stream(sandboxID, command string) []map[string]any {
	c.t.Helper()
	body, _ := json.Marshal(map[string]any{"sandbox_id": sandboxID, "command": command})
	req, _ := http.NewRequest("POST", c.base+"/api/v1/execute/stream", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var frames []map[string]any
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var f map[string]any
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			c.t.Fatalf("stream line %q: %v", sc.Text(), err)
		}
		frames = append(frames, f)
	}
	return frames
}

func joinData(frames []map[string]any, typ string) string {
	var b strings.Builder
	for _, f := range frames {
		if f["type"] == typ {
			b.WriteString(fmt.Sprint(f["data"]))
		}
	}
	return b.String()
}

// rawBody sends body as is.
func (c *client) rawBody(method, path string, body []byte, contentType string) (int, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", contentType)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		names = append(names, strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/"))
	}
}

func med(d []time.Duration) time.Duration {
	return median(append([]time.Duration(nil), d...)).Round(10 * time.Microsecond)
}

func ratio(slow, fast time.Duration) float64 {
	if fast <= 0 {
		return 0
	}
	return float64(slow) / float64(fast)
}

func inspect(t *testing.T, id, format string) string {
	t.Helper()
	return strings.TrimSpace(run(t, "docker", "inspect", "-f", format, id))
}

// clusterContainer is one of the cluster's sandbox containers.
func clusterContainer(t *testing.T, cluster string) string {
	t.Helper()
	out := strings.Fields(run(t, "docker", "ps", "-q", "--filter", "label=cloud-sandbox.cluster="+cluster))
	if len(out) == 0 {
		t.Fatal("no sandbox container running")
	}
	return out[0]
}

// sandboxContainer is the container of one sandbox.
func sandboxContainer(t *testing.T, cluster, sandboxID string) string {
	t.Helper()
	out := strings.Fields(run(t, "docker", "ps", "-q", "--filter", "label=cloud-sandbox.cluster="+cluster,
		"--filter", "label=cloud-sandbox.sandbox="+sandboxID))
	if len(out) != 1 {
		t.Fatalf("containers of sandbox %s: %v", sandboxID, out)
	}
	return out[0]
}

// probe is a container of the test's own on Docker's default bridge that
// answers TCP: what a sandbox without network must not reach.
type probe struct{ addr string }

func startProbe(t *testing.T) probe {
	t.Helper()
	name := fmt.Sprintf("cs-probe-%d", time.Now().UnixNano())
	run(t, "docker", "run", "-d", "--name", name, "python:3.11-slim", "python3", "-m", "http.server", "8000")
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	ip := inspect(t, name, "{{.NetworkSettings.IPAddress}}")
	if ip == "" {
		t.Fatal("probe container has no address on the default bridge")
	}
	addr := net.JoinHostPort(ip, "8000")
	eventually(t, "probe answers from the host", 30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return probe{addr: addr}
}

// listenAll listens on every host address and returns the port.
func listenAll(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return portOf(ln.Addr().String())
}

func ifaceAddr(t *testing.T, name string) string {
	t.Helper()
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatalf("interface %s: %v", name, err)
	}
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	t.Fatalf("interface %s has no IPv4 address", name)
	return ""
}

// bridgeGateway is the host's address on the no-egress bridge.
func bridgeGateway(t *testing.T, bridge string) string { return ifaceAddr(t, bridge) }

// dockerGateway is the host's address on Docker's default bridge.
func dockerGateway(t *testing.T) string { return ifaceAddr(t, "docker0") }

// registerToRunning times Nomad itself: a plain docker job with the
// sandbox image and the no-egress network, registered until running.
func (a *nomadAgent) registerToRunning(t *testing.T, n int) []time.Duration {
	t.Helper()
	var out []time.Duration
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("cs-rawtiming-%d-%d", time.Now().UnixNano()%1e6, i)
		job := map[string]any{"Job": map[string]any{
			"ID": id, "Name": id, "Type": "batch", "Datacenters": []string{"*"},
			"TaskGroups": []any{map[string]any{
				"Name": "g", "Count": 1,
				"Networks":      []any{map[string]any{"Mode": "cni/cloud-sandbox-noegress"}},
				"EphemeralDisk": map[string]any{"SizeMB": 32},
				"Tasks": []any{map[string]any{
					"Name": "t", "Driver": "docker",
					"Config":    map[string]any{"image": "python:3.11-slim", "command": "sleep", "args": []string{"300"}},
					"LogConfig": map[string]any{"MaxFiles": 1, "MaxFileSizeMB": 1},
					"Resources": map[string]any{"CPU": 100, "MemoryMB": 64},
				}},
			}},
		}}
		body, _ := json.Marshal(job)
		start := time.Now()
		resp, err := http.Post(a.addr+"/v1/jobs", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("register timing job: %d", resp.StatusCode)
		}
		eventuallyFast(t, "timing job running", time.Minute, func() bool {
			var allocs []struct{ ClientStatus string }
			a.get("/v1/job/"+id+"/allocations", &allocs)
			return len(allocs) == 1 && allocs[0].ClientStatus == "running"
		})
		out = append(out, time.Since(start))
		a.nomad("job", "stop", "-purge", "-detach", id)
	}
	return out
}

// registerOrphan registers a job that looks like one of the cluster's
// sandboxes but is in no state: what a crashed control node leaves behind.
func (a *nomadAgent) registerOrphan(t *testing.T, id, cluster string) {
	t.Helper()
	job := map[string]any{"Job": map[string]any{
		"ID": id, "Name": id, "Type": "batch", "Datacenters": []string{"*"},
		"Meta": map[string]string{"cloud_sandbox_cluster": cluster, "sandbox_id": strings.TrimPrefix(id, "cs-"+cluster+"-"), "cloud_sandbox_managed": "true"},
		"TaskGroups": []any{map[string]any{
			"Name": "sandbox", "Count": 1,
			"EphemeralDisk": map[string]any{"SizeMB": 32},
			"Tasks": []any{map[string]any{
				"Name": "sandbox", "Driver": "docker",
				"Config":    map[string]any{"image": "python:3.11-slim", "command": "sleep", "args": []string{"300"}, "network_mode": "none"},
				"LogConfig": map[string]any{"MaxFiles": 1, "MaxFileSizeMB": 1},
				"Resources": map[string]any{"CPU": 100, "MemoryMB": 64},
			}},
		}},
	}}
	body, _ := json.Marshal(job)
	resp, err := http.Post(a.addr+"/v1/jobs", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("register orphan: %d %s", resp.StatusCode, b)
	}
}

func eventuallyFast(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// connectScript tries a TCP connection to each host:port argument and
// prints "<addr> open" or "<addr> blocked".
const connectScript = `import socket,sys
for a in sys.argv[1:]:
    h,p=a.rsplit(":",1)
    try:
        socket.create_connection((h,int(p)),timeout=2).close(); print(a,"open")
    except OSError as e:
        print(a,"blocked")`
