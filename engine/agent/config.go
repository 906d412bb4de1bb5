package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// Defaults and limits of Config.
const (
	DefaultBaseURL       = "https://api.openai.com"
	DefaultMaxInflight   = 20
	MaxMaxInflight       = 10000
	DefaultPollTimeout   = 30 * time.Second
	DefaultMaxConcurrent = 10
	// MaxMaxConcurrent is the largest MaxConcurrent (one worker goroutine
	// each).
	MaxMaxConcurrent = 10000
	// MaxPollTimeout is the largest PollTimeout.
	MaxPollTimeout       = time.Hour
	DefaultShutdownGrace = 30 * time.Second
	// DefaultProbeInterval is the MCP re-probe period once ready.
	DefaultProbeInterval = 30 * time.Second
	DefaultClientName    = "sluice"
	// DefaultClientVersion is the version sent when Config.ClientVersion is
	// empty.
	DefaultClientVersion = "0.0.0-dev"
	// PollGuardrail is added to PollTimeout to get the poll's HTTP deadline.
	PollGuardrail = 5 * time.Second
	// MaxChannels is the most channels the server-info header may declare.
	MaxChannels = 32
	// MaxServerInfoBytes bounds the X-Tunnel-MCP-Server-Info header value.
	MaxServerInfoBytes = 4096
	// DefaultMaxStreams bounds the MCP clients' GET streams open at once
	// (the get-stream extension).
	DefaultMaxStreams = 32
	// MaxMaxStreams is the largest MaxStreams.
	MaxMaxStreams = 10000
)

// Config is the agent's typed configuration. The zero value of each field
// means its default; New validates it.
type Config struct {
	// BaseURL is the control plane (control-plane.base-url), default
	// https://api.openai.com.
	BaseURL string
	// URLPath is a prefix inserted before /v1/... (control-plane.url-path).
	URLPath string
	// TunnelID is tunnel_ + 32 lowercase alnum (control-plane.tunnel-id).
	TunnelID string
	// APIKey is the literal runtime key (control-plane.api-key).
	APIKey string
	// OrganizationID is sent as OpenAI-Organization when set.
	OrganizationID string
	// MaxInflight is the local buffer of polled commands not yet running
	// (control-plane.max-inflight): default 20, at most 10000.
	MaxInflight int
	// PollTimeout is sent as timeout_ms (control-plane.poll-timeout, default
	// 30s, 1ms..1h); the poll's HTTP deadline is PollTimeout + 5s.
	PollTimeout time.Duration
	// ExtraHeaders are sent on every control-plane call; they cannot override
	// the auth or identity headers.
	ExtraHeaders http.Header
	// MaxConcurrent bounds running MCP calls (mcp.max-concurrent-requests,
	// default 10, at most 10000).
	MaxConcurrent int
	// ShutdownGrace bounds the drain after Run's context is cancelled
	// (default 30s).
	ShutdownGrace time.Duration
	// ProbeInterval is how often the MCP server is probed again once it has
	// answered, so /readyz notices a server that goes away (default 30s).
	ProbeInterval time.Duration
	// ClientName is sent as X-Tunnel-Client-Name (default "sluice").
	ClientName string
	// ClientVersion is the agent's semantic version (2.0.0 rules, without a
	// leading v), sent as X-Tunnel-Client-Version and in User-Agent as
	// ClientName/ClientVersion (default "0.0.0-dev").
	ClientVersion string
	// NoResponseBatch turns off Sluice's response-batch extension
	// (control-plane.response-batch false): every response is posted alone
	// even to a relay that takes batches.
	NoResponseBatch bool
	// NoGetStream turns off Sluice's get-stream extension
	// (control-plane.get-stream false): the agent does not offer to carry MCP
	// clients' standalone GET streams, and a sluice relay answers them 405.
	NoGetStream bool
	// MaxStreams bounds the GET streams open at once (mcp.max-streams,
	// default 32, at most 10000). They do not count against MaxInflight or
	// MaxConcurrent; one more is refused with 429.
	MaxStreams int
	// StreamHeartbeat is how long an open GET stream may stay silent
	// before the agent posts a heartbeat, which is also how soon it notices
	// that the MCP client left (default and maximum wire.StreamHeartbeat).
	StreamHeartbeat time.Duration
}

// Options are the agent's collaborators. The zero value is valid except for
// Bindings, which must hold "main".
type Options struct {
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the agent's metrics in addition to the agent's own
	// registry; nil means only the agent's own registry. If it is also a
	// prometheus.Gatherer, /metrics serves it instead of the own registry.
	Registerer prometheus.Registerer
	// Bindings maps channel names to bindings; "main" is required.
	Bindings map[string]binding.Binding
	// Pipeline is the agent's plugin chain; nil means no chain.
	Pipeline *engine.Pipeline
	// HTTPClient talks to the control plane; nil means a client tuned for
	// many idle connections to the relay.
	HTTPClient *http.Client
	// LogRawUnsafe allows payloads in debug logs (log.http-raw-unsafe).
	LogRawUnsafe bool
	// Audit, when set, receives one record per tools/call
	// (engine.ToolCallAudit): tunnel, channel, request id, session, caller
	// (from a relay that carries it), tool, verdict, the plugin that decided
	// it (if one did), outcome, final status and latency. Never arguments or
	// results; the values a client chooses (tool, session, caller) clipped
	// to logs.MaxField bytes.
	Audit *slog.Logger
}

