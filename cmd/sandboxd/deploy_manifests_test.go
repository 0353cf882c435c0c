package main

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"

	"github.com/cloud-sandbox/cloud-sandbox/api"
)

// Offline checks of the deployments in deploy/: the Kubernetes overlays as
// kustomize renders them, the compose file as docker-compose reads it, and
// the Prometheus config as promtool reads it.

// needTool finds a command-line tool; without it the test fails in CI and
// is skipped on a developer's machine.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI: %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Spec struct {
		Type                string `yaml:"type"`
		Replicas            *int   `yaml:"replicas"`
		ServiceName         string `yaml:"serviceName"`
		ClusterIP           string `yaml:"clusterIP"`
		PublishNotReady     bool   `yaml:"publishNotReadyAddresses"`
		PodManagementPolicy string `yaml:"podManagementPolicy"`
		Template            struct {
			Spec struct {
				Containers []k8sContainer `yaml:"containers"`
				Volumes    []struct {
					Name   string `yaml:"name"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
					} `yaml:"secret"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			Spec struct {
				Resources struct {
					Requests map[string]string `yaml:"requests"`
				} `yaml:"resources"`
			} `yaml:"spec"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
	Data map[string]string `yaml:"data"`
}

type k8sContainer struct {
	Name  string `yaml:"name"`
	Ports []struct {
		HostPort int `yaml:"hostPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	ReadinessProbe *struct {
		HTTPGet struct {
			Path string `yaml:"path"`
		} `yaml:"httpGet"`
	} `yaml:"readinessProbe"`
	LivenessProbe *struct {
		HTTPGet struct {
			Path string `yaml:"path"`
		} `yaml:"httpGet"`
	} `yaml:"livenessProbe"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

// makeSecrets runs deploy/secrets.sh (what `make secrets` runs) with the
// sandboxd TestMain built, writing the compose secrets to secretsDir and the
// prod overlay's files to k8sProdDir.
func makeSecrets(t *testing.T, secretsDir, k8sProdDir string) string {
	t.Helper()
	out, err := exec.Command("bash", "../../deploy/secrets.sh", sandboxdBin, secretsDir, k8sProdDir).CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/secrets.sh: %v\n%s", err, out)
	}
	return string(out)
}

// readEnvFile parses KEY=value lines, skipping comments.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = v
		}
	}
	return env
}

// renderOverlay copies deploy/k8s to a temp dir, adds the prod overlay's
// secret files as `make secrets` makes them (they are never in the tree),
// and renders one overlay.
func renderOverlay(t *testing.T, kubectl, overlay string) map[string]k8sObject {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-r", "../../deploy/k8s", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy manifests: %v %s", err, out)
	}
	for _, f := range []string{"jwt-secret.env", "ca.pem", "node.pem", "node-key.pem"} {
		if err := os.Remove(filepath.Join(dir, "k8s/prod", f)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	makeSecrets(t, filepath.Join(dir, "secrets"), filepath.Join(dir, "k8s/prod"))
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(dir, "k8s", overlay)).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", overlay, err, out)
	}
	objs := map[string]k8sObject{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o k8sObject
		if err := dec.Decode(&o); err != nil {
			break
		}
		objs[o.Kind+"/"+o.Metadata.Name] = o
	}
	if len(objs) == 0 {
		t.Fatalf("%s rendered no objects:\n%s", overlay, out)
	}
	return objs
}

func TestK8sOverlays(t *testing.T) {
	kubectl := needTool(t, "kubectl")
	tests := []struct {
		overlay      string
		replicas     int
		peers        int
		storage      string
		mode         string
		secretInTree bool
	}{
		{overlay: "dev", replicas: 1, peers: 1, storage: "1Gi", mode: "development"},
		{overlay: "prod", replicas: 3, peers: 3, storage: "10Gi", mode: "production"},
	}
	for _, tt := range tests {
		t.Run(tt.overlay, func(t *testing.T) {
			objs := renderOverlay(t, kubectl, tt.overlay)
			for key, o := range objs {
				if o.Kind != "Namespace" && o.Metadata.Namespace != "cloud-sandbox" {
					t.Errorf("%s is in namespace %q, want cloud-sandbox", key, o.Metadata.Namespace)
				}
			}
			if _, ok := objs["Namespace/cloud-sandbox"]; !ok {
				t.Errorf("no Namespace cloud-sandbox")
			}
			sts, ok := objs["StatefulSet/sandboxd"]
			if !ok {
				t.Fatalf("no StatefulSet sandboxd; got %v", keys(objs))
			}
			if sts.Spec.Replicas == nil || *sts.Spec.Replicas != tt.replicas {
				t.Errorf("sandboxd replicas %v, want %d", sts.Spec.Replicas, tt.replicas)
			}
			if sts.Spec.ServiceName != "sandboxd-peers" || sts.Spec.PodManagementPolicy != "Parallel" {
				t.Errorf("statefulset serviceName %q policy %q, want sandboxd-peers, Parallel", sts.Spec.ServiceName, sts.Spec.PodManagementPolicy)
			}
			peers := objs["Service/sandboxd-peers"]
			if peers.Spec.ClusterIP != "None" || !peers.Spec.PublishNotReady {
				t.Errorf("sandboxd-peers is not headless with not-ready addresses published: %+v", peers.Spec)
			}
			if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Metadata.Name != "data" ||
				sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests["storage"] != tt.storage {
				t.Errorf("volume claims %+v, want one 'data' claim of %s", sts.Spec.VolumeClaimTemplates, tt.storage)
			}
			c := sts.Spec.Template.Spec.Containers[0]
			env := map[string]string{}
			secretRef := ""
			for _, e := range c.Env {
				env[e.Name] = e.Value
				if e.Name == "JWT_SECRET" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					secretRef = e.ValueFrom.SecretKeyRef.Name
				}
			}
			if n := len(strings.Split(env["PEERS"], ",")); n != tt.peers {
				t.Errorf("PEERS %q lists %d nodes, want %d", env["PEERS"], n, tt.peers)
			}
			// Production refuses a plain Raft port off loopback: its peers
			// must come with the cluster TLS files.
			if hasTLS := env["TLS_CA_FILE"] != "" && env["TLS_CERT_FILE"] != "" && env["TLS_KEY_FILE"] != ""; hasTLS != (tt.mode == "production") {
				t.Errorf("%s: TLS_CA_FILE/TLS_CERT_FILE/TLS_KEY_FILE set = %v, want %v", tt.overlay, hasTLS, tt.mode == "production")
			}
			for i, p := range strings.Split(env["PEERS"], ",") {
				if want := "sandboxd-" + string(rune('0'+i)) + "=sandboxd-" + string(rune('0'+i)) + ".sandboxd-peers:7000"; p != want {
					t.Errorf("peer %d is %q, want %q (the StatefulSet's stable name)", i, p, want)
				}
			}
			if !strings.HasPrefix(secretRef, "sandboxd-jwt") {
				t.Errorf("JWT_SECRET comes from secret %q, want the sandboxd-jwt Secret", secretRef)
			}
			if _, ok := objs["Secret/"+secretRef]; !ok {
				t.Errorf("secret %s referenced but not rendered", secretRef)
			}
			for _, cm := range objs {
				if cm.Kind == "ConfigMap" && strings.HasPrefix(cm.Metadata.Name, "sandboxd-config") && cm.Data["SANDBOX_MODE"] != tt.mode {
					t.Errorf("SANDBOX_MODE %q, want %q", cm.Data["SANDBOX_MODE"], tt.mode)
				}
			}
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/health" || c.LivenessProbe == nil {
				t.Errorf("sandboxd probes: readiness %+v liveness %+v, want /health", c.ReadinessProbe, c.LivenessProbe)
			}
			if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" {
				t.Errorf("sandboxd has no resource requests: %+v", c.Resources)
			}
			mounts := map[string]string{}
			for _, m := range c.VolumeMounts {
				mounts[m.Name] = m.MountPath
			}
			if mounts["data"] != "/data" || mounts["sandbox-dir"] != "/var/lib/cloud-sandbox" || mounts["docker-sock"] != "/var/run/docker.sock" {
				t.Errorf("sandboxd mounts %v", mounts)
			}
			// The guide: kubectl logs -f deployment/gateway -n cloud-sandbox.
			gw, ok := objs["Deployment/gateway"]
			if !ok {
				t.Fatalf("no Deployment gateway")
			}
			if g := gw.Spec.Template.Spec.Containers[0]; g.ReadinessProbe == nil || g.LivenessProbe == nil || g.Resources.Requests["cpu"] == "" {
				t.Errorf("gateway lacks probes or requests: %+v", g)
			}
			for _, svc := range []string{"Service/gateway", "Service/sandboxd"} {
				if _, ok := objs[svc]; !ok {
					t.Errorf("no %s", svc)
				}
			}
			// Nothing is published on the nodes' own addresses: Services stay
			// inside the cluster, no container takes a host port.
			for key, o := range objs {
				if o.Kind == "Service" && o.Spec.Type != "" && o.Spec.Type != "ClusterIP" {
					t.Errorf("%s is of type %s: publish through an ingress the operator chooses", key, o.Spec.Type)
				}
				for _, c := range o.Spec.Template.Spec.Containers {
					for _, p := range c.Ports {
						if p.HostPort != 0 {
							t.Errorf("%s container %s takes host port %d", key, c.Name, p.HostPort)
						}
					}
				}
			}
			if tt.mode == "production" {
				checkProdSecrets(t, objs, secretRef, env, mounts, sts)
			}
		})
	}
}

// checkProdSecrets: the prod overlay runs on the secrets `make secrets`
// made, never the default, and mounts the TLS pair where TLS_*_FILE point.
func checkProdSecrets(t *testing.T, objs map[string]k8sObject, secretRef string, env, mounts map[string]string, sts k8sObject) {
	t.Helper()
	jwt := objs["Secret/"+secretRef].Data
	prodEnv := map[string]string{"SANDBOX_MODE": "production"}
	for _, k := range []string{"JWT_SECRET", "API_KEYS"} {
		v, err := base64.StdEncoding.DecodeString(jwt[k])
		if err != nil || len(v) == 0 {
			t.Errorf("secret %s has no %s (%v)", secretRef, k, err)
		}
		prodEnv[k] = string(v)
	}
	if prodEnv["JWT_SECRET"] == api.DefaultJWTSecret {
		t.Errorf("prod JWT_SECRET is the default secret")
	}
	if _, err := api.ConfigFromEnv(func(k string) string { return prodEnv[k] }); err != nil {
		t.Errorf("prod secret does not start a production node: %v", err)
	}
	dir := filepath.Dir(env["TLS_CA_FILE"])
	if filepath.Dir(env["TLS_CERT_FILE"]) != dir || filepath.Dir(env["TLS_KEY_FILE"]) != dir {
		t.Errorf("TLS files %q %q %q are not in one directory", env["TLS_CA_FILE"], env["TLS_CERT_FILE"], env["TLS_KEY_FILE"])
	}
	tlsVolume := ""
	for name, path := range mounts {
		if path == dir {
			tlsVolume = name
		}
	}
	tlsSecret := ""
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == tlsVolume && v.Secret != nil {
			tlsSecret = v.Secret.SecretName
		}
	}
	data := objs["Secret/"+tlsSecret].Data
	if tlsSecret == "" || len(data) == 0 {
		t.Fatalf("nothing mounts a TLS secret at %s (volume %q, secret %q)", dir, tlsVolume, tlsSecret)
	}
	for _, f := range []string{env["TLS_CA_FILE"], env["TLS_CERT_FILE"], env["TLS_KEY_FILE"]} {
		if data[filepath.Base(f)] == "" {
			t.Errorf("secret %s has no %s", tlsSecret, filepath.Base(f))
		}
	}
	if _, ok := data["ca-key.pem"]; ok {
		t.Errorf("secret %s carries the CA key", tlsSecret)
	}
}

func keys(m map[string]k8sObject) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestComposeFile reads the compose file as docker-compose does, from a copy
// beside secrets made by deploy/secrets.sh: production mode on every node,
// the generated secret (and no default one to fall back on), cluster TLS,
// and every port published on loopback only.
func TestComposeFile(t *testing.T) {
	compose := needTool(t, "docker-compose")
	raw, err := os.ReadFile("../../deploy/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), api.DefaultJWTSecret) {
		t.Errorf("docker-compose.yml mentions the default secret %q", api.DefaultJWTSecret)
	}
	dir := filepath.Join(t.TempDir(), "deploy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(file, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	// Without `make secrets` it refuses, naming the missing file.
	out, err := exec.Command(compose, "-f", file, "config").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "secrets/sandboxd.env") {
		t.Errorf("docker-compose config without secrets: err %v, want a refusal naming secrets/sandboxd.env:\n%s", err, out)
	}
	makeSecrets(t, filepath.Join(dir, "secrets"), filepath.Join(t.TempDir(), "k8s-prod"))
	generated := readEnvFile(t, filepath.Join(dir, "secrets", "sandboxd.env"))

	out, err = exec.Command(compose, "-f", file, "config").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	var cfg struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
			Ports       []any             `yaml:"ports"`
			Volumes     []any             `yaml:"volumes"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	hostPort := map[string]string{"gateway": "8080", "scheduler": "8081", "session-manager": "8082"}
	for name, port := range hostPort {
		s, ok := cfg.Services[name]
		if !ok {
			t.Errorf("no service %s (the guide's logs command names it)", name)
			continue
		}
		env := s.Environment
		if env["NODE_ID"] != name || env["RAFT_ADVERTISE"] != name+":7000" ||
			len(strings.Split(env["PEERS"], ",")) != 3 {
			t.Errorf("%s: NODE_ID %q RAFT_ADVERTISE %q PEERS %q", name, env["NODE_ID"], env["RAFT_ADVERTISE"], env["PEERS"])
		}
		text := string(mustYAML(t, s))
		if !strings.Contains(text, "published: "+port) && !strings.Contains(text, port+":8080") && !strings.Contains(text, "published: \""+port+"\"") {
			t.Errorf("%s does not publish the API on host port %s:\n%s", name, port, text)
		}
		if !strings.Contains(text, "/var/run/docker.sock") || !strings.Contains(text, name+"-data") {
			t.Errorf("%s lacks the Docker socket or its data volume:\n%s", name, text)
		}
		if _, ok := cfg.Volumes[name+"-data"]; !ok {
			t.Errorf("no named volume %s-data", name)
		}

		if env["SANDBOX_MODE"] != api.ModeProduction {
			t.Errorf("%s: SANDBOX_MODE %q, want production", name, env["SANDBOX_MODE"])
		}
		if env["JWT_SECRET"] != generated["JWT_SECRET"] || env["API_KEYS"] != generated["API_KEYS"] {
			t.Errorf("%s: JWT_SECRET and API_KEYS are not the ones in secrets/sandboxd.env", name)
		}
		if _, err := api.ConfigFromEnv(func(k string) string { return env[k] }); err != nil {
			t.Errorf("%s: its environment does not start a node: %v", name, err)
		}
		// The TLS files sit in the node's own secrets dir, mounted read-only
		// where TLS_*_FILE point; the CA key stays out of every node.
		tlsDir := filepath.Dir(env["TLS_CA_FILE"])
		if env["TLS_CA_FILE"] == "" || filepath.Dir(env["TLS_CERT_FILE"]) != tlsDir || filepath.Dir(env["TLS_KEY_FILE"]) != tlsDir {
			t.Errorf("%s: TLS_CA_FILE %q TLS_CERT_FILE %q TLS_KEY_FILE %q, want all three in one mounted dir",
				name, env["TLS_CA_FILE"], env["TLS_CERT_FILE"], env["TLS_KEY_FILE"])
		}
		want := filepath.Join(dir, "secrets", name) + ":" + tlsDir + ":ro"
		if !strings.Contains(text, want) {
			t.Errorf("%s does not mount %s:\n%s", name, want, text)
		}
		for _, f := range []string{env["TLS_CA_FILE"], env["TLS_CERT_FILE"], env["TLS_KEY_FILE"]} {
			if _, err := os.Stat(filepath.Join(dir, "secrets", name, filepath.Base(f))); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		if strings.Contains(text, "secrets/ca") || strings.Contains(text, "ca-key") {
			t.Errorf("%s mounts the CA dir or key:\n%s", name, text)
		}
	}
	// Every service, monitoring included, publishes on loopback only.
	for name, s := range cfg.Services {
		for _, p := range s.Ports {
			switch p := p.(type) {
			case string: // docker-compose 1.29: "127.0.0.1:8080:8080/tcp"
				if !strings.HasPrefix(p, "127.0.0.1:") {
					t.Errorf("%s publishes %q beyond loopback", name, p)
				}
			case map[any]any: // compose v2: host_ip, published, target
				if p["host_ip"] != "127.0.0.1" {
					t.Errorf("%s publishes %v beyond loopback", name, p)
				}
			default:
				t.Errorf("%s: port %v of unknown shape", name, p)
			}
		}
	}
}

// TestSecretsScript checks what `make secrets` makes: secrets a production
// node accepts, a user API key for clients, certificates that name the
// hosts peers dial, a CA per cluster, and nothing remade on a second run.
func TestSecretsScript(t *testing.T) {
	dir := t.TempDir()
	secrets, k8s := filepath.Join(dir, "secrets"), filepath.Join(dir, "k8s-prod")
	makeSecrets(t, secrets, k8s)

	for _, f := range []string{filepath.Join(secrets, "sandboxd.env"), filepath.Join(k8s, "jwt-secret.env")} {
		env := readEnvFile(t, f)
		env["SANDBOX_MODE"] = api.ModeProduction
		if _, err := api.ConfigFromEnv(func(k string) string { return env[k] }); err != nil {
			t.Errorf("%s: a production node refuses it: %v", f, err)
		}
	}
	if readEnvFile(t, filepath.Join(secrets, "sandboxd.env"))["JWT_SECRET"] == readEnvFile(t, filepath.Join(k8s, "jwt-secret.env"))["JWT_SECRET"] {
		t.Errorf("compose and Kubernetes share a JWT secret")
	}
	apiKeys, err := api.ParseAPIKeys(readEnvFile(t, filepath.Join(secrets, "sandboxd.env"))["API_KEYS"])
	if err != nil {
		t.Fatal(err)
	}
	client := readEnvFile(t, filepath.Join(secrets, "client.env"))
	var clientKey *api.APIKey
	for i := range apiKeys {
		if apiKeys[i].Key == client["CLOUD_SANDBOX_API_KEY"] {
			clientKey = &apiKeys[i]
		}
	}
	if clientKey == nil || clientKey.Role != api.RoleUser {
		t.Errorf("client.env's CLOUD_SANDBOX_API_KEY is not a user key of API_KEYS %+v", apiKeys)
	}

	verify := func(caFile, certFile string, hosts ...string) {
		t.Helper()
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(mustRead(t, caFile)) {
			t.Fatalf("%s holds no certificate", caFile)
		}
		block, _ := pem.Decode(mustRead(t, certFile))
		if block == nil {
			t.Fatalf("%s is not PEM", certFile)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hosts {
			_, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: h,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
			if err != nil {
				t.Errorf("%s for %s: %v", certFile, h, err)
			}
		}
	}
	for _, n := range []string{"gateway", "scheduler", "session-manager"} {
		verify(filepath.Join(secrets, "ca", "ca.pem"), filepath.Join(secrets, n, "node.pem"), n)
		verify(filepath.Join(secrets, n, "ca.pem"), filepath.Join(secrets, n, "node.pem"), n)
		if _, err := os.Stat(filepath.Join(secrets, n, "ca-key.pem")); err == nil {
			t.Errorf("%s's dir holds the CA key", n)
		}
	}
	verify(filepath.Join(k8s, "ca.pem"), filepath.Join(k8s, "node.pem"),
		"sandboxd-0.sandboxd-peers", "sandboxd-1.sandboxd-peers", "sandboxd-2.sandboxd-peers")
	if bytes.Equal(mustRead(t, filepath.Join(k8s, "ca.pem")), mustRead(t, filepath.Join(secrets, "ca", "ca.pem"))) {
		t.Errorf("compose and Kubernetes share a cluster CA: a node of one could join the other")
	}

	// Keys and env files are for their owner's eyes only.
	for _, f := range []string{"sandboxd.env", "client.env", "ca/ca-key.pem", "gateway/node-key.pem"} {
		if fi, err := os.Stat(filepath.Join(secrets, f)); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v (%v), want no group or other access", f, fi.Mode(), err)
		}
	}

	// A second run keeps everything as it is.
	before := snapshotDir(t, dir)
	if out := makeSecrets(t, secrets, k8s); out != "" {
		t.Errorf("second run printed %q, want nothing made", out)
	}
	after := snapshotDir(t, dir)
	if len(before) != len(after) {
		t.Errorf("second run changed the file set: %d files, then %d", len(before), len(after))
	}
	for f, b := range before {
		if !bytes.Equal(after[f], b) {
			t.Errorf("second run rewrote %s", f)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// snapshotDir maps every file under dir to its content.
func snapshotDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files[p], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func mustYAML(t *testing.T, v any) []byte {
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPrometheusConfig(t *testing.T) {
	promtool := needTool(t, "promtool")
	if out, err := exec.Command(promtool, "check", "config", "../../deploy/prometheus/prometheus.yml").CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	b, err := os.ReadFile("../../deploy/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"gateway:8080", "scheduler:8080", "session-manager:8080"} {
		if !strings.Contains(string(b), target) {
			t.Errorf("prometheus.yml does not scrape %s", target)
		}
	}
}
