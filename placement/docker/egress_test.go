package docker

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// The egress tests build their own little internet on the default bridge,
// where egress sandboxes live: a "world" container answers on its bridge
// address and on addresses it takes as aliases, standing in for a public
// server (203.0.113.10, .11), the control plane (203.0.113.12), a host on
// a private network (10.99.0.5) and the cloud metadata service
// (169.254.169.254). Every probe's route to those addresses is on-link,
// set by the test in the prober's namespace, so no packet can leave this
// machine whatever the firewall does. A plain container with the same
// routes proves each address answers; then the sandbox must reach exactly
// what its grant says.
const worldPort = 8000

var (
	publicA  = "203.0.113.10"
	publicB  = "203.0.113.11"
	control  = "203.0.113.12"
	private  = "10.99.0.5"
	metadata = "169.254.169.254"
	aliases  = []string{publicA, publicB, control, private, metadata}
)

// world is the answering container: it replies with the address it was
// reached at.
type world struct {
	id, ip string
}

func startWorld(t *testing.T) *world {
	t.Helper()
	server := fmt.Sprintf(`import socketserver
class H(socketserver.BaseRequestHandler):
    def handle(self): self.request.sendall(("hello " + self.request.getsockname()[0]).encode())
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", %d), H).serve_forever()`, worldPort)
	id := dockerRun(t, "--user", "0", "--cap-drop", "ALL", "--network", "bridge", testImage, "python3", "-c", server)
	w := &world{id: id, ip: inspect(t, id, "{{.NetworkSettings.IPAddress}}")}
	for _, a := range aliases {
		nsIP(t, id, "addr", "add", a+"/32", "dev", "eth0")
	}
	return w
}

// dockerRun starts a detached test container and removes it at cleanup.
func dockerRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", append([]string{"run", "-d", "--label", testLabel + "=1"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v: %s", err, out)
	}
	id := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", id).Run() })
	return id
}

func inspect(t *testing.T, id, format string) string {
	t.Helper()
	out, err := exec.Command("docker", "inspect", "-f", format, id).CombinedOutput()
	if err != nil {
		t.Fatalf("docker inspect %s: %v: %s", id, err, out)
	}
	return strings.TrimSpace(string(out))
}

// nsIP runs the host's ip(8) in a container's network namespace: the test's
// own set-up, with privileges the sandbox does not have.
func nsIP(t *testing.T, container string, args ...string) {
	t.Helper()
	pid := inspect(t, container, "{{.State.Pid}}")
	out, err := exec.Command("nsenter", append([]string{"-t", pid, "-n", "ip"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %v in %s: %v: %s", args, container, err, out)
	}
}

// routeToWorld makes every alias on-link in container's namespace, so a
// probe of them goes to the world container and nowhere else.
func routeToWorld(t *testing.T, container string) {
	t.Helper()
	for _, a := range aliases {
		nsIP(t, container, "route", "replace", a+"/32", "dev", "eth0")
	}
}

// probeScript connects to host:port and prints "ok <reply>" or "blocked".
const probeScript = `import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    print("ok", s.recv(100).decode())
except OSError as e:
    print("blocked", e)`

func reachable(t *testing.T, probe func(addr string) string, addr string) bool {
	t.Helper()
	out := strings.TrimSpace(probe(addr))
	switch {
	case strings.HasPrefix(out, "ok hello "):
		return true
	case strings.HasPrefix(out, "blocked"):
		return false
	}
	t.Fatalf("probe of %s printed %q", addr, out)
	return false
}

// hostListener listens on the bridge's gateway, the host as a sandbox sees
// it, and answers like the world does.
func hostListener(t *testing.T, w *world) (addr string) {
	t.Helper()
	gw := inspect(t, w.id, "{{.NetworkSettings.Gateway}}")
	l, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		t.Fatalf("listen on the bridge gateway: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello %s", gw)
			c.Close()
		}
	}()
	return l.Addr().String()
}

// mapResolver resolves the test's own names and nothing else.
type mapResolver map[string][]netip.Addr

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := m[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestEgressPolicy(t *testing.T) {
	d := newDriver(t, func(c *Config) {
		c.EgressDeny = []netip.Prefix{netip.MustParsePrefix(control + "/32")}
		c.Resolver = mapResolver{"mirror.test": {netip.MustParseAddr(publicB)}}
	})
	w := startWorld(t)
	host := hostListener(t, w)

	// The control: a plain container on the same bridge with the same
	// routes reaches every address, so a "blocked" below is the policy's.
	plain := dockerRun(t, "--user", "0", "--cap-drop", "ALL", "--network", "bridge", "--entrypoint", "sleep", testImage, "300")
	routeToWorld(t, plain)
	plainProbe := func(addr string) string {
		h, p := splitProbe(addr)
		out, err := exec.Command("docker", "exec", plain, "python3", "-c", probeScript, h, p).CombinedOutput()
		if err != nil {
			t.Fatalf("probe from the plain container: %v: %s", err, out)
		}
		return string(out)
	}
	everything := append([]string{w.ip, host}, aliases...)
	for _, a := range everything {
		if !reachable(t, plainProbe, a) {
			t.Fatalf("the plain container cannot reach %s: the test network is broken", a)
		}
	}

	tests := []struct {
		name  string
		allow []string
		reach []string // the rest of everything must be blocked
	}{
		{"allow-list", []string{publicA + "/32", control + "/32"}, []string{publicA}},
		{"allow-list by host name", []string{"mirror.test"}, []string{"mirror.test", publicB}},
		{"wide allow-list cannot open the control plane", []string{"203.0.113.0/24", "10.0.0.0/8"}, []string{publicA, publicB, private}},
		{"open grant reaches public addresses only", nil, []string{publicA, publicB}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t, d, placement.Spec{Network: true, EgressAllow: tc.allow})
			routeToWorld(t, s.p.ContainerID)
			probe := func(addr string) string {
				h, p := splitProbe(addr)
				return s.exec(t, agentPython(probeScript, h, p)).Stdout
			}
			targets := slices.Clone(everything)
			if slices.Contains(tc.allow, "mirror.test") {
				// Only a pinned name is probed: any other lookup would
				// ask the machine's real DNS server.
				targets = append(targets, "mirror.test")
				if hosts := s.sh(t, "cat /etc/hosts").Stdout; !strings.Contains(hosts, publicB+"\tmirror.test") {
					t.Errorf("/etc/hosts does not pin mirror.test:\n%s", hosts)
				}
			}
			for _, a := range targets {
				want := slices.Contains(tc.reach, a)
				if got := reachable(t, probe, a); got != want {
					t.Errorf("sandbox with allow %v: reach %s = %v, want %v", tc.allow, a, got, want)
				}
			}
		})
	}
}

func splitProbe(addr string) (string, string) {
	if h, p, err := net.SplitHostPort(addr); err == nil {
		return h, p
	}
	return addr, strconv.Itoa(worldPort)
}

// agentPython runs a python script with arguments in the sandbox.
func agentPython(script string, args ...string) agent.ExecRequest {
	return agent.ExecRequest{Argv: append([]string{"python3", "-c", script}, args...)}
}
