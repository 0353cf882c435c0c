package main

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

type poolStats struct {
	Total   int `json:"total"`
	Idle    int `json:"idle"`
	Active  int `json:"active"`
	Pending int `json:"pending"`
}

// TestPoolOnRealDocker: the pool fills to its minimum, a burst of acquires
// never takes it past its maximum, released sandboxes are destroyed and the
// pool refills, and a container removed behind sandboxd's back is replaced.
func TestPoolOnRealDocker(t *testing.T) {
	cluster := uniqueCluster(t)
	n := startNode(t, nodeOpts{cluster: cluster, env: map[string]string{"POOL_MIN_SIZE": "2", "POOL_MAX_SIZE": "4"}})
	admin := n.login(t, "ops", "admin")
	stats := func() poolStats {
		var s poolStats
		admin.do("GET", "/api/v1/sandbox/stats", nil, 200, &s)
		return s
	}
	eventually(t, "pool at its minimum", 60*time.Second, func() bool {
		return stats().Idle == 2 && len(containers(t, cluster)) == 2
	})

	// A burst: 8 users at once against a maximum of 4.
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		granted []string
		refused int
		stop    = make(chan struct{})
		peak    int
	)
	go func() { // sample what Docker runs while the burst is on
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if k := len(containers(t, cluster)); k > peak {
				mu.Lock()
				peak = k
				mu.Unlock()
			}
		}
	}()
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := n.login(t, fmt.Sprintf("burst%d", i), "user")
			status, raw := c.send("POST", "/api/v1/sandbox/acquire", nil, nil)
			mu.Lock()
			defer mu.Unlock()
			switch status {
			case 200:
				granted = append(granted, string(raw))
			case 503:
				if !strings.Contains(string(raw), "pool_exhausted") {
					t.Errorf("503 without pool_exhausted: %s", raw)
				}
				refused++
			default:
				t.Errorf("acquire: %d %s", status, raw)
			}
		}(i)
	}
	wg.Wait()
	close(stop)
	if len(granted) < 2 || len(granted) > 4 || len(granted)+refused != 8 {
		t.Fatalf("burst: %d granted, %d refused; want 2-4 granted with 2 idle and max 4", len(granted), refused)
	}
	if k := len(containers(t, cluster)); k > 4 || peak > 4 {
		t.Fatalf("Docker ran %d containers (peak %d) with POOL_MAX_SIZE=4", k, peak)
	}

	// Releasing everything destroys those sandboxes; the pool refills to 2.
	var all struct {
		Sandboxes []struct {
			SandboxID string `json:"sandbox_id"`
			UserID    string `json:"user_id"`
		} `json:"sandboxes"`
	}
	admin.do("GET", "/api/v1/sandboxes", nil, 200, &all)
	released := map[string]bool{}
	for _, sb := range all.Sandboxes {
		if sb.UserID != "" {
			admin.do("POST", "/api/v1/sandbox/release", map[string]any{"sandbox_id": sb.SandboxID}, 200, nil)
			released[sb.SandboxID] = true
		}
	}
	eventually(t, "released sandboxes destroyed and pool back at 2 idle", 60*time.Second, func() bool {
		ids := containers(t, cluster)
		for _, id := range ids {
			if released[id] {
				return false
			}
		}
		s := stats()
		return s.Idle == 2 && s.Active == 0 && len(ids) == 2
	})

	// A container removed behind sandboxd's back is noticed and replaced.
	victim := containers(t, cluster)[0]
	if out, err := exec.Command("docker", "rm", "-f", "cs-"+cluster+"-"+victim).CombinedOutput(); err != nil {
		t.Fatalf("docker rm: %v %s", err, out)
	}
	eventually(t, "removed container replaced", 60*time.Second, func() bool {
		ids := containers(t, cluster)
		for _, id := range ids {
			if id == victim {
				return false
			}
		}
		return len(ids) == 2 && stats().Idle == 2
	})
}
