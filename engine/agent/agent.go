package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/internal/httpx"
	"github.com/sluicemcp/sluice/engine/wire"
)

// OAuthDiscoverer is implemented by bindings that can fetch the MCP server's
// OAuth protected-resource metadata (RFC 9728) for an oauth_discovery command.
// header holds the command's forwarded headers. The reply is the metadata
// fetch's status, headers and body, whatever its status; an error means no
// fetch got an answer.
type OAuthDiscoverer interface {
	OAuthDiscovery(ctx context.Context, header http.Header) (*binding.Reply, error)
}

// Agent is the agent core of `sluice run`. Create it with New and start it
// with Run; it is single-use.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	bindings  map[string]binding.Binding
	pipeline  *engine.Pipeline
	client    *http.Client
	rawUnsafe bool
	audit     *slog.Logger

	instanceID string
	serverInfo string
	baseHeader http.Header // read-only after New
	pollURL    string
	respURL    string
	metaURL    string
	batchURL   string

	batch   batcher     // final responses waiting for a batch POST
	batchOK atomic.Bool // the relay advertised the response-batch extension
	// batchOffUntil (unix ns): batching stays off until then
	batchOffUntil atomic.Int64

	work chan *task
	room chan struct{}

	streams streams // the get-stream extension (stream.go)

	// callerOK: the relay advertised the caller extension (caller.go).
	callerOK atomic.Bool
	// offerHeaders are baseHeader plus each combination of offers, for polls.
	offerHeaders [offerAll + 1]http.Header
	// oauthAS is the oauth-as extension (oauthas.go).
	oauthAS oauthASState

	// workCtx bounds MCP calls: cancelled when the shutdown grace ends.
	// postCtx bounds response POSTs: cancelled abortBudget later.
	workCtx   context.Context
	postCtx   context.Context
	graceOver atomic.Bool

	m        *metrics
	gatherer prometheus.Gatherer
	ready    readiness
	started  atomic.Bool
}

// abortBudget is how long after the shutdown grace the agent still tries to
// post the connection_aborted failures of commands it had to give up.
const abortBudget = 2 * time.Second

