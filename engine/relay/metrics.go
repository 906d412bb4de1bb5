package relay

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the relay's sluice_relay_* metrics. Per-tunnel gauges are read
// at scrape time by a collector, so removed tunnels disappear by themselves.
type metrics struct {
	requests *prometheus.CounterVec
	authFail *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	refused  *prometheus.CounterVec // refusals by the limits for hostile clients, by reason
	gatherer prometheus.Gatherer
}

func newMetrics(r *Relay, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_relay_requests_total",
			Help: "MCP client requests by tunnel and outcome.",
		}, []string{"tunnel", "outcome"}),
		authFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_relay_auth_failures_total",
			Help: "Refused authentications by surface (agent, mcp, admin) and reason (invalid, revoked, rate_limited).",
		}, []string{"surface", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_relay_request_duration_seconds",
			Help:    "Time from an MCP client request's arrival to its final answer.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"tunnel"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_relay_limit_refusals_total",
			Help: "Requests refused by the limits for hostile clients, by reason: key_concurrency, address_concurrency (429), key_body_budget (429), body_budget (503), body_timeout (408), body_too_large (413), body_not_allowed (400).",
		}, []string{"reason"}),
	}
	for _, reason := range []string{refusedKeyConcurrency, refusedAddrConcurrency, refusedKeyBodyBudget,
		refusedBodyBudget, refusedBodyTimeout, refusedBodyTooLarge, refusedBodyNotAllowed} {
		m.refused.WithLabelValues(reason) // every reason is exported from the start, at 0
	}
	if reg == nil {
		priv := prometheus.NewRegistry()
		reg = priv
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	} else {
		m.gatherer = prometheus.DefaultGatherer
	}
	budget := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_relay_body_budget_bytes",
		Help: "The relay-wide budget of request body bytes being read at once (max-body-bytes-in-flight).",
	}, func() float64 { return float64(r.lim.bodyBudget) })
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_relay_body_inflight_bytes",
		Help: "Request body bytes held by reads in progress, relay-wide.",
	}, func() float64 { return float64(r.lim.bodyBytes.Load()) })
	reading := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_relay_body_reads",
		Help: "Request bodies being read right now.",
	}, func() float64 { return float64(r.lim.bodies.Load()) })
	for _, c := range []prometheus.Collector{m.requests, m.authFail, m.latency, m.refused, budget, inflight, reading, &tunnelCollector{r: r}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("relay: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) request(tunnel, outcome string, start time.Time) {
	m.requests.WithLabelValues(tunnel, outcome).Inc()
	m.latency.WithLabelValues(tunnel).Observe(time.Since(start).Seconds())
}

// Surfaces and reasons of sluice_relay_auth_failures_total.
const (
	realmAgent      = "agent"
	realmMCP        = "mcp"
	realmAdmin      = "admin"
	failInvalid     = "invalid"
	failRevoked     = "revoked"
	failRateLimited = "rate_limited"
)

func (m *metrics) authFailure(surface, reason string) {
	m.authFail.WithLabelValues(surface, reason).Inc()
}

var (
	descQueue = prometheus.NewDesc("sluice_relay_queue_length",
		"Commands queued for a tunnel and not yet polled.", []string{"tunnel"}, nil)
	descQueueCap = prometheus.NewDesc("sluice_relay_queue_capacity",
		"Capacity of a tunnel's queue.", []string{"tunnel"}, nil)
	descInflight = prometheus.NewDesc("sluice_relay_inflight_requests",
		"Commands queued or in flight (awaiting a final response) per tunnel.", []string{"tunnel"}, nil)
	descConnected = prometheus.NewDesc("sluice_relay_agent_connected",
		"1 when an agent is polling the tunnel or polled within the agent timeout.", []string{"tunnel"}, nil)
	descPolls = prometheus.NewDesc("sluice_relay_polls_total",
		"Polls received per tunnel.", []string{"tunnel"}, nil)
	descAgentPosts = prometheus.NewDesc("sluice_relay_agent_posts_total",
		"Response POSTs from agents per tunnel: response (one message) or batch (the response-batch extension).", []string{"tunnel", "kind"}, nil)
	descBatched = prometheus.NewDesc("sluice_relay_batched_responses_total",
		"Responses that arrived in batch POSTs per tunnel.", []string{"tunnel"}, nil)
	descLost = prometheus.NewDesc("sluice_relay_agent_lost_calls_total",
		"Calls failed at once because the agent instance that had taken them stopped polling and dropped its connections.", []string{"tunnel"}, nil)
	descStreams = prometheus.NewDesc("sluice_relay_open_streams",
		"MCP clients' standalone GET streams open per tunnel (the get-stream extension).", []string{"tunnel"}, nil)
)

type tunnelCollector struct{ r *Relay }

func (c *tunnelCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQueue
	ch <- descQueueCap
	ch <- descInflight
	ch <- descConnected
	ch <- descPolls
	ch <- descAgentPosts
	ch <- descBatched
	ch <- descLost
	ch <- descStreams
}

func (c *tunnelCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, t := range c.r.snapshot() {
		conn := 0.0
		if t.connected(now, c.r.set.agentTimeout) {
			conn = 1
		}
		q, _ := t.queues()
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(len(q)), t.id)
		ch <- prometheus.MustNewConstMetric(descQueueCap, prometheus.GaugeValue, float64(t.queueSize), t.id)
		ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(t.inflight()), t.id)
		ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, conn, t.id)
		ch <- prometheus.MustNewConstMetric(descPolls, prometheus.CounterValue, float64(t.polls.Load()), t.id)
		ch <- prometheus.MustNewConstMetric(descAgentPosts, prometheus.CounterValue, float64(t.singlePosts.Load()), t.id, "response")
		ch <- prometheus.MustNewConstMetric(descAgentPosts, prometheus.CounterValue, float64(t.batchPosts.Load()), t.id, "batch")
		ch <- prometheus.MustNewConstMetric(descBatched, prometheus.CounterValue, float64(t.batched.Load()), t.id)
		ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(t.lostCalls.Load()), t.id)
		ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(t.openStreams.Load()), t.id)
	}
}

