package host

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicemcp/sluice/engine"
)

// Failure kinds (label kind of sluice_plugin_failures_total).
const (
	kindTrap      = "trap"
	kindTimeout   = "timeout"
	kindOOM       = "oom"
	kindMalformed = "malformed"
	kindTooLarge  = "too_large" // the message exceeds max-message-size before the call
	// kindCircuitOpen is the kind a binding plugin's error reply names when
	// its circuit is open (counted in sluice_plugin_breaker_rejected_total,
	// not as a failure).
	kindCircuitOpen = "circuit_open"
)

type metrics struct {
	calls     *prometheus.CounterVec
	failures  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	instances *prometheus.GaugeVec
	memory    *prometheus.GaugeVec
	memLimit  *prometheus.GaugeVec
	brkState  *prometheus.GaugeVec
	brkTrips  *prometheus.CounterVec
	brkReject *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_plugin_calls_total",
			Help: "Plugin calls by plugin, hook and resulting action.",
		}, []string{"plugin", "hook", "action"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_plugin_failures_total",
			Help: "Plugin failures by plugin and kind (trap, timeout, oom, malformed, too_large).",
		}, []string{"plugin", "kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_plugin_call_duration_seconds",
			Help:    "Duration of one plugin call.",
			Buckets: []float64{1e-6, 5e-6, 2e-5, 1e-4, 5e-4, 2e-3, 1e-2, 5e-2, 0.25, 1},
		}, []string{"plugin", "hook"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_plugin_instances",
			Help: "Live plugin instances.",
		}, []string{"plugin"}),
		memory: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_plugin_memory_bytes",
			Help: "Linear memory held by the plugin's live instances (Extism plugins: plus their kernel memory).",
		}, []string{"plugin"}),
		memLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_plugin_memory_limit_bytes",
			Help: "The plugin's max-memory: the memory limits of its live instances add up to at most this.",
		}, []string{"plugin"}),
		brkState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_plugin_breaker_state",
			Help: "The plugin's circuit breaker: 0 closed, 1 open, 2 half-open (probing).",
		}, []string{"plugin"}),
		brkTrips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_plugin_breaker_trips_total",
			Help: "Times the plugin's circuit opened after repeated failures.",
		}, []string{"plugin"}),
		brkReject: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_plugin_breaker_rejected_total",
			Help: "Calls that got the plugin's failure policy without running it, its circuit being open.",
		}, []string{"plugin"}),
	}
	if reg != nil {
		m.calls = register(reg, m.calls)
		m.failures = register(reg, m.failures)
		m.duration = register(reg, m.duration)
		m.instances = register(reg, m.instances)
		m.memory = register(reg, m.memory)
		m.memLimit = register(reg, m.memLimit)
		m.brkState = register(reg, m.brkState)
		m.brkTrips = register(reg, m.brkTrips)
		m.brkReject = register(reg, m.brkReject)
	}
	return m
}

// register registers c, or reuses an identical collector already registered
// (two Runtimes on one registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
	}
	return c
}

// stageMetrics are the metric children of one stage, resolved once at load.
type stageMetrics struct {
	failures        map[string]prometheus.Counter
	duration        [4]prometheus.Observer // by hook
	calls           [4][5]prometheus.Counter
	instances       prometheus.Gauge
	memory          prometheus.Gauge
	memLimit        prometheus.Gauge
	breakerState    prometheus.Gauge
	breakerTrips    prometheus.Counter
	breakerRejected prometheus.Counter
}

func (m *metrics) forStage(name string) *stageMetrics {
	s := &stageMetrics{
		failures:        map[string]prometheus.Counter{},
		instances:       m.instances.WithLabelValues(name),
		memory:          m.memory.WithLabelValues(name),
		memLimit:        m.memLimit.WithLabelValues(name),
		breakerState:    m.brkState.WithLabelValues(name),
		breakerTrips:    m.brkTrips.WithLabelValues(name),
		breakerRejected: m.brkReject.WithLabelValues(name),
	}
	for _, k := range []string{kindTrap, kindTimeout, kindOOM, kindMalformed, kindTooLarge} {
		s.failures[k] = m.failures.WithLabelValues(name, k)
	}
	for h := engine.HookRequest; h <= engine.HookHTTPResponse; h++ {
		s.duration[h] = m.duration.WithLabelValues(name, h.String())
		for a := engine.Continue; a <= engine.Drop; a++ {
			s.calls[h][a] = m.calls.WithLabelValues(name, h.String(), a.String())
		}
	}
	return s
}
