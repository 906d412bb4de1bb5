package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// outcome is the label of sluice_agent_commands_total.
type outcome string

// Command outcomes.
const (
	outcomeOK            outcome = "ok"             // the final response was posted (status < 400)
	outcomeMCPError      outcome = "mcp_error"      // the final response was posted with status >= 400, or a plugin rejected it
	outcomeTunnelFailure outcome = "tunnel_failure" // a -32603 tunnel failure was synthesized and posted
	outcomeExpired       outcome = "expired"        // the deadline passed: nothing posted
	outcomeSkipped       outcome = "skipped"        // unknown or malformed command, or an unsupported extension
	outcomePostFailed    outcome = "post_failed"    // the final POST failed for good
	outcomeAborted       outcome = "aborted"        // cut short by the shutdown grace
)

type metrics struct {
	polled     prometheus.Counter
	pollErrors *prometheus.CounterVec
	occupancy  prometheus.Gauge
	inflight   prometheus.Gauge
	e2e        *prometheus.HistogramVec
	commands   *prometheus.CounterVec
	byOutcome  map[outcome]prometheus.Counter
	postsVec   *prometheus.CounterVec
	posts      [2]prometheus.Counter // by postSingle, postBatch
	batched    prometheus.Counter
	// standalone GET streams (the get-stream extension)
	streamsOpen    prometheus.Gauge
	streamsRefused prometheus.Counter
}

// Kinds of final response POST (sluice_agent_response_posts_total).
const (
	postSingle = iota
	postBatch
)

// knownMethods bounds the request_method label: anything else is "other".
var knownMethods = map[string]bool{
	"initialize": true, "ping": true, "tools/list": true, "tools/call": true,
	"resources/list": true, "resources/read": true, "resources/templates/list": true,
	"resources/subscribe": true, "resources/unsubscribe": true, "prompts/list": true,
	"prompts/get": true, "completion/complete": true, "logging/setLevel": true,
	"notifications/initialized": true, "notifications/cancelled": true,
	"notifications/progress": true, "notifications/roots/list_changed": true,
	"session_termination": true, "oauth_discovery": true, "get_stream": true, "": true,
}

// newMetrics registers the agent's metrics in its own registry and, when
// extra is set, in extra too. /metrics serves extra if it is a Gatherer.
func newMetrics(extra prometheus.Registerer, capacity int, queueLen func() float64) (*metrics, prometheus.Gatherer, error) {
	m := &metrics{
		polled: prometheus.NewCounter(prometheus.CounterOpts{Name: "commands_polled_total",
			Help: "Commands received from the relay."}),
		pollErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "commands_poll_errors_total",
			Help: "Failed polls by kind."}, []string{"error_kind"}),
		occupancy: prometheus.NewGauge(prometheus.GaugeOpts{Name: "dispatcher_worker_pool_occupancy",
			Help: "Workers running a command."}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_agent_inflight",
			Help: "Commands buffered or running."}),
		e2e: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "command_end_to_end_latency_milliseconds",
			Help:    "Command latency: queue (receipt to start), mcp (the MCP call), total (receipt to final post).",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000}},
			[]string{"latency_type", "request_method", "channel"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_agent_commands_total",
			Help: "Commands by outcome."}, []string{"outcome"}),
		postsVec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_agent_response_posts_total",
			Help: "Final response POSTs made through the batcher: single (standard endpoint) or batch (response-batch extension)."}, []string{"kind"}),
		batched: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_agent_batched_responses_total",
			Help: "Final responses sent in batch POSTs."}),
		streamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_agent_streams_open",
			Help: "MCP clients' standalone GET streams open (the get-stream extension)."}),
		streamsRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_agent_streams_refused_total",
			Help: "GET streams refused with 429 because mcp.max-streams were open."}),
	}
	m.posts = [2]prometheus.Counter{m.postsVec.WithLabelValues("single"), m.postsVec.WithLabelValues("batch")}
	m.byOutcome = map[outcome]prometheus.Counter{}
	for _, o := range []outcome{outcomeOK, outcomeMCPError, outcomeTunnelFailure, outcomeExpired, outcomeSkipped, outcomePostFailed, outcomeAborted} {
		m.byOutcome[o] = m.commands.WithLabelValues(string(o))
	}
	cs := []prometheus.Collector{m.polled, m.pollErrors, m.occupancy, m.inflight, m.e2e, m.commands, m.postsVec, m.batched,
		m.streamsOpen, m.streamsRefused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "commands_queue_length",
			Help: "Commands polled and waiting for a worker."}, queueLen),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "commands_queue_capacity",
			Help: "Size of the local command buffer (control-plane.max-inflight)."}, func() float64 { return float64(capacity) }),
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, err
	}
	var g prometheus.Gatherer = reg
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, nil, err
		}
		if extra != nil {
			if err := extra.Register(c); err != nil {
				return nil, nil, err
			}
		}
	}
	if eg, ok := extra.(prometheus.Gatherer); ok {
		g = eg
	}
	return m, g, nil
}

func (m *metrics) outcome(o outcome) { m.byOutcome[o].Inc() }

func (m *metrics) latency(typ, method, channel string, d time.Duration) {
	if !knownMethods[method] {
		method = "other"
	}
	m.e2e.WithLabelValues(typ, method, channel).Observe(float64(d) / float64(time.Millisecond))
}
