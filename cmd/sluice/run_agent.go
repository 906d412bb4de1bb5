package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/agent"
	"github.com/sluicemcp/sluice/engine/binding"
	httpbinding "github.com/sluicemcp/sluice/engine/binding/http"
	"github.com/sluicemcp/sluice/engine/binding/stdio"
	"github.com/sluicemcp/sluice/engine/demo"
	"github.com/sluicemcp/sluice/host"
)

// newRegistry returns the process's metrics registry with the Go and process
// collectors and the logging metrics.
func (s *session) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(s.logMetrics()...)
	return reg
}

func (s *session) configDir() string {
	if s.loader.path == "" {
		return ""
	}
	return filepath.Dir(s.loader.path)
}

// agentParts is what startAgent built; close releases the bindings.
type agentParts struct {
	agent     *agent.Agent
	pipeline  *engine.Pipeline
	healthURL string
	bindings  map[string]binding.Binding
	wasm      *wasmBindings // the Wasm bindings among them, for reload
}

func (p *agentParts) close() {
	for _, b := range p.bindings {
		_ = b.Close()
	}
}

// agentSetup carries what differs between `sluice run` and `sluice dev`.
type agentSetup struct {
	baseURL  string
	tunnelID string
	apiKey   string
	mainURL  string // overrides the main channel ("" = from config)
	chain    *engine.Chain
	plugins  *pipelines // the Wasm runtime, for binding plugins
}

func (s *session) runAgent(ctx context.Context) error {
	cfg := s.cfg
	apiKey, err := cfg.ControlPlane.APIKey.resolve("control-plane.api-key", s.cli.env)
	if err != nil {
		return err
	}
	reg := s.newRegistry()
	pl := s.newPipelines(reg)
	defer func() { _ = pl.close(context.WithoutCancel(ctx)) }()

	setup := agentSetup{baseURL: cfg.ControlPlane.BaseURL, tunnelID: cfg.ControlPlane.TunnelID, apiKey: apiKey, plugins: pl}
	if cfg.EmbeddedMCPStub {
		chans, _ := cfg.channels()
		if _, ok := chans["main"]; ok {
			return cfgErr("embedded-mcp-stub", "conflicts with a main channel in mcp.server-url")
		}
		u, err := demo.Serve(ctx, "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("embedded MCP stub: %w", err)
		}
		s.log.Info("embedded demo MCP server listening", "channel", "main", "url", u)
		setup.mainURL = u
	}
	chain, err := pl.build(ctx, "pipeline", cfg.Pipeline)
	if err != nil {
		return asConfigError(err)
	}
	setup.chain = chain
	parts, err := s.startAgent(ctx, reg, setup)
	if err != nil {
		_ = chain.Close()
		return err
	}
	defer parts.close()

	live := []liveKey{s.pipelineKey(pl, "pipeline", parts.pipeline, agentEntries), s.reloadBindings(parts.wasm)}
	s.log.Info("active chain", s.chainAttrs()...)
	rctx, stopReload := context.WithCancel(ctx)
	defer stopReload()
	go s.reloadLoop(rctx, live, nil)
	go s.reportReadiness(rctx, parts.agent, nil)

	err = parts.agent.Run(ctx)
	_ = parts.pipeline.Close()
	return err
}

// agentEntries are the agent's pipeline entries (the default chain when the
// config has none: applyModeDefaults).
func agentEntries(c *Config) []PluginConfig { return c.Pipeline }