// AdminHandler returns the admin handler: /healthz (the process is up),
// /readyz (the public handler is being served; the body lists which tunnels
// have a connected agent), /metrics, and the admin API (tunnels and keys,
// guarded by admin keys: admin.go). Serve it on loopback.
func (r *Relay) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", r.handleReadyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.met.gatherer, promhttp.HandlerOpts{}))
	r.adminRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeAPIError(w, http.StatusNotFound, "invalid_request_error", "", "not found")
	})
	return mux
}

// Readiness is the /readyz body.
type Readiness struct {
	Ready   bool              `json:"ready"`
	Reason  string            `json:"reason,omitempty"`
	Tunnels []TunnelReadiness `json:"tunnels"`
	// OpenCircuits lists the relay's plugin stages whose circuit breaker is
	// open (their failure policy applies without running them); they do
	// not make the relay unready (engine/agent/RATIONALE.md says why).
	OpenCircuits []string `json:"open_circuits,omitempty"`
}

// TunnelReadiness is one tunnel's entry in Readiness.
type TunnelReadiness struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	AgentConnected bool   `json:"agent_connected"`
}

func (r *Relay) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	rd := Readiness{Ready: r.serving.Load() && !r.isDraining(), Tunnels: []TunnelReadiness{}}
	if r.pipeline != nil {
		rd.OpenCircuits = r.pipeline.Chain().OpenCircuits()
	}
	switch {
	case r.closed():
		rd.Reason = "relay closed"
	case r.isDraining():
		rd.Reason = "draining"
	case !rd.Ready:
		rd.Reason = "not listening yet"
	}
	now := time.Now()
	for _, t := range r.snapshot() {
		rd.Tunnels = append(rd.Tunnels, TunnelReadiness{
			ID: t.id, Name: t.conf.Load().name,
			AgentConnected: t.connected(now, r.set.agentTimeout),
		})
	}
	st := http.StatusOK
	if !rd.Ready {
		st = http.StatusServiceUnavailable
	}
	b, _ := json.Marshal(rd)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(st)
	_, _ = w.Write(b)
}
