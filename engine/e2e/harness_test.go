package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/agent"
	"github.com/sluicemcp/sluice/engine/binding"
	httpbinding "github.com/sluicemcp/sluice/engine/binding/http"
	"github.com/sluicemcp/sluice/engine/binding/stdio"
	"github.com/sluicemcp/sluice/engine/relay"
)

// tunnelSpec configures one tunnel of a harness.
type tunnelSpec struct {
	// serverURL is the private MCP server the agent's http binding reaches.
	serverURL string
	// command, when set instead, runs the MCP server as the agent's stdio
	// child.
	command []string
	// authMode is the relay's auth mode for the tunnel (default client-key).
	authMode string
	// responseTimeout is the relay's response_timeout (0 = the relay default).
	responseTimeout time.Duration
	// agentHTTP is the agent's control-plane client (nil = the agent's own).
	agentHTTP *http.Client
	// agentConfig, when set, adjusts the agent's config.
	agentConfig func(*agent.Config)
	// agentOptions, when set, adjusts the agent's options (pipeline, audit,
	// logger).
	agentOptions func(*agent.Options)
	// tunnel, when set, adjusts the relay's config of the tunnel.
	tunnel func(*relay.Tunnel)
	// binding builds the agent's main binding instead (nil = command's
	// stdio binding, else the http binding for serverURL).
	binding func(t testing.TB) binding.Binding
}

// harnessOptions configures a harness.
type harnessOptions struct {
	tunnels []tunnelSpec
	// maxBodyBytes is the relay's MCP body cap (0 = default).
	maxBodyBytes int64
	// maxResponseBytes is the relay's cap on an agent's response POST (0 = default).
	maxResponseBytes int64
	// noRelay leaves the relay stopped; call startRelay later.
	noRelay bool
	// noAgent leaves the agents stopped; call startAgent later.
	noAgent bool
	// relayOptions, when set, adjusts the relay's options.
	relayOptions func(*relay.Options)
	// logs, when set, receives every log line of the relay, the agents and
	// their http bindings, at debug level, as JSON (for tests that check
	// what is logged).
	logs io.Writer
}

// tunnelEnv is one tunnel of a running harness: ids, keys and the URL an MCP
// client uses.
type tunnelEnv struct {
	id         string
	runtimeKey string
	clientKey  string
	spec       tunnelSpec
	mcpURL     string // http://127.0.0.1:PORT/v1/mcp/TUNNEL

	mu          sync.Mutex
	agentCancel context.CancelFunc
	agentDone   chan error
}

// harness runs a relay and one agent per tunnel in the test process, on
// 127.0.0.1, and stops them when the test ends.
type harness struct {
	t       testing.TB
	addr    string // relay listen address, fixed for restarts
	baseURL string // http://addr
	tunnels []*tunnelEnv
	cfg     relay.Config
	opts    harnessOptions

	mu          sync.Mutex
	relay       *relay.Relay
	relayCancel context.CancelFunc
	relayDone   chan error
}

// testLogger returns a logger that writes to the test log when
// SLUICE_E2E_LOG=1, and discards otherwise.
func testLogger(t testing.TB, component string) *slog.Logger {
	return testLoggerTo(t, component, nil)
}

// testLoggerTo is testLogger that also writes every line, at debug level,
// as JSON, to capture when it is not nil.
func testLoggerTo(t testing.TB, component string, capture io.Writer) *slog.Logger {
	if capture != nil {
		h := slog.Handler(slog.NewJSONHandler(capture, &slog.HandlerOptions{Level: slog.LevelDebug}))
		if os.Getenv("SLUICE_E2E_LOG") == "1" {
			h = teeHandler{h, slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})}
		}
		return slog.New(h).With("component", component)
	}
	if os.Getenv("SLUICE_E2E_LOG") != "1" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", component)
}

