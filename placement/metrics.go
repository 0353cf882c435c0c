package placement

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the reconciler's collectors. A nil *Metrics records nothing.
type Metrics struct {
	placements       *prometheus.CounterVec
	placementSeconds prometheus.Histogram
	refillFailures   prometheus.Counter
	reconciled       prometheus.Gauge
}

// NewMetrics registers the reconciler's collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandbox_placements_total",
			Help: "Sandbox creations by the placement driver, by result (ok, error) and kind (pool, on_demand).",
		}, []string{"result", "kind"}),
		placementSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sandbox_placement_duration_seconds",
			Help:    "Time to create a sandbox and see its agent healthy.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		refillFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pool_refill_failures_total",
			Help: "Warm-pool sandboxes that failed to start.",
		}),
		reconciled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "reconciler_tracked_sandboxes",
			Help: "Sandboxes in the state as the reconciler last counted them (leader only).",
		}),
	}
	reg.MustRegister(m.placements, m.placementSeconds, m.refillFailures, m.reconciled)
	return m
}

func (m *Metrics) placed(err error, d time.Duration, pool bool) {
	if m == nil {
		return
	}
	result, kind := "ok", "on_demand"
	if err != nil {
		result = "error"
	}
	if pool {
		kind = "pool"
	}
	m.placements.WithLabelValues(result, kind).Inc()
	if err == nil {
		m.placementSeconds.Observe(d.Seconds())
	}
}

func (m *Metrics) refillFailed() {
	if m == nil {
		return
	}
	m.refillFailures.Inc()
}

func (m *Metrics) tracked(n int) {
	if m == nil {
		return
	}
	m.reconciled.Set(float64(n))
}