// protectedHeaders may not be set through ExtraHeaders.
var protectedHeaders = map[string]bool{
	"Authorization":             true,
	"Openai-Organization":       true,
	"Content-Type":              true,
	"Content-Length":            true,
	"Host":                      true,
	"User-Agent":                true,
	wire.HeaderClientName:       true,
	wire.HeaderClientVersion:    true,
	wire.HeaderClientInstanceID: true,
	wire.HeaderServerInfo:       true,
	wire.HeaderShardToken:       true,
	wire.HeaderExtensions:       true,
}

func isProtected(name string) bool {
	c := http.CanonicalHeaderKey(name)
	return protectedHeaders[c] || strings.HasPrefix(c, "X-Tunnel-")
}

// withDefaults fills zero fields and validates; errors name the config key.
func (c Config) withDefaults() (Config, error) {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, errors.New("control-plane.base-url: must be an absolute http or https URL")
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.URLPath != "" {
		p := "/" + strings.Trim(c.URLPath, "/")
		if p == "/" {
			p = ""
		}
		if strings.ContainsAny(p, "?#") {
			return c, errors.New("control-plane.url-path: must be a plain path")
		}
		c.URLPath = p
	}
	if !wire.ValidTunnelID(c.TunnelID) {
		return c, errors.New("control-plane.tunnel-id: must match ^tunnel_[a-z0-9]{32}$")
	}
	if !wire.ValidKey(c.APIKey) {
		return c, errors.New("control-plane.api-key: missing or not of the form ^[0-9A-Za-z_-]+$")
	}
	if strings.ContainsAny(c.OrganizationID, "\r\n") {
		return c, errors.New("control-plane.organization-id: contains a line break")
	}
	switch {
	case c.MaxInflight == 0:
		c.MaxInflight = DefaultMaxInflight
	case c.MaxInflight < 0 || c.MaxInflight > MaxMaxInflight:
		return c, fmt.Errorf("control-plane.max-inflight: %d is not within 1..%d", c.MaxInflight, MaxMaxInflight)
	}
	switch {
	case c.PollTimeout == 0:
		c.PollTimeout = DefaultPollTimeout
	case c.PollTimeout < time.Millisecond || c.PollTimeout > MaxPollTimeout:
		return c, fmt.Errorf("control-plane.poll-timeout: %s is not within 1ms..%s", c.PollTimeout, MaxPollTimeout)
	}
	switch {
	case c.MaxConcurrent == 0:
		c.MaxConcurrent = DefaultMaxConcurrent
	case c.MaxConcurrent < 0 || c.MaxConcurrent > MaxMaxConcurrent:
		return c, fmt.Errorf("mcp.max-concurrent-requests: %d is not within 1..%d", c.MaxConcurrent, MaxMaxConcurrent)
	}
	switch {
	case c.ShutdownGrace == 0:
		c.ShutdownGrace = DefaultShutdownGrace
	case c.ShutdownGrace < 0:
		return c, fmt.Errorf("shutdown grace: %s is negative", c.ShutdownGrace)
	}
	switch {
	case c.ProbeInterval == 0:
		c.ProbeInterval = DefaultProbeInterval
	case c.ProbeInterval < 0:
		return c, fmt.Errorf("probe interval: %s is negative", c.ProbeInterval)
	}
	switch {
	case c.MaxStreams == 0:
		c.MaxStreams = DefaultMaxStreams
	case c.MaxStreams < 0 || c.MaxStreams > MaxMaxStreams:
		return c, fmt.Errorf("mcp.max-streams: %d is not within 1..%d", c.MaxStreams, MaxMaxStreams)
	}
	switch {
	case c.StreamHeartbeat == 0:
		c.StreamHeartbeat = wire.StreamHeartbeat
	case c.StreamHeartbeat < time.Millisecond || c.StreamHeartbeat > wire.StreamHeartbeat:
		return c, fmt.Errorf("stream heartbeat: %s is not within 1ms..%s", c.StreamHeartbeat, wire.StreamHeartbeat)
	}
	if c.ClientName == "" {
		c.ClientName = DefaultClientName
	}
	if c.ClientVersion == "" {
		c.ClientVersion = DefaultClientVersion
	}
	if !wire.ValidSemver(c.ClientVersion) {
		return c, fmt.Errorf("client version %q: not a semantic version such as 1.4.0", c.ClientVersion)
	}
	for k, vs := range c.ExtraHeaders {
		for _, v := range vs {
			if strings.ContainsAny(k+v, "\r\n") {
				return c, fmt.Errorf("control-plane.extra-headers: header %q contains a line break", k)
			}
		}
	}
	return c, nil
}
