package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/agent"
	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/relay"
)

// callerTap is an agent-side stage that records the Caller of every
// tools/call message it sees.
type callerTap struct {
	mu      sync.Mutex
	callers map[string][]string // tool → callers, request first
}

func (s *callerTap) Name() string                                { return "caller-tap" }
func (s *callerTap) Wants(_ engine.Hook, m string) bool          { return m == "tools/call" }
func (s *callerTap) Open(context.Context) (engine.Filter, error) { return tapFilter{s}, nil }
func (s *callerTap) Close() error                                { return nil }

type tapFilter struct{ *callerTap }

func (tapFilter) Close() {}
func (s tapFilter) Handle(_ context.Context, m *engine.Message) (engine.Result, error) {
	s.mu.Lock()
	if s.callers == nil {
		s.callers = map[string][]string{}
	}
	s.callers[m.Tool] = append(s.callers[m.Tool], m.Caller)
	s.mu.Unlock()
	return engine.Result{}, nil
}

// headerTap is a reverse proxy in front of an MCP server that records every
// request header value and every request body the server receives.
func headerTap(t *testing.T, target string) (string, func() []string) {
	t.Helper()
	u, _ := url.Parse(target)
	var mu sync.Mutex
	var seen []string
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	proxy.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		mu.Lock()
		for k, vs := range r.Header {
			seen = append(seen, k+": "+strings.Join(vs, ","))
		}
		seen = append(seen, "body: "+string(body))
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + u.Path, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// TestCallerReachesAgent: through the real relay and agent, a client-key
// caller reaches the agent's plugin chain on the tool call's request and
// response, both audit trails name it (with tunnel, channel, tool, verdict,
// status, latency), and the MCP server never receives it.
func TestCallerReachesAgent(t *testing.T) {
	gs := startGoServer(t)
	serverURL, headers := headerTap(t, gs.url)
	tap := &callerTap{}
	var relayAudit, agentAudit enginetest.SyncBuffer
	h := newHarness(t, harnessOptions{
		relayOptions: func(o *relay.Options) { o.Audit = slog.New(slog.NewJSONHandler(&relayAudit, nil)) },
		tunnels: []tunnelSpec{{serverURL: serverURL, agentOptions: func(o *agent.Options) {
			o.Pipeline = engine.NewPipeline(engine.NewChain([]engine.ChainStage{{Stage: tap}}, engine.ChainOptions{}))
			o.Audit = slog.New(slog.NewJSONHandler(&agentAudit, nil))
		}}},
	})
	te := h.tunnel(0)
	run := runMCPGoClient(t, te.mcpURL, te.clientHeaders(), "2025-11-25")
	if run.echo == "" {
		t.Fatalf("echo through the tunnel failed: %+v", run)
	}
	tap.mu.Lock()
	got := tap.callers["echo"]
	tap.mu.Unlock()
	if len(got) != 2 || got[0] != "e2e-client" || got[1] != "e2e-client" {
		t.Errorf("agent stage saw callers %q for echo, want e2e-client on request and response", got)
	}
	for side, trail := range map[string]*enginetest.SyncBuffer{"relay": &relayAudit, "agent": &agentAudit} {
		var echo map[string]any
		enginetest.WaitFor(t, side+" audit record", func() bool {
			for _, line := range strings.Split(strings.TrimSpace(trail.String()), "\n") {
				var rec map[string]any
				if json.Unmarshal([]byte(line), &rec) == nil && rec["tool"] == "echo" {
					echo = rec
					return true
				}
			}
			return false
		})
		for k, want := range map[string]any{"tunnel": te.id, "channel": "main", "caller": "e2e-client",
			"verdict": "continue", "status": 200.0} {
			if echo[k] != want {
				t.Errorf("%s audit %s = %v, want %v (%v)", side, k, echo[k], want, echo)
			}
		}
		if _, ok := echo["latency_ms"].(float64); !ok {
			t.Errorf("%s audit record has no latency: %v", side, echo)
		}
		if strings.Contains(trail.String(), "ünïcode") {
			t.Errorf("%s audit trail holds arguments or results", side)
		}
	}
	received := headers()
	if !slices.ContainsFunc(received, func(s string) bool { return strings.HasPrefix(s, "body: ") && strings.Contains(s, `"tools/call"`) }) {
		t.Fatalf("the tap saw no tools/call body: %q", received)
	}
	for _, hv := range received {
		if strings.Contains(hv, "e2e-client") || strings.Contains(hv, `"caller"`) {
			t.Errorf("the MCP server received the caller: %s", hv)
		}
	}
}
