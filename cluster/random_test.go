package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// ack is what an acknowledged command promises about the final state.
type ack struct {
	owner    string           // "" for a pool sandbox
	state    fsm.SandboxState // expected state at the end
	released bool
}

// TestRandomizedKillRestart runs writers against random nodes while nodes
// are killed and restarted, then checks that all nodes agree and that every
// acknowledged command is in the state. Rerun a failure with CLUSTER_SEED.
func TestRandomizedKillRestart(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CLUSTER_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CLUSTER_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (rerun with CLUSTER_SEED=%d)", seed, seed)
	const (
		writers  = 4
		duration = 8 * time.Second
		maxKills = 5
	)

	// Small snapshot settings so restarted nodes also catch up from snapshots.
	c := startCluster(t, 3, bootJoin, func(cfg *Config) {
		cfg.SnapshotThreshold = 64
		cfg.TrailingLogs = 16
		cfg.SnapshotInterval = 250 * time.Millisecond
		cfg.ApplyTimeout = 5 * time.Second
	})
	mustApply(t, c.leader(), setPool(1_000_000))

	var (
		mu      sync.Mutex
		acked   = map[string]*ack{}
		applied atomic.Int64
		unknown atomic.Int64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	// apply retries one command, with its RequestID, on random running nodes.
	apply := func(rng *rand.Rand, cmd fsm.Command) (*fsm.Response, error) {
		var err error
		for range 5 {
			nodes := c.running()
			n := nodes[rng.IntN(len(nodes))]
			var resp *fsm.Response
			resp, err = n.Apply(testCtx(t, 5*time.Second), cmd)
			var fe *fsm.Error
			if err == nil || errors.As(err, &fe) {
				return resp, err
			}
		}
		return nil, err
	}

	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			owner := fmt.Sprintf("user-%d", w)
			var mine []string
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				reqID := fmt.Sprintf("w%d-%d", w, i)
				switch op := rng.IntN(10); {
				case op < 5:
					id := "pool-" + reqID
					_, err := apply(rng, &fsm.SandboxCreate{Header: fsm.Header{RequestID: reqID}, ID: id})
					if err != nil {
						unknown.Add(1)
						continue
					}
					mu.Lock()
					acked[id] = &ack{state: fsm.StatePending}
					mu.Unlock()
				case op < 8 || len(mine) == 0:
					resp, err := apply(rng, &fsm.SandboxAcquire{Header: fsm.Header{RequestID: reqID}, Owner: owner, NewID: "acq-" + reqID})
					if err != nil {
						unknown.Add(1)
						continue
					}
					mine = append(mine, resp.Sandbox.ID)
					mu.Lock()
					acked[resp.Sandbox.ID] = &ack{owner: owner, state: resp.Sandbox.State}
					mu.Unlock()
				default:
					id := mine[len(mine)-1]
					mine = mine[:len(mine)-1]
					_, err := apply(rng, &fsm.SandboxRelease{Header: fsm.Header{RequestID: reqID}, ID: id, Owner: owner})
					if err != nil {
						unknown.Add(1)
						continue
					}
					mu.Lock()
					acked[id].released = true
					mu.Unlock()
				}
				applied.Add(1)
			}
		}()
	}

	// The killer stops one node at a time so a quorum always remains.
	rng := rand.New(rand.NewPCG(seed, 1<<32))
	deadline := time.After(duration)
	kills := 0
	pause := func(lo, hi int) bool {
		select {
		case <-deadline:
			return false
		case <-time.After(time.Duration(lo+rng.IntN(hi-lo)) * time.Millisecond):
			return true
		}
	}
	for kills < maxKills && pause(300, 900) {
		victim := rng.IntN(3)
		t.Logf("kill %d: node n%d (leader=%v)", kills+1, victim, c.node(victim).IsLeader())
		c.kill(victim)
		kills++
		ok := pause(200, 900)
		c.start(victim)
		if !ok {
			break
		}
	}
	<-deadline
	close(stop)
	wg.Wait()

	c.waitConverged()
	nodes := c.running()
	if len(nodes) != 3 {
		t.Fatalf("%d nodes running at the end, want 3", len(nodes))
	}
	for _, n := range nodes {
		for id, a := range acked {
			sb, err := n.FSM().Sandbox(id)
			if err != nil {
				t.Fatalf("node %s lost acknowledged sandbox %s: %v", n.ID(), id, err)
			}
			if sb.Owner != a.owner {
				t.Fatalf("node %s: sandbox %s owner %q, want %q", n.ID(), id, sb.Owner, a.owner)
			}
			if a.released != (sb.State == fsm.StateTerminating) {
				t.Fatalf("node %s: sandbox %s state %s, released=%v", n.ID(), id, sb.State, a.released)
			}
		}
		if got, want := len(n.FSM().Sandboxes()), len(acked); got < want {
			t.Fatalf("node %s has %d sandboxes, want at least the %d acknowledged", n.ID(), got, want)
		}
	}
	t.Logf("%d kills, %d acknowledged commands, %d with unknown outcome, %d sandboxes on every node",
		kills, applied.Load(), unknown.Load(), len(nodes[0].FSM().Sandboxes()))
	if applied.Load() == 0 {
		t.Fatal("no command was acknowledged")
	}
}
