// Command sandbox-agent runs inside every sandbox as its init process and
// serves exec and file requests from the control plane; see package
// placement/agent.
//
//	/.sandbox/agent -listen unix:///run/sandbox/agent.sock -workdir /workspace
//	/.sandbox/agent -listen tcp://0.0.0.0:7777 -secret-file /secrets/agent
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// secretEnv carries the TCP bearer secret; it is never passed to execs.
const secretEnv = "SANDBOX_AGENT_SECRET"

func main() {
	if len(os.Args) == 2 && os.Args[1] == pauseArg {
		pause() // the Nomad infra container; see pause.go
	}
	listen := flag.String("listen", "unix:///run/sandbox/agent.sock", "unix:///path.sock or tcp://host:port")
	workdir := flag.String("workdir", "/workspace", "default working directory and HOME of execs")
	secretFile := flag.String("secret-file", "", "file holding the bearer secret (TCP mode; or env "+secretEnv+")")
	subreaper := flag.Bool("subreaper", false, "adopt and reap orphans when not running as PID 1")
	pythonZygote := flag.Bool("python-zygote", true, "fork python execs from a warm interpreter instead of starting python3 cold")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	landlock := flag.String("landlock", string(agent.LandlockAuto), "confine writes of the agent and its processes with Landlock: auto (if the kernel has it, else warn), on (refuse to start without it) or off")
	writePaths := flag.String("write-paths", "", "comma-separated paths beneath which writes are allowed under -landlock (default: the -workdir, /tmp and /dev/shm)")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox-agent: -log-level: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	mode, err := agent.ParseLandlockMode(*landlock)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox-agent: -landlock: %v\n", err)
		os.Exit(2)
	}

	secret := os.Getenv(secretEnv)
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			log.Error("sandbox-agent: read secret", "err", err)
			os.Exit(1)
		}
		secret = strings.TrimSpace(string(b))
	}

	err = agent.Run(context.Background(), agent.RunConfig{
		Listen:      *listen,
		Subreaper:   *subreaper,
		Containment: agent.WriteContainment{Mode: mode, WritePaths: splitPaths(*writePaths)},
		Server: agent.ServerConfig{
			Workdir: *workdir,
			Secret:  secret,
			Env:     childEnv(),
			Logger:  log,

			DisablePythonZygote: !*pythonZygote,
		},
	})
	if err != nil {
		log.Error("sandbox-agent: exit", "err", err)
		os.Exit(1)
	}
}

// childEnv is the container's environment as execs should see it: without
// the agent's secret, the agent's hand-off to its re-executed self, and HOME,
// which the agent sets to the workdir.
func childEnv() map[string]string {
	env := make(map[string]string)
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if k == secretEnv || k == "HOME" || k == "" || agent.IsHandoffEnv(k) {
			continue
		}
		env[k] = v
	}
	return env
}

// splitPaths reads a comma-separated list; empty entries are dropped.
func splitPaths(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
