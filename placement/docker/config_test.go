package docker

import (
	"slices"
	"strings"
	"testing"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

func TestConfigValidate(t *testing.T) {
	good := Config{Cluster: "dev", AgentBinary: "/usr/local/bin/sandbox-agent", StateDir: "/var/lib/cs/s"}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string // substring; empty means valid
	}{
		{"defaults fill zero fields", func(*Config) {}, ""},
		{"runtime and limits", func(c *Config) { c.Runtime = "runsc"; c.PidsLimit = 64; c.TmpSizeMB = 8 }, ""},
		{"empty cluster", func(c *Config) { c.Cluster = "" }, "cluster"},
		{"cluster with a slash", func(c *Config) { c.Cluster = "a/b" }, "cluster"},
		{"relative agent", func(c *Config) { c.AgentBinary = "bin/sandbox-agent" }, "agent binary"},
		{"relative state dir", func(c *Config) { c.StateDir = "state" }, "state dir"},
		{"state dir too long for a socket", func(c *Config) { c.StateDir = "/" + strings.Repeat("d", 90) }, "unix socket"},
		{"tiny pids limit", func(c *Config) { c.PidsLimit = 2 }, "pids limit"},
		{"negative tmp", func(c *Config) { c.TmpSizeMB = -1 }, "sizes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate: %v, want an error about %q", err, tt.wantErr)
			}
		})
	}
}

// TestContainerSpec checks the hardening every sandbox container gets, from
// the request and the driver's defaults, without starting one.
func TestContainerSpec(t *testing.T) {
	d := &Driver{cfg: Config{Cluster: "dev", AgentBinary: "/opt/agent", StateDir: "/var/lib/cs", Labels: map[string]string{"team": "x", LabelCluster: "spoofed"}}}
	d.cfg.setDefaults()
	tests := []struct {
		name        string
		spec        placement.Spec
		wantNetwork string
		wantMemMB   int64 // memory + disk + /tmp + /dev/shm: tmpfs pages count
		wantNano    int64
		wantDisk    string
	}{
		{"defaults without network", placement.Spec{ID: "a1", Image: "img"}, "none", 512 + 512 + 2*64, 1e9, "size=512m"},
		{"request sizes with egress", placement.Spec{ID: "a2", Image: "img", Network: true, Resources: fsm.Resources{CPUCount: 0.5, MemoryMB: 128, DiskMB: 32}}, "bridge", 128 + 32 + 2*64, 5e8, "size=32m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, host := d.containerSpec(tt.spec)
			if cfg.User != "1000:1000" {
				t.Errorf("User = %q, want 1000:1000", cfg.User)
			}
			wantEntry := []string{"/.sandbox/agent", "-listen", "unix:///run/sandbox/agent.sock", "-workdir", "/workspace"}
			if !slices.Equal(cfg.Entrypoint, wantEntry) || len(cfg.Cmd) != 0 {
				t.Errorf("Entrypoint %q Cmd %q, want %q and no Cmd", cfg.Entrypoint, cfg.Cmd, wantEntry)
			}
			if cfg.Labels[LabelCluster] != "dev" || cfg.Labels[LabelSandbox] != tt.spec.ID || cfg.Labels[LabelManaged] != "true" || cfg.Labels["team"] != "x" {
				t.Errorf("Labels = %v", cfg.Labels)
			}
			if string(host.NetworkMode) != tt.wantNetwork {
				t.Errorf("NetworkMode = %q, want %q", host.NetworkMode, tt.wantNetwork)
			}
			if !host.ReadonlyRootfs || host.Privileged || !slices.Equal(host.CapDrop, []string{"ALL"}) || len(host.CapAdd) != 0 {
				t.Errorf("ReadonlyRootfs %t Privileged %t CapDrop %v CapAdd %v", host.ReadonlyRootfs, host.Privileged, host.CapDrop, host.CapAdd)
			}
			if !slices.Contains(host.SecurityOpt, "no-new-privileges:true") {
				t.Errorf("SecurityOpt = %v, want no-new-privileges", host.SecurityOpt)
			}
			if host.Init == nil || *host.Init || host.AutoRemove || host.RestartPolicy.Name != "no" || host.IpcMode != "private" {
				t.Errorf("Init %v AutoRemove %t Restart %q Ipc %q", host.Init, host.AutoRemove, host.RestartPolicy.Name, host.IpcMode)
			}
			if host.Memory != tt.wantMemMB<<20 || host.MemorySwap != host.Memory || host.NanoCPUs != tt.wantNano {
				t.Errorf("Memory %d Swap %d NanoCPUs %d, want %d MiB, no swap, %d", host.Memory, host.MemorySwap, host.NanoCPUs, tt.wantMemMB, tt.wantNano)
			}
			if host.PidsLimit == nil || *host.PidsLimit != 256 {
				t.Errorf("PidsLimit = %v, want 256", host.PidsLimit)
			}
			ws, tmp := host.Tmpfs["/workspace"], host.Tmpfs["/tmp"]
			if !strings.Contains(ws, tt.wantDisk) || !strings.Contains(ws, "uid=1000") || !strings.Contains(ws, "nosuid") || !strings.Contains(tmp, "size=64m") || !strings.Contains(tmp, "nodev") {
				t.Errorf("Tmpfs = %v", host.Tmpfs)
			}
			for _, m := range host.Mounts {
				if strings.Contains(m.Source, "docker.sock") {
					t.Errorf("Docker socket mounted: %v", m)
				}
				if m.Target == "/.sandbox/agent" && !m.ReadOnly {
					t.Errorf("agent mounted writable: %v", m)
				}
			}
			if len(host.Mounts) != 2 || host.Mounts[1].Source != "/var/lib/cs/"+tt.spec.ID {
				t.Errorf("Mounts = %v, want the agent and /var/lib/cs/%s", host.Mounts, tt.spec.ID)
			}
		})
	}
}