// startAgent builds the bindings, the agent and its health listener.
func (s *session) startAgent(ctx context.Context, reg *prometheus.Registry, setup agentSetup) (*agentParts, error) {
	cfg := s.cfg
	chans, err := cfg.channels()
	if err != nil {
		return nil, err
	}
	// The shape a reload compares with is the config's: a main channel the
	// process made itself (dev's demo, the embedded stub) is not in the file.
	shape := channelKinds(chans)
	if setup.mainURL != "" {
		chans["main"] = Channel{Name: "main", URL: setup.mainURL}
	}
	extra, err := parseHeaders("mcp.extra-headers", cfg.MCP.ExtraHeaders, nil)
	if err != nil {
		return nil, err
	}
	parts := &agentParts{bindings: map[string]binding.Binding{},
		wasm: &wasmBindings{b: map[string]*host.Binding{}, from: map[string]string{}, shape: shape}}
	for name, ch := range chans {
		if b, ok, err := s.newChannelBinding(ctx, ch, setup.plugins, toHeader(extra)); ok {
			if err != nil {
				parts.close()
				return nil, err
			}
			parts.bindings[name] = b
			if hb, isWasm := b.(*host.Binding); isWasm {
				parts.wasm.b[name], parts.wasm.from[name] = hb, s.wasmFingerprint(ch)
			}
			continue
		}
		if ch.URL == "" {
			b, err := stdio.New(stdio.Config{Command: ch.Command}, stdio.Options{Logger: s.log.With("channel", name)})
			if err != nil {
				parts.close()
				return nil, cfgErr("mcp.command", "channel %s: %v", name, oneLine(err))
			}
			parts.bindings[name] = b
			continue
		}
		b, err := httpbinding.New(httpbinding.Config{URL: ch.URL, ExtraHeaders: toHeader(extra), UserAgent: userAgent()},
			httpbinding.Options{Logger: s.log.With("channel", name)})
		if err != nil {
			parts.close()
			return nil, cfgErr("mcp.server-url", "channel %s: %v", name, oneLine(err))
		}
		parts.bindings[name] = b
	}
	if err := s.waitForMCP(ctx, chans["main"].URL); err != nil {
		parts.close()
		return nil, err
	}
	cpHeaders, err := parseHeaders("control-plane.extra-headers", cfg.ControlPlane.ExtraHeaders, forbiddenControlHeaders)
	if err != nil {
		parts.close()
		return nil, err
	}
	client, err := s.controlPlaneClient()
	if err != nil {
		parts.close()
		return nil, err
	}
	v, _ := buildVersion()
	parts.pipeline = engine.NewPipeline(setup.chain)
	a, err := agent.New(agent.Config{
		BaseURL:         setup.baseURL,
		URLPath:         cfg.ControlPlane.URLPath,
		TunnelID:        setup.tunnelID,
		APIKey:          setup.apiKey,
		OrganizationID:  cfg.ControlPlane.OrganizationID,
		MaxInflight:     cfg.ControlPlane.MaxInflight,
		PollTimeout:     cfg.ControlPlane.PollTimeout,
		ExtraHeaders:    toHeader(cpHeaders),
		MaxConcurrent:   cfg.MCP.MaxConcurrentRequests,
		ShutdownGrace:   cfg.DrainTimeout,
		ClientVersion:   v,
		NoResponseBatch: !cfg.ControlPlane.ResponseBatch,
		NoGetStream:     !cfg.ControlPlane.GetStream,
		MaxStreams:      cfg.MCP.MaxStreams,
	}, agent.Options{
		Logger:       s.log,
		Registerer:   reg,
		Bindings:     parts.bindings,
		Pipeline:     parts.pipeline,
		HTTPClient:   client,
		LogRawUnsafe: cfg.Log.HTTPRawUnsafe,
		Audit:        s.auditFor("agent"),
	})
	if err != nil {
		parts.close()
		return nil, &ConfigError{Msg: oneLine(err)}
	}
	parts.agent = a
	healthAddr := cfg.Health.ListenAddr
	if healthAddr != "" {
		if h, _, err := net.SplitHostPort(healthAddr); err == nil && !isLoopbackHost(h) {
			s.log.Warn("health.listen-addr is not loopback: /metrics and /readyz are reachable from the network", "addr", healthAddr)
		}
		u, err := agent.ServeHealth(ctx, healthAddr, cfg.Health.URLFile, a.HealthHandler(), s.log)
		if err != nil {
			parts.close()
			return nil, err
		}
		parts.healthURL = u
	}
	return parts, nil
}

// waitForMCP waits up to mcp.startup-wait-timeout for the main MCP server's
// listener to accept a TCP connection.
func (s *session) waitForMCP(ctx context.Context, rawURL string) error {
	d := s.cfg.MCP.StartupWaitTimeout
	if d <= 0 || rawURL == "" {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), map[string]string{"https": "443"}[u.Scheme]+map[string]string{"http": "80"}[u.Scheme])
	}
	deadline := time.Now().Add(d)
	delay := 100 * time.Millisecond
	for {
		var dl net.Dialer
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := dl.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			_ = conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mcp.startup-wait-timeout: the MCP server at %s did not accept a connection within %s", addr, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// controlPlaneClient returns an HTTP client for ca-bundle / http-proxy, or
// nil for the agent's own tuned default.
func (s *session) controlPlaneClient() (*http.Client, error) {
	cfg := s.cfg
	if cfg.CABundle == "" && cfg.HTTPProxy == "" {
		return nil, nil
	}
	o := agent.TransportOptions{MaxConcurrent: cfg.MCP.MaxConcurrentRequests}
	if cfg.CABundle != "" {
		pem, err := readFileLimited(cfg.CABundle, maxPEMFileBytes)
		if err != nil {
			return nil, cfgErr("ca-bundle", "read %s: %v", cfg.CABundle, unwrapPathErr(err))
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, cfgErr("ca-bundle", "%s holds no PEM certificate", cfg.CABundle)
		}
		o.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if cfg.HTTPProxy != "" {
		pu, err := url.Parse(cfg.HTTPProxy)
		if err != nil || pu.Host == "" {
			return nil, cfgErr("http-proxy", "want a proxy URL such as http://proxy:3128")
		}
		o.Proxy = http.ProxyURL(pu)
	}
	return &http.Client{Transport: agent.NewTransport(o)}, nil
}

// reportReadiness logs readiness changes: "ready" once the agent can serve,
// and why not while it cannot (after a short grace, so a normal start is
// quiet). ready, when non-nil, is called the first time the agent is ready.
func (s *session) reportReadiness(ctx context.Context, a *agent.Agent, ready func()) {
	const grace = 3 * time.Second
	start := time.Now()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var last string
	wasReady := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok, reason := a.Ready()
		switch {
		case ok && !wasReady:
			wasReady = true
			last = ""
			s.log.Info("ready")
			if ready != nil {
				ready()
				ready = nil
			}
		case !ok && reason != last && (wasReady || time.Since(start) > grace):
			wasReady = false
			last = reason
			s.log.Warn("not ready", "reason", reason)
		}
	}
}

func toHeader(m map[string]string) http.Header {
	if len(m) == 0 {
		return nil
	}
	h := make(http.Header, len(m))
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
