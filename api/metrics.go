package api

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// metrics are the API's collectors, named as the user guide names them.
type metrics struct {
	executions      *prometheus.CounterVec
	execDuration    *prometheus.HistogramVec
	sessionsCreated prometheus.Counter
	httpRequests    *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
	quotaRejections *prometheus.CounterVec
	// indexWaitTimeouts counts requests refused because this node did not
	// reach the index they named in time (api/DESIGN.md, "Consistency").
	indexWaitTimeouts prometheus.Counter
}

// newMetrics registers the API's collectors on reg. Pool and session gauges
// are computed from the local FSM at scrape time, so every node reports the
// replicated truth instead of counting events it happened to see.
func newMetrics(reg prometheus.Registerer, st State) (*metrics, error) {
	m := &metrics{
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "executions_total",
			Help: "Executions served by this node, by language and outcome (ok, error, timeout).",
		}, []string{"language", "status"}),
		execDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "execution_duration_seconds",
			Help:    "Wall time of executions as seen by the API, including the agent round trip.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"language"}),
		sessionsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessions_created_total",
			Help: "Sessions created through this node.",
		}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests by method, route pattern and status code.",
		}, []string{"method", "route", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "HTTP request latency by method and route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
		quotaRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quota_rejections_total",
			Help: "Creates refused through this node by a user quota, by limit (sandboxes, sessions, cpu, memory_mb, creates_per_minute).",
		}, []string{"limit"}),
		indexWaitTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "index_wait_timeouts_total",
			Help: "Requests answered 503 because this node had not applied the index they named within INDEX_WAIT_TIMEOUT.",
		}),
	}
	stat := func(f func(fsm.PoolStats) int) func() float64 {
		return func() float64 { return float64(f(st.PoolStats())) }
	}
	sessions := func(want fsm.SessionState) func() float64 {
		return func() float64 {
			n := 0
			for _, s := range st.Sessions() {
				if (want == "" && s.State != fsm.SessionDeleted) || s.State == want {
					n++
				}
			}
			return float64(n)
		}
	}
	collectors := []prometheus.Collector{
		m.executions, m.execDuration, m.sessionsCreated, m.httpRequests, m.httpDuration, m.quotaRejections, m.indexWaitTimeouts,
		// The guide's *_total names are counters (promtool refuses the
		// suffix on a gauge): sandboxes and sessions ever created in the
		// cluster, replicated in the FSM so every node reports the same.
		// The current numbers are sandboxes_live and sessions_open.
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sandboxes_total",
			Help: "Sandboxes created in the cluster since it began (pool and on demand)."},
			func() float64 { n, _ := st.Created(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sandboxes_live",
			Help: "Sandboxes pending, idle, active or paused."},
			stat(func(p fsm.PoolStats) int { return p.Pending + p.Idle + p.Active + p.Paused })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sandboxes_active",
			Help: "Sandboxes handed to a user or session."}, stat(func(p fsm.PoolStats) int { return p.Active })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sandboxes_idle",
			Help: "Warm sandboxes waiting in the pool."}, stat(func(p fsm.PoolStats) int { return p.Idle })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sessions_total",
			Help: "Sessions created in the cluster since it began."},
			func() float64 { _, n := st.Created(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sessions_open",
			Help: "Sessions that are not deleted."}, sessions("")),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sessions_active",
			Help: "Sessions in the active state."}, sessions(fsm.SessionActive)),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("register collector: %w (one api.Server per registry)", err)
			}
			return nil, fmt.Errorf("register collector: %w", err)
		}
	}
	return m, nil
}
