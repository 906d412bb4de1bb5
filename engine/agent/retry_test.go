package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/wire"
)

// counterValue reads a counter of the agent's registry by its one label value.
func counterValue(t *testing.T, a *Agent, name, label string) float64 {
	t.Helper()
	mfs, err := a.gatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, label) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// labelIs reports whether one of m's labels has value v ("" matches any).
func labelIs(m *dto.Metric, v string) bool {
	if v == "" {
		return true
	}
	for _, l := range m.GetLabel() {
		if l.GetValue() == v {
			return true
		}
	}
	return false
}

func TestPollBackoffThenSuccess(t *testing.T) {
	relay := newFakeRelay(t)
	relay.pollHook = func(n int, w http.ResponseWriter) bool {
		if n < 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	relay.add(call("r1", 1, "ping"))
	a, _, _ := startAgent(t, relay, &fakeBinding{}, nil)
	relay.finalFor("r1")
	if got := counterValue(t, a, "commands_poll_errors_total", "server_error"); got != 2 {
		t.Errorf("server_error poll errors = %v, want 2", got)
	}
	enginetest.WaitFor(t, "ready", func() bool { ok, _ := a.Ready(); return ok })
}

func TestPollKeyRejected(t *testing.T) {
	relay := newFakeRelay(t)
	relay.metaStatus = http.StatusUnauthorized
	relay.pollHook = func(n int, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
	a, _, _ := startAgent(t, relay, &fakeBinding{}, nil)
	enginetest.WaitFor(t, "first poll", func() bool { return relay.polls.Load() >= 1 })
	enginetest.WaitFor(t, "key rejected", func() bool { _, r := a.Ready(); return r == ReasonKeyRejected })
	time.Sleep(300 * time.Millisecond) // a window in which the agent must not spin
	if n := relay.polls.Load(); n != 1 {
		t.Errorf("polled %d times after 401, want 1 (slow backoff)", n)
	}
}

// TestPollKeyRevokedReason: the relay's reason for a 401 (a revoked key)
// reaches /readyz, printable and capped.
func TestPollKeyRevokedReason(t *testing.T) {
	relay := newFakeRelay(t)
	relay.pollHook = func(n int, w http.ResponseWriter) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"message":"runtime key revoked at 2026-01-02T03:04:05Z:\u001b[31m ask the relay's operator","type":"invalid_request_error","param":null,"code":"tunnel_use_forbidden"}}`))
		return true
	}
	a, _, _ := startAgent(t, relay, &fakeBinding{}, nil)
	want := ReasonKeyRejected + ": runtime key revoked at 2026-01-02T03:04:05Z:[31m ask the relay's operator (tunnel_use_forbidden)"
	enginetest.WaitFor(t, "revoked reason", func() bool { _, r := a.Ready(); return r == want })
	rec := httptest.NewRecorder()
	a.HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || rec.Body.String() != want+"\n" {
		t.Fatalf("/readyz: %d %q", rec.Code, rec.Body)
	}
}

func TestRejectionReason(t *testing.T) {
	for body, want := range map[string]string{
		`not json`: "",
		`{"error":{"message":"m","type":"t","code":null}}`:                               "m",
		`{"error":{"message":"` + strings.Repeat("x", 300) + `","type":"t","code":"c"}}`: strings.Repeat("x", maxReasonLen) + "…",
	} {
		if got := rejectionReason(strings.NewReader(body)); got != want {
			t.Errorf("rejectionReason(%.40s) = %q, want %q", body, got, want)
		}
	}
}

func TestFinalPostRetries(t *testing.T) {
	tests := []struct {
		name         string
		fail         int // attempts answered with status
		status       int
		retryAfter   string
		wantAttempts int
		wantOutcome  string
		minGap       time.Duration
	}{
		{name: "503 then ok", fail: 2, status: 503, wantAttempts: 3, wantOutcome: "ok"},
		{name: "503 forever gives up at 3", fail: 99, status: 503, wantAttempts: 3, wantOutcome: "post_failed"},
		{name: "404 is done", fail: 99, status: 404, wantAttempts: 1, wantOutcome: "ok"},
		{name: "400 not retried", fail: 99, status: 400, wantAttempts: 1, wantOutcome: "post_failed"},
		{name: "429 retry-after honoured", fail: 1, status: 429, retryAfter: "1", wantAttempts: 2, wantOutcome: "ok", minGap: time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			relay := newFakeRelay(t)
			var mu sync.Mutex
			var bodies [][]byte
			var times []time.Time
			relay.postHook = func(r *wire.Response, attempt int, w http.ResponseWriter) bool {
				raw, _ := encodeForCompare(r)
				mu.Lock()
				bodies = append(bodies, raw)
				times = append(times, time.Now())
				mu.Unlock()
				if attempt <= tc.fail {
					if tc.retryAfter != "" {
						w.Header().Set("Retry-After", tc.retryAfter)
					}
					w.WriteHeader(tc.status)
					return true
				}
				return false
			}
			relay.add(call("p1", 1, "ping"))
			a, _, _ := startAgent(t, relay, &fakeBinding{}, nil)
			enginetest.WaitFor(t, "outcome", func() bool { return counterValue(t, a, "sluice_agent_commands_total", tc.wantOutcome) == 1 })
			if got := relay.attemptsFor("p1"); got != tc.wantAttempts {
				t.Errorf("attempts = %d, want %d", got, tc.wantAttempts)
			}
			mu.Lock()
			defer mu.Unlock()
			for i := 1; i < len(bodies); i++ {
				if !bytes.Equal(bodies[i], bodies[0]) {
					t.Errorf("attempt %d body differs", i+1)
				}
			}
			if tc.minGap > 0 && len(times) >= 2 && times[1].Sub(times[0]) < tc.minGap {
				t.Errorf("retried after %s, Retry-After asked for %s", times[1].Sub(times[0]), tc.minGap)
			}
		})
	}
}

func encodeForCompare(r *wire.Response) ([]byte, error) {
	return []byte(r.RequestID + "|" + r.RespType + "|" + string(r.RespJSON)), nil
}

func TestRetryAfterPastDeadlineGivesUp(t *testing.T) {
	relay := newFakeRelay(t)
	relay.postHook = func(r *wire.Response, attempt int, w http.ResponseWriter) bool {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	}
	a, _, _ := startAgent(t, relay, &fakeBinding{}, nil)
	relay.add(cmd("d1", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, withTimeout("2s")))
	enginetest.WaitFor(t, "expired", func() bool { return counterValue(t, a, "sluice_agent_commands_total", "expired") == 1 })
	if n := relay.attemptsFor("d1"); n != 1 {
		t.Errorf("attempts = %d, want 1 (the Retry-After passes the deadline)", n)
	}
}

func TestNotificationPostFailureSkipsLater(t *testing.T) {
	relay := newFakeRelay(t)
	relay.postHook = func(r *wire.Response, attempt int, w http.ResponseWriter) bool {
		if r.RespType == wire.RespJSONRPCNotify {
			w.WriteHeader(http.StatusInternalServerError)
			return true
		}
		return false
	}
	b := &fakeBinding{do: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
		for range 3 {
			_ = emit(&binding.Reply{Status: 200, Body: []byte(`{"jsonrpc":"2.0","method":"notifications/message","params":{}}`)})
		}
		return echo(req, emit)
	}}
	startAgent(t, relay, b, nil)
	relay.add(call("n1", 1, "tools/call"))
	relay.finalFor("n1")
	if n := relay.attemptsFor("n1"); n != 2 { // one failed notification, no retry, skip the rest, the final
		t.Errorf("attempts = %d, want 2", n)
	}
}

func TestReadiness(t *testing.T) {
	t.Run("pending before run", func(t *testing.T) {
		relay := newFakeRelay(t)
		a, err := New(Config{BaseURL: relay.srv.URL, TunnelID: testTunnel, APIKey: testKey}, Options{Bindings: map[string]binding.Binding{"main": &fakeBinding{}}})
		if err != nil {
			t.Fatal(err)
		}
		if ok, r := a.Ready(); ok || r != ReasonProbePending {
			t.Errorf("Ready = %v %q", ok, r)
		}
	})
	tests := []struct {
		name      string
		probe     func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error
		relayDown bool
		want      string
	}{
		{name: "ready", want: ""},
		{name: "probe connect refused", probe: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
			return &binding.Error{Source: wire.SourceConnect, Kind: "connection_refused", Err: errBoom}
		}, want: "mcp probe failed: connect (connection_refused)"},
		{name: "probe 500", probe: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
			return &binding.Error{Source: wire.SourceTargetHTTP, UpstreamStatus: 500, Err: errBoom}
		}, want: "mcp probe failed: status 500"},
		{name: "probe 401 counts as reachable", probe: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
			return &binding.Error{Source: wire.SourceTargetHTTP, UpstreamStatus: 401, Err: errBoom}
		}, want: ""},
		{name: "probe json-rpc error counts as reachable", probe: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
			return emit(&binding.Reply{Status: 400, Final: true, Body: []byte(`{"jsonrpc":"2.0","id":"sluice-readiness-probe","error":{"code":-32600,"message":"x"}}`)})
		}, want: ""},
		{name: "relay down", relayDown: true, want: ReasonRelay},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			relay := newFakeRelay(t)
			if tc.relayDown {
				relay.srv.Close()
			}
			pb := &probeBinding{probe: tc.probe}
			a, _, _ := startAgent(t, relay, pb, nil)
			enginetest.WaitFor(t, "readiness "+tc.want, func() bool {
				ok, r := a.Ready()
				return ok == (tc.want == "") && r == tc.want
			})
			h := a.HealthHandler()
			rec := &recorder{header: http.Header{}}
			req, _ := http.NewRequest(http.MethodGet, "/readyz", nil)
			h.ServeHTTP(rec, req)
			wantCode, wantBody := 200, "ready\n"
			if tc.want != "" {
				wantCode, wantBody = 503, tc.want+"\n"
			}
			if rec.code != wantCode || rec.body.String() != wantBody {
				t.Errorf("/readyz = %d %q, want %d %q", rec.code, rec.body.String(), wantCode, wantBody)
			}
		})
	}
}

// probeBinding answers the readiness probe with probe (nil: a session-issuing
// initialize result) and records session deletions.
type probeBinding struct {
	probe   func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error
	mu      sync.Mutex
	deleted []string
}

func (b *probeBinding) Do(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
	if req.Kind == binding.KindSessionTermination {
		b.mu.Lock()
		b.deleted = append(b.deleted, req.Header.Get("Mcp-Session-Id"))
		b.mu.Unlock()
		return emit(&binding.Reply{Status: 204, Final: true})
	}
	if isProbe(req) {
		if !strings.Contains(string(req.Body), `"protocolVersion":"2025-11-25"`) || !strings.Contains(string(req.Body), `"method":"initialize"`) {
			return &binding.Error{Source: wire.SourceProtocol, Err: io.ErrUnexpectedEOF}
		}
		if b.probe != nil {
			return b.probe(ctx, req, emit)
		}
		return emit(&binding.Reply{Status: 200, Final: true, Header: http.Header{"Mcp-Session-Id": {"probe-sess"}},
			Body: []byte(`{"jsonrpc":"2.0","id":"sluice-readiness-probe","result":{"protocolVersion":"2025-11-25"}}`)})
	}
	return echo(req, emit)
}

func (b *probeBinding) Info() binding.Info { return binding.Info{} }
func (b *probeBinding) Close() error       { return nil }

func TestProbeSessionDeleted(t *testing.T) {
	relay := newFakeRelay(t)
	pb := &probeBinding{}
	a, _, _ := startAgent(t, relay, pb, nil)
	enginetest.WaitFor(t, "ready", func() bool { ok, _ := a.Ready(); return ok })
	pb.mu.Lock()
	defer pb.mu.Unlock()
	if len(pb.deleted) != 1 || pb.deleted[0] != "probe-sess" {
		t.Errorf("deleted sessions = %v", pb.deleted)
	}
}

// proberBinding checks its own readiness (as stdio does): the agent must
// call Probe and never send it an initialize of its own.
type proberBinding struct {
	fakeBinding
	probes atomic.Int64
	dos    atomic.Int64 // every Do, probes included
	fail   atomic.Bool
}

func (b *proberBinding) Do(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
	b.dos.Add(1)
	return b.fakeBinding.Do(ctx, req, emit)
}

func (b *proberBinding) Probe(ctx context.Context) error {
	b.probes.Add(1)
	if b.fail.Load() {
		return &binding.Error{Source: wire.SourceTransportClosed, Kind: "connection_closed"}
	}
	return nil
}

func TestProberIsProbedWithoutInitialize(t *testing.T) {
	relay := newFakeRelay(t)
	pb := &proberBinding{}
	pb.fail.Store(true)
	a, _, _ := startAgent(t, relay, pb, func(c *Config, _ *Options) { c.ProbeInterval = 10 * time.Millisecond })
	enginetest.WaitFor(t, "a failed probe", func() bool {
		_, reason := a.Ready()
		return reason == ReasonProbeFailed+"transport_closed (connection_closed)"
	})
	pb.fail.Store(false)
	enginetest.WaitFor(t, "ready", func() bool { ok, _ := a.Ready(); return ok })
	if pb.probes.Load() < 2 {
		t.Errorf("%d probes", pb.probes.Load())
	}
	if n := pb.dos.Load(); n != 0 {
		t.Errorf("the agent sent %d requests (an initialize probe) to a binding that probes itself", n)
	}
}

type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(c int) { r.code = c }

func TestServeHealth(t *testing.T) {
	relay := newFakeRelay(t)
	relay.add(call("r1", 1, "ping"))
	a, _, _ := startAgent(t, relay, &fakeBinding{}, nil)
	relay.finalFor("r1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	file := filepath.Join(t.TempDir(), "url")
	u, err := ServeHealth(ctx, "127.0.0.1:0", file, a.HealthHandler(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(file)
	if strings.TrimSpace(string(got)) != u || !strings.HasPrefix(u, "http://127.0.0.1:") {
		t.Errorf("url file %q, url %q", got, u)
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get(u + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s = %d", path, resp.StatusCode)
		}
		if path == "/metrics" {
			for _, name := range []string{"commands_polled_total 1", "commands_queue_capacity 20", "sluice_agent_commands_total{outcome=\"ok\"} 1",
				"dispatcher_worker_pool_occupancy", "commands_queue_length", "command_end_to_end_latency_milliseconds_bucket", "sluice_agent_inflight"} {
				if !strings.Contains(string(body), name) {
					t.Errorf("/metrics lacks %q", name)
				}
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"3", 3 * time.Second}, {"-1", 0}, {"1.5", 0}, {"soon", 0},
		{"Thu, 01 Jan 2026 00:00:10 GMT", 10 * time.Second},
		{"Wed, 31 Dec 2025 23:59:00 GMT", 0},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := parseRetryAfter(tc.in, now); got != tc.want {
				t.Errorf("parseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

// probeSwitchBinding answers the readiness probe while up is true and
// refuses it (as a dead server would) while it is false.
type probeSwitchBinding struct {
	fakeBinding
	up atomic.Bool
}

func (b *probeSwitchBinding) Do(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
	if isProbe(req) && !b.up.Load() {
		return &binding.Error{Source: wire.SourceConnect, Kind: "connection_refused", Err: errors.New("connection refused")}
	}
	return b.fakeBinding.Do(ctx, req, emit)
}

// TestReadinessFollowsMCPServer: once ready, the agent keeps probing, so
// /readyz turns not ready when the MCP server goes away and ready again when
// it comes back.
func TestReadinessFollowsMCPServer(t *testing.T) {
	relay := newFakeRelay(t)
	b := &probeSwitchBinding{}
	b.up.Store(true)
	a, _, _ := startAgent(t, relay, b, func(c *Config, _ *Options) { c.ProbeInterval = 20 * time.Millisecond })
	enginetest.WaitFor(t, "ready", func() bool { ok, _ := a.Ready(); return ok })
	b.up.Store(false)
	enginetest.WaitFor(t, "not ready after the MCP server went away", func() bool {
		ok, r := a.Ready()
		return !ok && strings.HasPrefix(r, "mcp probe failed")
	})
	b.up.Store(true)
	enginetest.WaitFor(t, "ready again", func() bool { ok, _ := a.Ready(); return ok })
}
