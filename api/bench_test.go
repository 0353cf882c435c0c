package api

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// BenchmarkREST measures REST round trips on a single-node cluster with an
// in-process agent and reports medians (ms) next to the mean ns/op:
// acquire from the warm pool (one Raft apply), execute `true`, execute
// python print(1), and release.
func BenchmarkREST(b *testing.B) {
	e := newEnv(b, func(c *Config, p *fsmPool) { c.RateLimitRPS, c.RateLimitBurst = 1e6, 1e6; p.MaxSize = 100000 })
	tok := e.token("bench", "")
	ops := []struct {
		name string
		run  func(b *testing.B, id string)
	}{
		{"execute_true", func(b *testing.B, id string) {
			expect(b, e.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": id, "command": []string{"true"}}), http.StatusOK, "")
		}},
		{"execute_python_print", func(b *testing.B, id string) {
			expect(b, e.call("POST", "/api/v1/execute", tok, map[string]any{"sandbox_id": id, "code": "print(1)"}), http.StatusOK, "")
		}},
	}
	b.Run("acquire_warm", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			warm := fmt.Sprintf("%016x", i+1)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := e.node.Apply(ctx, &fsm.SandboxCreate{ID: warm, Image: testImage}); err != nil {
				b.Fatal(err)
			}
			cancel()
			e.waitFor(b, "warm sandbox", func() bool { s, err := e.fsm.Sandbox(warm); return err == nil && s.State == fsm.StateIdle })
			b.StartTimer()
			start := time.Now()
			id := e.acquire(tok)
			lat = append(lat, time.Since(start))
			b.StopTimer()
			expect(b, e.call("POST", "/api/v1/sandbox/release", tok, map[string]string{"sandbox_id": id}), http.StatusOK, "")
			b.StartTimer()
		}
		reportMedian(b, lat)
	})
	id := e.acquire(tok)
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				start := time.Now()
				op.run(b, id)
				lat = append(lat, time.Since(start))
			}
			reportMedian(b, lat)
		})
	}
}

func reportMedian(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median_ms")
}