// teeHandler sends each record to two handlers.
type teeHandler struct{ a, b slog.Handler }

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.a.Enabled(ctx, l) || h.b.Enabled(ctx, l)
}
func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	_ = h.a.Handle(ctx, r.Clone())
	return h.b.Handle(ctx, r)
}
func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{h.a.WithAttrs(as), h.b.WithAttrs(as)}
}
func (h teeHandler) WithGroup(g string) slog.Handler {
	return teeHandler{h.a.WithGroup(g), h.b.WithGroup(g)}
}

type tLogWriter struct{ t testing.TB }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newHarness builds the relay config (one tunnel per spec, each with a
// runtime key and a client key), starts the relay and the agents unless told
// not to, and waits until every tunnel serves.
func newHarness(t testing.TB, opts harnessOptions) *harness {
	t.Helper()
	h := &harness{t: t, opts: opts}
	h.addr = "127.0.0.1:" + itoa(freePort(t))
	h.baseURL = "http://" + h.addr
	var tunnels []relay.Tunnel
	for _, spec := range opts.tunnels {
		te := &tunnelEnv{
			id:         relay.NewTunnelID(),
			runtimeKey: relay.NewKey("sk-sluice-rt-"),
			clientKey:  relay.NewKey("sk-sluice-cl-"),
			spec:       spec,
		}
		te.mcpURL = h.baseURL + "/v1/mcp/" + te.id
		mode := spec.authMode
		if mode == "" {
			mode = relay.AuthClientKey
		}
		rt := relay.Tunnel{
			ID:              te.id,
			Name:            "e2e",
			Description:     "end-to-end test tunnel",
			RuntimeKey:      te.runtimeKey,
			ClientKeys:      []relay.ClientKey{{Name: "e2e-client", Key: te.clientKey}},
			AuthMode:        mode,
			ResponseTimeout: spec.responseTimeout,
		}
		if spec.tunnel != nil {
			spec.tunnel(&rt)
		}
		tunnels = append(tunnels, rt)
		h.tunnels = append(h.tunnels, te)
	}
	h.cfg = relay.Config{
		ListenAddr:       h.addr,
		PublicURL:        h.baseURL,
		MaxBodyBytes:     opts.maxBodyBytes,
		MaxResponseBytes: opts.maxResponseBytes,
		MaxPollWait:      5 * time.Second,
		Tunnels:          tunnels,
	}
	t.Cleanup(h.close)
	if !opts.noRelay {
		h.startRelay()
	}
	if !opts.noAgent {
		for _, te := range h.tunnels {
			h.startAgent(te)
		}
	}
	if !opts.noRelay && !opts.noAgent {
		for _, te := range h.tunnels {
			h.waitServing(te)
		}
	}
	return h
}

// tunnel returns the i-th tunnel.
func (h *harness) tunnel(i int) *tunnelEnv { return h.tunnels[i] }

// startRelay starts a fresh relay (same config, same port).
func (h *harness) startRelay() {
	h.t.Helper()
	ro := relay.Options{Logger: testLoggerTo(h.t, "relay", h.opts.logs)}
	if h.opts.relayOptions != nil {
		h.opts.relayOptions(&ro)
	}
	r, err := relay.New(h.cfg, ro)
	if err != nil {
		h.t.Fatalf("relay.New: %v", err)
	}
	var ln net.Listener
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err = net.Listen("tcp", h.addr)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("relay listen %s: %v", h.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()
	h.mu.Lock()
	h.relay, h.relayCancel, h.relayDone = r, cancel, done
	h.mu.Unlock()
}

// stopRelay stops the relay and waits until its listener is closed.
func (h *harness) stopRelay() {
	h.mu.Lock()
	cancel, done := h.relayCancel, h.relayDone
	h.relayCancel, h.relayDone, h.relay = nil, nil, nil
	h.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		h.t.Errorf("relay did not stop within 15s")
	}
}

// newBinding returns the http binding for a tunnel's MCP server.
func newBinding(t testing.TB, url string) binding.Binding {
	t.Helper()
	return newBindingLogged(t, url, nil)
}

// newBindingLogged is newBinding whose logs also go to capture (testLoggerTo).
func newBindingLogged(t testing.TB, url string, capture io.Writer) binding.Binding {
	t.Helper()
	b, err := httpbinding.New(httpbinding.Config{URL: url}, httpbinding.Options{Logger: testLoggerTo(t, "binding", capture)})
	if err != nil {
		t.Fatalf("http binding: %v", err)
	}
	return b
}

// startAgent starts the tunnel's agent (sluice run) against the relay.
func (h *harness) startAgent(te *tunnelEnv) {
	h.t.Helper()
	var b binding.Binding
	switch {
	case te.spec.binding != nil:
		b = te.spec.binding(h.t)
	case len(te.spec.command) > 0:
		sb, err := stdio.New(stdio.Config{Command: te.spec.command}, stdio.Options{Logger: testLoggerTo(h.t, "stdio", h.opts.logs)})
		if err != nil {
			h.t.Fatalf("stdio binding: %v", err)
		}
		b = sb
	default:
		b = newBindingLogged(h.t, te.spec.serverURL, h.opts.logs)
	}
	cfg := agent.Config{
		BaseURL:       h.baseURL,
		TunnelID:      te.id,
		APIKey:        te.runtimeKey,
		PollTimeout:   2 * time.Second,
		ShutdownGrace: 2 * time.Second,
		ClientVersion: "0.0.0-e2e",
	}
	if te.spec.agentConfig != nil {
		te.spec.agentConfig(&cfg)
	}
	ao := agent.Options{
		Logger:     testLoggerTo(h.t, "agent", h.opts.logs),
		Bindings:   map[string]binding.Binding{"main": b},
		HTTPClient: te.spec.agentHTTP,
	}
	if te.spec.agentOptions != nil {
		te.spec.agentOptions(&ao)
	}
	a, err := agent.New(cfg, ao)
	if err != nil {
		h.t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := a.Run(ctx)
		_ = b.Close()
		done <- err
	}()
	te.mu.Lock()
	te.agentCancel, te.agentDone = cancel, done
	te.mu.Unlock()
}

// stopAgent cancels the tunnel's agent and waits for Run to return.
func (h *harness) stopAgent(te *tunnelEnv) {
	te.mu.Lock()
	cancel, done := te.agentCancel, te.agentDone
	te.agentCancel, te.agentDone = nil, nil
	te.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			h.t.Logf("agent Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		h.t.Errorf("agent did not stop within 15s")
	}
}

func (h *harness) close() {
	for _, te := range h.tunnels {
		h.stopAgent(te)
	}
	h.stopRelay()
}

// authHeader returns the Authorization value an MCP client presents.
func (te *tunnelEnv) authHeader() string { return "Bearer " + te.clientKey }

// clientHeaders returns the headers an MCP client sends to the tunnel.
func (te *tunnelEnv) clientHeaders() map[string]string {
	if te.spec.authMode == relay.AuthPublic {
		return nil
	}
	return map[string]string{"Authorization": te.authHeader()}
}

// probe posts one JSON-RPC ping to the tunnel's MCP URL and returns the
// status (0 on a transport error).
func (h *harness) probe(te *tunnelEnv) int {
	req, _ := http.NewRequest(http.MethodPost, te.mcpURL, strings.NewReader(`{"jsonrpc":"2.0","id":"sluice-e2e-probe","method":"ping"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if te.spec.authMode != relay.AuthPublic {
		req.Header.Set("Authorization", te.authHeader())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitServing waits until a request reaches the MCP server through the
// tunnel: the relay answers something other than 503 (agent not connected)
// or a transport error.
func (h *harness) waitServing(te *tunnelEnv) {
	h.t.Helper()
	if !h.pollServing(te, 30*time.Second) {
		h.t.Fatalf("tunnel %s did not start serving within 30s", te.id)
	}
}

// pollServing reports whether the tunnel serves within d.
func (h *harness) pollServing(te *tunnelEnv, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		st := h.probe(te)
		if st != 0 && st != http.StatusServiceUnavailable {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// rawPost posts body to url with headers and returns status and body.
func rawPost(t testing.TB, method, url string, headers map[string]string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, b
}

func itoa(i int) string { return strconv.Itoa(i) }