// New validates cfg and opts and builds an agent. Errors name the config key.
func New(cfg Config, opts Options) (*Agent, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Bindings[wire.DefaultChannel] == nil {
		return nil, errors.New("mcp.server-url: the main channel is required")
	}
	if len(opts.Bindings) > MaxChannels {
		return nil, fmt.Errorf("mcp.server-url: %d channels, at most %d", len(opts.Bindings), MaxChannels)
	}
	for name, b := range opts.Bindings {
		if !wire.ValidChannel(name) {
			return nil, fmt.Errorf("mcp.server-url: channel %q does not match [a-z0-9_-]{1,64}", name)
		}
		if b == nil {
			return nil, fmt.Errorf("mcp.server-url: channel %q has no binding", name)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		cfg:       cfg,
		log:       log.With("tunnel", cfg.TunnelID),
		bindings:  opts.Bindings,
		pipeline:  opts.Pipeline,
		client:    opts.HTTPClient,
		rawUnsafe: opts.LogRawUnsafe,
		audit:     opts.Audit,
		work:      make(chan *task, cfg.MaxInflight),
		room:      make(chan struct{}, 1),
	}
	if a.client == nil {
		a.client = newHTTPClient(cfg.MaxConcurrent)
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	a.instanceID = hex.EncodeToString(id[:])
	a.serverInfo, err = serverInfo(opts.Bindings)
	if err != nil {
		return nil, err
	}
	base := cfg.BaseURL + cfg.URLPath + "/v1/tunnels/" + cfg.TunnelID
	a.metaURL, a.pollURL, a.respURL, a.batchURL = base, base+"/poll", base+"/response", base+wire.BatchPath

	h := make(http.Header, 8+len(cfg.ExtraHeaders))
	for k, vs := range cfg.ExtraHeaders {
		if isProtected(k) {
			a.log.Warn("ignoring extra header that would override an auth or identity header", "header", http.CanonicalHeaderKey(k))
			continue
		}
		h[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	h.Set("Authorization", "Bearer "+cfg.APIKey)
	h.Set(wire.HeaderClientName, cfg.ClientName)
	h.Set(wire.HeaderClientVersion, cfg.ClientVersion)
	h.Set("User-Agent", cfg.ClientName+"/"+cfg.ClientVersion)
	h.Set(wire.HeaderClientInstanceID, a.instanceID)
	h.Set(wire.HeaderServerInfo, a.serverInfo)
	h.Set("Accept", "application/json")
	if cfg.OrganizationID != "" {
		h.Set("OpenAI-Organization", cfg.OrganizationID)
	}
	a.baseHeader = h
	a.initStreams()
	a.initOAuthAS()
	a.initOffers()

	a.m, a.gatherer, err = newMetrics(opts.Registerer, cfg.MaxInflight, func() float64 { return float64(len(a.work)) })
	if err != nil {
		return nil, fmt.Errorf("agent: register metrics: %w", err)
	}
	if opts.LogRawUnsafe {
		a.log.Warn("log.http-raw-unsafe is on: MCP payloads will appear in debug logs")
	}
	return a, nil
}

// newHTTPClient returns a client on NewTransport.
func newHTTPClient(maxConcurrent int) *http.Client {
	return &http.Client{Transport: NewTransport(TransportOptions{MaxConcurrent: maxConcurrent})}
}

// TransportOptions configures NewTransport.
type TransportOptions struct {
	// MaxConcurrent is the agent's mcp.max-concurrent-requests: enough idle
	// connections are kept for every running command plus the poll.
	MaxConcurrent int
	// TLSConfig is the TLS client configuration (nil = system roots).
	TLSConfig *tls.Config
	// Proxy picks a proxy per request (nil = from the environment).
	Proxy func(*http.Request) (*url.URL, error)
}

// NewTransport returns the transport an Agent uses when Options.HTTPClient is
// nil. Direct connections run each exchange on the calling goroutine
// (engine/internal/httpx); proxied ones go through net/http's Transport.
func NewTransport(o TransportOptions) http.RoundTripper {
	idle := max(o.MaxConcurrent+2, 64)
	proxy := o.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	return httpx.New(httpx.Options{
		Dialer:         &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
		Proxy:          proxy,
		TLSConfig:      o.TLSConfig,
		MaxIdlePerHost: idle,
		IdleTimeout:    90 * time.Second,
	})
}

type serverInfoChannel struct {
	Name         string `json:"name"`
	ProcAffinity bool   `json:"proc_affinity,omitempty"`
}

// serverInfo renders X-Tunnel-MCP-Server-Info: version 1 allows only
// version, channels, channel name and proc_affinity (the OpenAPI contract),
// channels sorted by name.
func serverInfo(bs map[string]binding.Binding) (string, error) {
	names := make([]string, 0, len(bs))
	for n := range bs {
		names = append(names, n)
	}
	sort.Strings(names)
	v := struct {
		Version  int                 `json:"version"`
		Channels []serverInfoChannel `json:"channels"`
	}{Version: 1}
	for _, n := range names {
		v.Channels = append(v.Channels, serverInfoChannel{Name: n, ProcAffinity: bs[n].Info().ProcAffinity})
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("agent: encode server info: %w", err)
	}
	if len(b) > MaxServerInfoBytes {
		return "", fmt.Errorf("mcp.server-url: server-info header is %d bytes, at most %d", len(b), MaxServerInfoBytes)
	}
	return string(b), nil
}

// task is one polled command waiting in the buffer or running.
type task struct {
	cmd      wire.Command
	receipt  time.Time // monotonic: when the poll response headers arrived
	deadline time.Time // zero: no deadline
}

func (t *task) expired(now time.Time) bool {
	return !t.deadline.IsZero() && !now.Before(t.deadline)
}

// Run polls and serves until ctx is cancelled, then drains: it stops polling
// at once, lets buffered and running commands finish within ShutdownGrace,
// posts their results, and returns nil. Commands that could not finish in
// time get a connection_aborted tunnel failure (see RATIONALE.md).
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	base := context.WithoutCancel(ctx)
	workCtx, cancelWork := context.WithCancel(base)
	postCtx, cancelPost := context.WithCancel(base)
	defer cancelWork()
	defer cancelPost()
	a.workCtx, a.postCtx = workCtx, postCtx
	a.streams.ctx, a.streams.cancel = context.WithCancel(base)
	defer a.streams.cancel()

	var wg sync.WaitGroup
	for range a.cfg.MaxConcurrent {
		wg.Go(a.worker)
	}
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	var pwg sync.WaitGroup
	pwg.Go(func() { a.probeLoop(probeCtx) })

	a.log.Info("agent polling", "url", a.cfg.BaseURL+a.cfg.URLPath, "max_inflight", a.cfg.MaxInflight,
		"max_concurrent", a.cfg.MaxConcurrent)
	a.pollLoop(ctx)
	close(a.work)
	a.streams.cancel() // open GET streams end now: they have no natural end to wait for

	done := make(chan struct{})
	go func() { wg.Wait(); a.streams.wg.Wait(); close(done) }()
	grace := time.NewTimer(a.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		a.log.Warn("shutdown grace over: aborting remaining commands")
		a.graceOver.Store(true)
		cancelWork()
		hard := time.NewTimer(abortBudget)
		defer hard.Stop()
		select {
		case <-done:
		case <-hard.C:
			cancelPost()
			<-done
		}
	}
	stopProbe()
	pwg.Wait()
	a.log.Info("agent stopped")
	return nil
}

// signalRoom wakes the poll loop after a buffer slot was freed.
func (a *Agent) signalRoom() {
	select {
	case a.room <- struct{}{}:
	default:
	}
}

// waitRoom blocks until the buffer has a free slot and returns how many are
// free, or 0 when ctx ends.
func (a *Agent) waitRoom(ctx context.Context) int {
	for {
		if free := cap(a.work) - len(a.work); free > 0 {
			return free
		}
		select {
		case <-a.room:
		case <-ctx.Done():
			return 0
		}
	}
}

func (a *Agent) worker() {
	for t := range a.work {
		a.signalRoom()
		a.m.occupancy.Inc()
		a.runTask(t)
		a.m.occupancy.Dec()
		a.m.inflight.Dec()
	}
}

// enqueue hands polled commands to the workers. It blocks while the buffer is
// full (workers always drain it, during shutdown too), so every command the
// relay sent is processed even if it sent more than asked for.
func (a *Agent) enqueue(cmds []wire.Command, receipt time.Time) {
	for i := range cmds {
		c := &cmds[i]
		switch c.CommandType {
		case wire.CommandJSONRPC, wire.CommandSessionTermination, wire.CommandOAuthDiscovery:
		case wire.CommandGetStream:
			if a.streams.enabled {
				break
			}
			fallthrough // never offered: as unknown as any other type
		case wire.CommandOAuthAS:
			if c.CommandType == wire.CommandOAuthAS && c.OAuthAS != nil { // screened by pollOnce: offered on this poll
				break
			}
			fallthrough
		default:
			a.log.Warn("skipping command of unknown type", "request_id", c.RequestID, "channel", c.Channel,
				"command_type", truncate(c.CommandType, 64))
			a.m.outcome(outcomeSkipped)
			continue
		}
		t := &task{cmd: *c, receipt: receipt}
		if c.ResponseTimeout != nil {
			d, err := wire.ParseResponseTimeout(*c.ResponseTimeout)
			if err != nil {
				a.log.Debug("malformed response_timeout: no deadline", "request_id", c.RequestID, "channel", c.Channel)
			} else {
				t.deadline = receipt.Add(d)
			}
		}
		if t.expired(time.Now()) {
			a.log.Debug("command expired before dispatch: dropped", "request_id", c.RequestID, "channel", c.Channel)
			a.m.outcome(outcomeExpired)
			continue
		}
		a.m.inflight.Inc()
		a.work <- t
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// canonicalHeader turns the command's headers into canonical form.
func canonicalHeader(in map[string][]string) http.Header {
	h := make(http.Header, len(in))
	for k, vs := range in {
		ck := http.CanonicalHeaderKey(k)
		h[ck] = append(h[ck], vs...)
	}
	return h
}

// statusText renders a status for a short reason string.
func statusText(code int) string { return "status " + strconv.Itoa(code) }

var nullJSON = json.RawMessage("null")

// objectOrNull returns b if it is a JSON object, else null.
func objectOrNull(b []byte) json.RawMessage {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) > 0 && t[0] == '{' {
		return b
	}
	return nullJSON
}
