package nomad

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// clientsTTL is how long one look at the Nomad clients is reused: sizing a
// job and planning the pool need the clients' shape, not a query per call.
const clientsTTL = 5 * time.Second

// clients is what the driver knows of the Nomad clients that may run
// sandboxes: the oldest Nomad version among them (the job may only use
// fields every one of them understands), the MHz one core is worth, and the
// CPU and memory still free on each.
type clients struct {
	// version is the lowest Nomad version of a ready client; zero if none.
	version version
	// mhzPerCore is the smallest cpu.totalcompute / cores of a ready
	// client, so a sandbox's "1 CPU" fits one core on every one of them.
	mhzPerCore int
	nodes      []nodeRoom
}

// nodeRoom is one ready, eligible client and what it has left.
type nodeRoom struct {
	id                 string
	freeMHz, freeMemMB int64
}

// fits is how many more sandboxes of cpuMHz and memMB the clients hold.
func (c clients) fits(cpuMHz, memMB int64) int {
	n := 0
	for _, nr := range c.nodes {
		if cpuMHz <= 0 || memMB <= 0 {
			continue
		}
		n += int(min(nr.freeMHz/cpuMHz, nr.freeMemMB/memMB))
	}
	return n
}

// clientCache holds the last look at the clients.
type clientCache struct {
	mu   sync.Mutex
	at   time.Time
	view clients
}

// clients returns the clients' view, at most clientsTTL old.
func (d *Driver) clients(ctx context.Context) (clients, error) {
	d.cc.mu.Lock()
	defer d.cc.mu.Unlock()
	if !d.cc.at.IsZero() && time.Since(d.cc.at) < clientsTTL {
		return d.cc.view, nil
	}
	v, err := d.readClients(ctx)
	if err != nil {
		return clients{}, err
	}
	d.cc.view, d.cc.at = v, time.Now()
	return v, nil
}

// forgetClients drops the cached view: after a placement the free room
// changed.
func (d *Driver) forgetClients() {
	d.cc.mu.Lock()
	d.cc.at = time.Time{}
	d.cc.mu.Unlock()
}

func (d *Driver) readClients(ctx context.Context) (clients, error) {
	q := d.queryOpts(ctx, 0, 0)
	q.Params = map[string]string{"resources": "true"}
	stubs, _, err := d.api.Nodes().List(q)
	if err != nil {
		return clients{}, fmt.Errorf("list nomad clients: %w", err)
	}
	aq := d.queryOpts(ctx, 0, 0)
	aq.Params = map[string]string{"resources": "true"}
	allocs, _, err := d.api.Allocations().List(aq)
	if err != nil {
		return clients{}, fmt.Errorf("list nomad allocations: %w", err)
	}
	usedMHz, usedMem := map[string]int64{}, map[string]int64{}
	for _, a := range allocs {
		if a.AllocatedResources == nil || a.DesiredStatus != "run" ||
			(a.ClientStatus != "pending" && a.ClientStatus != "running") {
			continue
		}
		for _, t := range a.AllocatedResources.Tasks {
			usedMHz[a.NodeID] += t.Cpu.CpuShares
			usedMem[a.NodeID] += t.Memory.MemoryMB
		}
	}
	var out clients
	for _, n := range stubs {
		if !d.eligible(n) {
			continue
		}
		if v := parseVersion(n.Version); out.version.zero() || v.less(out.version) {
			out.version = v
		}
		cpu, mem := n.NodeResources.Cpu, n.NodeResources.Memory
		if cpu.TotalCpuCores > 0 {
			per := int(cpu.CpuShares / int64(cpu.TotalCpuCores))
			if out.mhzPerCore == 0 || per < out.mhzPerCore {
				out.mhzPerCore = per
			}
		}
		room := nodeRoom{id: n.ID, freeMHz: cpu.CpuShares - usedMHz[n.ID], freeMemMB: mem.MemoryMB - usedMem[n.ID]}
		if r := n.ReservedResources; r != nil {
			room.freeMHz -= int64(r.Cpu.CpuShares)
			room.freeMemMB -= int64(r.Memory.MemoryMB)
		}
		out.nodes = append(out.nodes, room)
	}
	return out, nil
}

// eligible reports a client that may take a sandbox: ready, eligible, not
// draining, with a healthy docker driver, in the driver's pool and
// datacenters.
func (d *Driver) eligible(n *api.NodeListStub) bool {
	if n.Status != "ready" || n.SchedulingEligibility != "eligible" || n.Drain || n.NodeResources == nil {
		return false
	}
	if di := n.Drivers["docker"]; di == nil || !di.Detected || !di.Healthy {
		return false
	}
	if d.cfg.NodePool != "" && n.NodePool != d.cfg.NodePool {
		return false
	}
	for _, dc := range d.cfg.Datacenters {
		if dc == "*" || dc == n.Datacenter {
			return true
		}
	}
	return false
}

// cpuMHzFor converts a CPU count to the MHz a job asks for: the configured
// MHz per core if the operator set one, else what the clients report.
func (d *Driver) cpuMHzFor(ctx context.Context, cpus float64) int {
	per := d.cfg.MHzPerCPU
	if per == 0 {
		if c, err := d.clients(ctx); err == nil && c.mhzPerCore > 0 {
			per = c.mhzPerCore
		} else {
			per = DefaultMHzPerCPU
		}
	}
	return max(1, int(cpus*float64(per)+0.5))
}

// Capacity is how many more sandboxes of res the Nomad clients can hold
// now, from what they report and what runs on them. The reconciler plans
// the pool within it; it is an estimate (jobs in namespaces the token
// cannot read are not counted), and Nomad's own answer still decides.
func (d *Driver) Capacity(ctx context.Context, res fsm.Resources) (int, error) {
	res = d.resources(res)
	c, err := d.clients(ctx)
	if err != nil {
		return 0, fmt.Errorf("nomad capacity: %w", err)
	}
	return c.fits(int64(d.cpuMHzFor(ctx, res.CPUCount)), d.taskMemoryMB(res)), nil
}

// version is a Nomad version, major.minor.patch.
type version [3]int

func parseVersion(s string) version {
	var v version
	s, _, _ = strings.Cut(s, "-")
	for i, part := range strings.SplitN(s, ".", 3) {
		n, err := strconv.Atoi(part)
		if err != nil {
			break
		}
		v[i] = n
	}
	return v
}

func (v version) zero() bool { return v == version{} }

func (v version) less(o version) bool {
	for i := range v {
		if v[i] != o[i] {
			return v[i] < o[i]
		}
	}
	return false
}

func (v version) atLeast(major, minor int) bool { return !v.less(version{major, minor, 0}) }

func (v version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }
