// Command sandbox-agent runs inside every sandbox as its init process and
// serves exec and file requests from the control plane; see package
// placement/agent.
//
//	/.sandbox/agent -listen unix:///run/sandbox/agent.sock -workdir /workspace
//	/.sandbox/agent -listen tcp://0.0.0.0:7777 -secret-file /secrets/agent-secret
//	    (serves TLS with /secrets/agent-cert.pem and /secrets/agent-key.pem)
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
	"github.com/cloud-sandbox/cloud-sandbox/placement/egress"
)

// secretEnv carries the TCP bearer secret, tlsCertEnv and tlsKeyEnv the
// TCP listener's certificate and key in PEM; none is passed to execs.
const (
	secretEnv  = "SANDBOX_AGENT_SECRET"
	tlsCertEnv = "SANDBOX_AGENT_TLS_CERT"
	tlsKeyEnv  = "SANDBOX_AGENT_TLS_KEY"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == pauseArg {
		pause() // the Nomad infra container; see pause.go
	}
	if len(os.Args) >= 2 && os.Args[1] == egress.HelperArg {
		installEgress(os.Args[2:]) // the egress helper; see egress.go
	}
	listen := flag.String("listen", "unix:///run/sandbox/agent.sock", "unix:///path.sock or tcp://host:port")
	workdir := flag.String("workdir", "/workspace", "default working directory and HOME of execs")
	secretFile := flag.String("secret-file", "", "file holding the bearer secret (TCP mode; or env "+secretEnv+")")
	tlsCertFile := flag.String("tls-cert-file", "", "PEM certificate a TCP listener serves TLS 1.3 with (or env "+tlsCertEnv+"; default "+agent.TLSCertFile+" beside -secret-file)")
	tlsKeyFile := flag.String("tls-key-file", "", "PEM private key of -tls-cert-file (or env "+tlsKeyEnv+"; default "+agent.TLSKeyFile+" beside -secret-file)")
	plainTCP := flag.Bool("insecure-plain-tcp", false, "let a TCP listener serve plain HTTP without TLS (tests, or a network nobody else can reach)")
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

	tlsCert, tlsKey, err := readTLS(*listen, *tlsCertFile, *tlsKeyFile, *secretFile, *plainTCP)
	if err != nil {
		log.Error("sandbox-agent: read TLS certificate", "err", err)
		os.Exit(1)
	}

	err = agent.Run(context.Background(), agent.RunConfig{
		Listen:           *listen,
		TLSCertPEM:       tlsCert,
		TLSKeyPEM:        tlsKey,
		InsecurePlainTCP: *plainTCP,
		Subreaper:        *subreaper,
		Containment:      agent.WriteContainment{Mode: mode, WritePaths: splitPaths(*writePaths)},
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

// readTLS finds a TCP listener's certificate and key: the files named,
// else the PEM in the environment, else (with -secret-file) the default
// files beside the secret, where the Nomad driver's job puts them. Nothing
// is read for a unix socket or with -insecure-plain-tcp and no source
// named; Run refuses a TCP listener left without TLS.
func readTLS(listen, certFile, keyFile, secretFile string, plain bool) (cert, key []byte, err error) {
	if !strings.HasPrefix(listen, "tcp://") && certFile == "" && keyFile == "" {
		return nil, nil, nil
	}
	if certFile == "" && keyFile == "" {
		if c, k := os.Getenv(tlsCertEnv), os.Getenv(tlsKeyEnv); c != "" || k != "" {
			return []byte(c), []byte(k), nil
		}
		if secretFile == "" || plain {
			return nil, nil, nil
		}
		dir := filepath.Dir(secretFile)
		certFile, keyFile = filepath.Join(dir, agent.TLSCertFile), filepath.Join(dir, agent.TLSKeyFile)
	}
	if cert, err = os.ReadFile(certFile); err != nil {
		return nil, nil, err
	}
	if key, err = os.ReadFile(keyFile); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// childEnv is the container's environment as execs should see it: without
// the agent's secret and TLS key, the agent's hand-off to its re-executed self, and HOME,
// which the agent sets to the workdir.
func childEnv() map[string]string {
	env := make(map[string]string)
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if k == secretEnv || k == tlsCertEnv || k == tlsKeyEnv || k == "HOME" || k == "" || agent.IsHandoffEnv(k) {
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
