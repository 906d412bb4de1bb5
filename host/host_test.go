package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/enginetest"
)

func newTestRuntime(t testing.TB, reg prometheus.Registerer, log *slog.Logger) *Runtime {
	t.Helper()
	r, err := NewRuntime(context.Background(), RuntimeOptions{CacheDir: t.TempDir(), Registerer: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

func fixture(name string) string { return filepath.Join("testdata", name) }

// load loads a plugin until the test ends.
func load(t testing.TB, r *Runtime, cfg PluginConfig) *Stage {
	t.Helper()
	s, err := r.Load(context.Background(), cfg)
	return closedAtEnd(t, s, err)
}

// closedAtEnd returns what a Load returned, failing t on its error, and
// closes it when the test ends.
func closedAtEnd[C interface{ Close() error }](t testing.TB, c C, err error) C {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func request(method string) *engine.Message {
	return &engine.Message{
		Hook: engine.HookRequest, Side: engine.SideAgent, Tunnel: "tunnel_1", Channel: "main",
		RequestID: "req-1", Method: method,
		Header: http.Header{"Mcp-Session-Id": {"s1"}, "X-Remove": {"gone"}},
		Body:   json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"` + method + `"}`),
	}
}

// handle runs one message through a fresh exchange on s.
func handle(t testing.TB, s *Stage, m *engine.Message) (engine.Result, error) {
	t.Helper()
	f, err := s.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Handle(context.Background(), m)
}

func TestLoadRefusesBrokenModules(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	tests := []struct {
		fixture string
		cfg     PluginConfig
		want    string
	}{
		{"noexport.wasm", PluginConfig{}, "missing export sluice_on_request"},
		{"describemissing.wasm", PluginConfig{}, "missing export sluice_on_response"},
		{"version.wasm", PluginConfig{}, "unsupported ABI version 2"},
		{"forbidden.wasm", PluginConfig{}, "forbidden import env.abort"},
		{"badsig.wasm", PluginConfig{}, "export sluice_on_request has signature (i32) -> (i32), want (i32, i32) -> (i64)"},
		{"noabi.wasm", PluginConfig{}, "missing export sluice_abi_version"},
		{"inittrap.wasm", PluginConfig{}, "instantiate"},
		{"good.wasm", PluginConfig{Hooks: []string{"http_response"}}, "hook http_response configured but missing export sluice_on_http_response"},
		{"good.wasm", PluginConfig{Hooks: []string{"bogus"}}, `unknown hook "bogus"`},
		{"good.wasm", PluginConfig{SHA256: strings.Repeat("0", 64)}, "sha256 mismatch"},
		{"configkeys.wasm", PluginConfig{Config: map[string]any{"tag": "x", "colour": "red"}}, `unknown config key "colour" (the plugin accepts block, tag)`},
		{"missing.wasm", PluginConfig{}, "read module"},
	}
	for _, tt := range tests {
		t.Run(tt.fixture+"/"+tt.want, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Name = "p1"
			cfg.Path = fixture(tt.fixture)
			_, err := r.Load(context.Background(), cfg)
			if err == nil {
				t.Fatal("loaded")
			}
			msg := err.Error()
			prefix := `host: load plugin "p1": `
			if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tt.want) {
				t.Fatalf("error %q, want prefix %q containing %q", msg, prefix, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
		})
	}
}

func TestSHA256Pin(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	b, err := os.ReadFile(fixture("good.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	for _, pin := range []string{hex.EncodeToString(sum[:]), "sha256:" + strings.ToUpper(hex.EncodeToString(sum[:]))} {
		load(t, r, PluginConfig{Name: "pinned", Module: b, SHA256: pin})
	}
	b2 := append(bytes.Clone(b), 0) // trailing garbage changes the hash
	if _, err := r.Load(context.Background(), PluginConfig{Name: "pinned", Module: b2, SHA256: hex.EncodeToString(sum[:])}); err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("err = %v, want sha256 mismatch", err)
	}
}

func TestGoodPluginActions(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	s := load(t, r, PluginConfig{Name: "good", Path: fixture("good.wasm")})
	notif := request("drop")
	notif.Notification = true
	tests := []struct {
		name string
		m    *engine.Message
		want engine.Result
	}{
		{"continue", request("continue"), engine.Result{}},
		{"replace", request("replace"), engine.Result{Action: engine.Replace, Body: json.RawMessage(`{"replaced":true}`),
			Header: http.Header{"Mcp-Session-Id": {"s1"}, "X-Plugin": {"wat"}}}},
		{"reject", request("jam"), engine.Result{Action: engine.Reject, Status: 403,
			Error: &engine.RPCError{Code: -32001, Message: "denied", Data: json.RawMessage(`{"by":"wat"}`)}}},
		{"respond", request("ping"), engine.Result{Action: engine.Respond, Body: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{"from":"wat"}}`)}},
		{"drop notification", notif, engine.Result{Action: engine.Drop}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := tt.m.Header.Clone()
			got, err := handle(t, s, tt.m)
			if err != nil {
				t.Fatal(err)
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(tt.want)
			if !bytes.Equal(gj, wj) {
				t.Fatalf("got  %s\nwant %s", gj, wj)
			}
			if fmt.Sprint(tt.m.Header) != fmt.Sprint(orig) {
				t.Fatalf("message headers changed in place: %v", tt.m.Header)
			}
		})
	}
	t.Run("drop on a request is a failure", func(t *testing.T) {
		_, err := handle(t, s, request("drop"))
		if !errors.Is(err, engine.ErrPluginFailure) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestWants(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	tests := []struct {
		name    string
		fixture string
		hooks   []string
		methods []string
		check   map[[2]string]bool
	}{
		{"describe hooks", "good.wasm", nil, nil, map[[2]string]bool{
			{"request", "x"}: true, {"response", "y"}: true, {"http_response", ""}: false}},
		{"config narrows hooks", "good.wasm", []string{"response"}, nil, map[[2]string]bool{
			{"request", "x"}: false, {"response", "y"}: true}},
		{"config narrows methods", "good.wasm", nil, []string{"tools/call"}, map[[2]string]bool{
			{"request", "tools/call"}: true, {"request", "tools/list"}: false, {"response", "tools/call"}: true}},
		{"no describe: handlers present", "bad.wasm", nil, nil, map[[2]string]bool{
			{"request", "x"}: true, {"response", "x"}: false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t, r, PluginConfig{Name: "w", Path: fixture(tt.fixture), Hooks: tt.hooks, Methods: tt.methods})
			for k, want := range tt.check {
				h, _ := engine.ParseHook(k[0])
				if got := s.Wants(h, k[1]); got != want {
					t.Errorf("Wants(%s, %q) = %v, want %v", k[0], k[1], got, want)
				}
			}
			// Handle skips what the stage does not want: bad.wasm would trap on "unreachable".
			m := request("unreachable")
			m.Hook = engine.HookHTTPResponse
			if res, err := handle(t, s, m); err != nil || res.Action != engine.Continue {
				t.Errorf("unwanted message: %v %v", res.Action, err)
			}
		})
	}
}

func TestHostFunctions(t *testing.T) {
	var logs enginetest.SyncBuffer
	r := newTestRuntime(t, nil, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	cfg := map[string]any{"team": "infra", "n": 3}
	s := load(t, r, PluginConfig{Name: "kvp", Path: fixture("good.wasm"), Config: cfg, PoolSize: 2})

	// Two exchanges open at once use two instances; the kv store is shared.
	f1, err := s.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f2, err := s.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range []engine.Filter{f1, f2, f1} {
		m := request("kv")
		m.RequestID = fmt.Sprintf("req-%d", i)
		res, err := f.Handle(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		if res.Action != engine.Replace || string(res.Body) != `{"n":3,"team":"infra"}` {
			t.Fatalf("result %v %s, want the config as body", res.Action, res.Body)
		}
	}
	f1.Close()
	f2.Close()
	if v, ok := r.kvFor("kvp").get([]byte("hits")); !ok || len(v) != 1 || v[0] != 3 {
		t.Fatalf("kv hits = %v %v, want [3]", v, ok)
	}
	out := logs.String()
	for _, want := range []string{`"msg":"hello from wat"`, `"plugin":"kvp"`, `"request_id":"req-2"`, `"method":"kv"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %s", out, want)
		}
	}
	// The store outlives the stage (reload keeps state).
	s2 := load(t, r, PluginConfig{Name: "kvp", Path: fixture("good.wasm"), Config: cfg})
	if _, err := handle(t, s2, request("kv")); err != nil {
		t.Fatal(err)
	}
	if v, _ := r.kvFor("kvp").get([]byte("hits")); len(v) != 1 || v[0] != 4 {
		t.Fatalf("kv hits after reload = %v, want [4]", v)
	}
}

// countInstances wraps the stage's instance constructor.
func countInstances(s *Stage) *atomic.Int64 {
	var n atomic.Int64
	next := s.pool.newInst
	s.pool.newInst = func(ctx context.Context) (instance, error) {
		n.Add(1)
		return next(ctx)
	}
	return &n
}

func TestRuntimeFailures(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newTestRuntime(t, reg, nil)
	tests := []struct {
		method string
		kind   string
		want   string
	}{
		{"unreachable", kindTrap, "unreachable"},
		{"loop", kindTimeout, ""},
		{"memory", kindOOM, ""},
		{"oob", kindMalformed, "out of bounds"},
		{"x-unknown", kindMalformed, "unknown action 9"},
		{"body-array", kindMalformed, "not a single JSON object"},
		{"nope", kindMalformed, "reject body is not a JSON-RPC error object"},
		{"truncated", kindMalformed, "overruns the answer"},
		{"drop", kindMalformed, "not a notification"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			name := "bad-" + tt.method
			timeout := 5 * time.Second // generous: -race on a busy machine is slow
			if tt.kind == kindTimeout {
				timeout = 50 * time.Millisecond
			}
			s := load(t, r, PluginConfig{Name: name, Path: fixture("bad.wasm"), MemoryPages: 64, CallTimeout: timeout, PoolSize: 1})
			created := countInstances(s)
			f, err := s.Open(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.Handle(context.Background(), request(tt.method))
			if !errors.Is(err, engine.ErrPluginFailure) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a plugin failure containing %q", err, tt.want)
			}
			if got := metricValue(r.metrics.failures.WithLabelValues(name, tt.kind)); got != 1 {
				t.Fatalf("failures{kind=%s} = %v, want 1 (err %v)", tt.kind, got, err)
			}
			// The same exchange goes on with a fresh instance.
			if _, err := f.Handle(context.Background(), request("continue")); err != nil {
				t.Fatalf("next call: %v", err)
			}
			f.Close()
			// A guest stopped mid-call (trap, timeout, oom) is replaced by a
			// fresh instance; one that returned a malformed answer is sound
			// and reused.
			fresh := int64(1)
			if tt.kind == kindMalformed {
				fresh = 0
			}
			if created.Load() != fresh {
				t.Fatalf("created %d instances after the failure, want %d", created.Load(), fresh)
			}
			// And the next exchange reuses the healthy instance.
			if _, err := handle(t, s, request("continue")); err != nil {
				t.Fatalf("next exchange: %v", err)
			}
			if created.Load() != fresh || s.pool.idleCount() != 1 {
				t.Fatalf("created %d, idle %d; want %d, 1", created.Load(), s.pool.idleCount(), fresh)
			}
			if got := metricValue(r.metrics.instances.WithLabelValues(name)); got != 1 {
				t.Fatalf("instances gauge = %v, want 1", got)
			}
		})
	}
}

func TestHugeAllocIsOOM(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	s := load(t, r, PluginConfig{Name: "small", Path: fixture("good.wasm"), MemoryPages: 4})
	m := request("continue")
	m.Body = json.RawMessage(`{"pad":"` + strings.Repeat("x", 300<<10) + `"}`)
	_, err := handle(t, s, m)
	if !errors.Is(err, engine.ErrPluginFailure) || !strings.Contains(err.Error(), "oom") {
		t.Fatalf("err = %v, want an oom plugin failure", err)
	}
	if _, err := handle(t, s, request("continue")); err != nil {
		t.Fatalf("next call: %v", err)
	}
}

func TestMaxMessageSize(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	s := load(t, r, PluginConfig{Name: "max", Path: fixture("good.wasm"), MaxMessageSize: 1024})
	m := request("continue")
	m.Body = json.RawMessage(`{"pad":"` + strings.Repeat("x", 2048) + `"}`)
	if _, err := handle(t, s, m); !errors.Is(err, engine.ErrPluginFailure) || !strings.Contains(err.Error(), "max-message-size") {
		t.Fatalf("err = %v", err)
	}
}

// TestPoolExhaustion: when every instance is in a call, the next call waits
// for one (bounded by its context) instead of creating more than PoolSize.
func TestPoolExhaustion(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	s := load(t, r, PluginConfig{Name: "one", Path: fixture("good.wasm"), PoolSize: 1})
	held, err := s.pool.get(context.Background(), nil) // the only instance, as if mid-call
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.Handle(ctx, request("continue")); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, engine.ErrPluginFailure) {
		t.Fatalf("call on an exhausted pool = %v, want a plugin failure after the deadline", err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := f.Handle(context.Background(), request("continue"))
		got <- err
	}()
	s.pool.put(held, false)
	if err := <-got; err != nil {
		t.Fatalf("call after the instance came back: %v", err)
	}
}

func TestRecycle(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	s := load(t, r, PluginConfig{Name: "rec", Path: fixture("good.wasm"), RecycleAfter: 3, PoolSize: 1})
	created := countInstances(s)
	for i := 0; i < 10; i++ {
		if _, err := handle(t, s, request("continue")); err != nil {
			t.Fatal(err)
		}
	}
	// calls 1-3 on the eager instance, then a new one every 3 calls: 4-6, 7-9, 10.
	if created.Load() != 3 {
		t.Fatalf("created %d instances, want 3", created.Load())
	}
}

func TestCloseStage(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	s := load(t, r, PluginConfig{Name: "c", Path: fixture("good.wasm")})
	f, err := s.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close() // after the stage: must not panic
	if _, err := s.Open(context.Background()); err == nil {
		t.Fatal("Open after Close succeeded")
	}
}

// TestHammer runs many interleaved exchanges on a small pool. busy.wasm traps
// when two goroutines enter one instance at once.
func TestHammer(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	s := load(t, r, PluginConfig{Name: "busy", Path: fixture("busy.wasm"), PoolSize: 3, RecycleAfter: 50})
	const workers, rounds = 16, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				id := fmt.Sprintf("w%d-r%d", w, i)
				f, err := s.Open(context.Background())
				if err != nil {
					errs <- err
					return
				}
				m := &engine.Message{Hook: engine.HookRequest, RequestID: id, Method: "tools/call", Body: json.RawMessage(`{}`)}
				if _, err := f.Handle(context.Background(), m); err != nil {
					errs <- err
					f.Close()
					return
				}
				for j := 0; j < 3; j++ {
					m := &engine.Message{Hook: engine.HookResponse, RequestID: id, Method: "tools/call", Body: json.RawMessage(`{}`), Notification: j < 2}
					if _, err := f.Handle(context.Background(), m); err != nil {
						errs <- fmt.Errorf("exchange %s: %w", id, err)
						f.Close()
						return
					}
				}
				f.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := metricValue(r.metrics.instances.WithLabelValues("busy")); n > 3 {
		t.Fatalf("%v live instances, pool size 3", n)
	}
}

// TestLongExchangesDoNotHoldInstances opens more exchanges than the pool has
// instances and keeps them all open between request and response, as slow
// tool calls do: instances are checked out per call, so nothing blocks.
func TestLongExchangesDoNotHoldInstances(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	s := load(t, r, PluginConfig{Name: "busy", Path: fixture("busy.wasm"), PoolSize: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var open []engine.Filter
	for i := 0; i < 10; i++ {
		f, err := s.Open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, f)
		if _, err := f.Handle(ctx, &engine.Message{Hook: engine.HookRequest, Method: "tools/call", Body: json.RawMessage(`{}`)}); err != nil {
			t.Fatalf("request %d blocked or failed with %d exchanges open on a pool of 1: %v", i, len(open), err)
		}
	}
	for i, f := range open {
		if _, err := f.Handle(ctx, &engine.Message{Hook: engine.HookResponse, Method: "tools/call", Body: json.RawMessage(`{}`)}); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		f.Close()
	}
	if n := metricValue(r.metrics.instances.WithLabelValues("busy")); n != 1 {
		t.Fatalf("%v live instances, want 1", n)
	}
}

// TestTrustedStage: a trusted stage (no loop checks) loads and serves; an
// untrusted one with the same module interrupts a runaway loop (TestFailures).
func TestTrustedStage(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	s := load(t, r, PluginConfig{Name: "trusted", Path: fixture("good.wasm"), Trusted: true})
	res, err := handle(t, s, request("jam"))
	if err != nil || res.Action != engine.Reject {
		t.Fatalf("trusted stage: %+v, %v", res, err)
	}
}

func TestEnvelopeLayout(t *testing.T) {
	m := &engine.Message{
		Hook: engine.HookResponse, Side: engine.SideRelay, Notification: true, Status: 200,
		Tunnel: "t", Channel: "ch", SessionID: "s", RequestID: "r", Method: "m", Tool: "tool", Caller: "c",
		Header: http.Header{"A": {"1"}}, Body: json.RawMessage(`{}`),
	}
	b := make([]byte, envelopeSize(m))
	encodeEnvelope(b, m)
	var want bytes.Buffer
	u32 := func(v uint32) { want.Write([]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}) }
	str := func(s string) { u32(uint32(len(s))); want.WriteString(s) }
	u32(1)
	want.Write([]byte{2, 3, 0, 0})
	u32(200)
	for _, s := range []string{"t", "ch", "s", "r", "m", "tool", "c"} {
		str(s)
	}
	u32(1)
	str("A")
	str("1")
	str("{}")
	if !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("envelope\n got %v\nwant %v", b, want.Bytes())
	}
}

func FuzzDecodeAnswer(f *testing.F) {
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 'A', 1, 0, 0, 0, 'b', 2, 0, 0, 0, '{', '}'}, false)
	f.Add([]byte{3, 0, 0, 0, 0x93, 1, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, '{', '}'}, false)
	f.Add([]byte{4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, true)
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, false)
	f.Fuzz(func(t *testing.T, b []byte, notif bool) {
		m := request("x")
		m.Notification = notif
		r, err := decodeAnswer(b, m)
		if err != nil {
			return
		}
		if r.Action > engine.Drop {
			t.Fatalf("accepted action %d", r.Action)
		}
		if (r.Action == engine.Replace || r.Action == engine.Respond) && r.Body != nil && !json.Valid(r.Body) {
			t.Fatalf("accepted invalid body %q", r.Body)
		}
		if r.Action == engine.Drop && !notif {
			t.Fatal("accepted drop on a request")
		}
	})
}

func FuzzDecodeExtismAnswer(f *testing.F) {
	f.Add([]byte(`{"action":"replace","message":{"a":1},"headers":[{"op":"set","name":"x","value":"y"}]}`))
	f.Add([]byte(`{"action":"reject","status":403,"error":{"code":-1,"message":"no"}}`))
	f.Add([]byte(`{"action":"drop"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeExtismAnswer(b, request("x"))
		if err != nil {
			return
		}
		if r.Action > engine.Drop || r.Action == engine.Drop {
			t.Fatalf("accepted action %d on a request", r.Action)
		}
		if r.Body != nil && !json.Valid(r.Body) {
			t.Fatalf("accepted invalid body %q", r.Body)
		}
	})
}

// metricValue reads a counter or gauge.
func metricValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// TestInChain runs stages through engine.Chain: request down, response up,
// a rejecting stage, and a failing stage under both policies.
func TestInChain(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	good := load(t, r, PluginConfig{Name: "good", Path: fixture("good.wasm")})
	bad := load(t, r, PluginConfig{Name: "bad", Path: fixture("bad.wasm"), OnError: engine.FailOpen})
	if bad.OnError() != engine.FailOpen || good.Shadow() {
		t.Fatal("policy accessors")
	}
	c := engine.NewChain([]engine.ChainStage{good.ChainStage(), bad.ChainStage()}, engine.ChainOptions{})
	tests := []struct {
		method string
		action engine.Action
		body   string
	}{
		{"continue", engine.Continue, `{"jsonrpc":"2.0","id":1,"method":"continue"}`},
		{"replace", engine.Continue, `{"replaced":true}`},
		{"jam", engine.Reject, `{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"denied","data":{"by":"wat"}}}`},
		{"unreachable", engine.Continue, `{"jsonrpc":"2.0","id":1,"method":"unreachable"}`}, // bad fails open
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			x := c.Begin()
			defer x.Close()
			out := x.Request(context.Background(), request(tt.method))
			if out.Action != tt.action || string(out.Body) != tt.body {
				t.Fatalf("outcome %v %s, want %v %s", out.Action, out.Body, tt.action, tt.body)
			}
		})
	}
}

// TestConfigKeysAccepted: a plugin that lists its config keys loads with
// any subset of them, and with none.
func TestConfigKeysAccepted(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	for _, cfg := range []map[string]any{nil, {"tag": "x"}, {"tag": "x", "block": []string{"a"}}} {
		load(t, r, PluginConfig{Name: "keys", Path: fixture("configkeys.wasm"), Config: cfg})
	}
}
