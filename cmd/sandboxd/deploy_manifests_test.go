package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"
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
		Replicas            *int   `yaml:"replicas"`
		ServiceName         string `yaml:"serviceName"`
		ClusterIP           string `yaml:"clusterIP"`
		PublishNotReady     bool   `yaml:"publishNotReadyAddresses"`
		PodManagementPolicy string `yaml:"podManagementPolicy"`
		Template            struct {
			Spec struct {
				Containers []k8sContainer `yaml:"containers"`
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
	Name string `yaml:"name"`
	Env  []struct {
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

// renderOverlay copies deploy/k8s to a temp dir (prod needs an operator's
// secret file, which is never in the tree) and renders one overlay.
func renderOverlay(t *testing.T, kubectl, overlay string) map[string]k8sObject {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-r", "../../deploy/k8s", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy manifests: %v %s", err, out)
	}
	secret := "JWT_SECRET=test-secret-0123456789abcdef0123456789abcdef\nAPI_KEYS=k1:alice:user\n"
	if err := os.WriteFile(filepath.Join(dir, "k8s/prod/jwt-secret.env"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	// The cluster TLS files `sandboxd tls` makes; their content is not read here.
	for _, f := range []string{"ca.pem", "node.pem", "node-key.pem"} {
		if err := os.WriteFile(filepath.Join(dir, "k8s/prod", f), []byte("test\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
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
		})
	}
}

func keys(m map[string]k8sObject) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestComposeFile(t *testing.T) {
	compose := needTool(t, "docker-compose")
	out, err := exec.Command(compose, "-f", "../../deploy/docker-compose.yml", "config").CombinedOutput()
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
		if s.Environment["NODE_ID"] != name || s.Environment["RAFT_ADVERTISE"] != name+":7000" ||
			len(strings.Split(s.Environment["PEERS"], ",")) != 3 {
			t.Errorf("%s: NODE_ID %q RAFT_ADVERTISE %q PEERS %q", name, s.Environment["NODE_ID"], s.Environment["RAFT_ADVERTISE"], s.Environment["PEERS"])
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
	}
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
