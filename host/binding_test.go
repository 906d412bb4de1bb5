package host

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/enginetest"
)

// loadBindingFixture loads a binding plugin (by default testdata/binding.wasm
// as "wat") until the test ends.
func loadBindingFixture(t testing.TB, r *Runtime, cfg BindingConfig) *Binding {
	t.Helper()
	if cfg.Plugin.Name == "" {
		cfg.Plugin.Name = "wat"
	}
	if cfg.Plugin.Path == "" && cfg.Plugin.Module == nil {
		cfg.Plugin.Path = fixture("binding.wasm")
	}
	b, err := r.LoadBinding(context.Background(), cfg)
	return closedAtEnd(t, b, err)
}

// rpcRequest is a JSON-RPC request with id 1 for a binding.
func rpcRequest(method string) *binding.Request {
	return &binding.Request{Kind: binding.KindJSONRPC, ID: json.RawMessage(`1`),
		Header: http.Header{"Accept": {"application/json, text/event-stream"}},
		Body:   json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":{}}`)}
}

// doBinding runs req and returns every reply; it fails the test when Do
// does not end with exactly one final reply.
func doBinding(t testing.TB, b *Binding, req *binding.Request) []*binding.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*binding.Reply
	err := b.Do(ctx, req, func(r *binding.Reply) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if len(out) == 0 || !out[len(out)-1].Final {
		t.Fatalf("no final reply: %+v", out)
	}
	for _, r := range out[:len(out)-1] {
		if r.Final {
			t.Fatalf("a final reply before the last: %+v", out)
		}
	}
	return out
}

func final(rs []*binding.Reply) *binding.Reply { return rs[len(rs)-1] }

func TestBindingReplies(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	b := loadBindingFixture(t, r, BindingConfig{})

	t.Run("respond", func(t *testing.T) {
		rep := final(doBinding(t, b, rpcRequest("ok")))
		if rep.Status != 200 || string(rep.Body) != `{"jsonrpc":"2.0","id":1,"result":{"ok":true}}` {
			t.Fatalf("reply %d %s", rep.Status, rep.Body)
		}
		if rep.Header.Get("X-Wat") != "1" || rep.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("headers %v", rep.Header)
		}
	})
	t.Run("reject is wrapped with the request's id", func(t *testing.T) {
		req := rpcRequest("reject")
		req.ID = json.RawMessage(`"abc"`)
		req.Body = json.RawMessage(`{"jsonrpc":"2.0","id":"abc","method":"reject"}`)
		rep := final(doBinding(t, b, req))
		if rep.Status != 404 || string(rep.Body) != `{"jsonrpc":"2.0","id":"abc","error":{"code":-32601,"message":"no such method"}}` {
			t.Fatalf("reply %d %s", rep.Status, rep.Body)
		}
	})
	t.Run("notifications stream before the response", func(t *testing.T) {
		rs := doBinding(t, b, rpcRequest("emit"))
		if len(rs) != 3 {
			t.Fatalf("%d replies, want two notifications and the response", len(rs))
		}
		for _, n := range rs[:2] {
			if !strings.Contains(string(n.Body), `"notifications/progress"`) || n.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("notification %s %v", n.Body, n.Header)
			}
		}
		if ct := final(rs).Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("final Content-Type %q after notifications, want text/event-stream", ct)
		}
	})
	t.Run("notification accepted", func(t *testing.T) {
		req := &binding.Request{Kind: binding.KindJSONRPC, Notification: true, Body: json.RawMessage(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)}
		rep := final(doBinding(t, b, req))
		if rep.Status != 202 || len(rep.Body) != 0 {
			t.Fatalf("reply %d %q", rep.Status, rep.Body)
		}
	})
	t.Run("session end accepted", func(t *testing.T) {
		req := &binding.Request{Kind: binding.KindSessionTermination, Header: http.Header{"Mcp-Session-Id": {"s"}}}
		rep := final(doBinding(t, b, req))
		if rep.Status != 200 || len(rep.Body) != 0 {
			t.Fatalf("reply %d %q", rep.Status, rep.Body)
		}
	})
}

// TestBindingFailures: a binding that traps, loops, answers garbage, answers
// twice or not at all gets a -32603 error naming the plugin for that call,
// the failure is counted by kind, and the channel keeps serving.
func TestBindingFailures(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs enginetest.SyncBuffer
	r := newTestRuntime(t, reg, slog.New(slog.NewJSONHandler(&logs, nil)))
	b := loadBindingFixture(t, r, BindingConfig{Plugin: PluginConfig{Name: "wat", CallTimeout: 200 * time.Millisecond, PoolSize: 1}})
	tests := []struct {
		method, kind, text string
	}{
		{"trap", kindTrap, "trapped"},
		{"loop", kindTimeout, "did not answer within its call-timeout"},
		{"garbage", kindMalformed, "malformed"},
		{"none", kindMalformed, "malformed"},
		{"double", kindMalformed, "malformed"},
		{"wrongid", kindMalformed, "malformed"},
		{"junk", kindMalformed, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			before := metricValue(r.metrics.failures.WithLabelValues("wat", tt.kind))
			rs := doBinding(t, b, rpcRequest(tt.method))
			if len(rs) != 1 {
				t.Fatalf("%d replies, want only the error (a second answer must not reach the client): %+v", len(rs), rs)
			}
			rep := rs[0]
			var msg struct {
				ID    int `json:"id"`
				Error struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
					Data    struct {
						Plugin, Kind string
					} `json:"data"`
				} `json:"error"`
			}
			if err := json.Unmarshal(rep.Body, &msg); err != nil {
				t.Fatalf("body %s: %v", rep.Body, err)
			}
			if msg.ID != 1 || msg.Error.Code != -32603 || !strings.Contains(msg.Error.Message, `binding plugin "wat"`) ||
				!strings.Contains(msg.Error.Message, tt.text) || msg.Error.Data.Plugin != "wat" || msg.Error.Data.Kind != tt.kind {
				t.Fatalf("reply %s", rep.Body)
			}
			if strings.Contains(string(rep.Body), "tunnel_failure") {
				t.Fatalf("a plugin failure is not a tunnel failure: %s", rep.Body)
			}
			if got := metricValue(r.metrics.failures.WithLabelValues("wat", tt.kind)) - before; got != 1 {
				t.Fatalf("failures{kind=%s} grew by %v", tt.kind, got)
			}
			// The channel keeps serving (on a fresh instance: the pool holds one).
			if rep := final(doBinding(t, b, rpcRequest("ok"))); rep.Status != 200 || !strings.Contains(string(rep.Body), `"ok":true`) {
				t.Fatalf("next call: %d %s", rep.Status, rep.Body)
			}
		})
	}
	if !strings.Contains(logs.String(), `"msg":"binding plugin failed: answering the call with an error"`) {
		t.Errorf("failures not logged: %s", logs.String())
	}
}

// TestBindingDeniedCapabilities: a host off the allow-list, no http config
// at all, a command that is not configured: each is an error the guest gets
// (HostErrDenied), logged once, and not a plugin failure.
func TestBindingDeniedCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  BindingConfig
	}{
		{"no http config", BindingConfig{}},
		{"host not on the allow-list", BindingConfig{HTTP: HTTPConfig{AllowedHosts: []string{"http://127.0.0.1:1"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs enginetest.SyncBuffer
			r := newTestRuntime(t, nil, slog.New(slog.NewJSONHandler(&logs, nil)))
			b := loadBindingFixture(t, r, tc.cfg)
			for range 3 {
				for _, m := range []string{"http", "process"} {
					if rep := final(doBinding(t, b, rpcRequest(m))); !strings.Contains(string(rep.Body), `"denied":true`) {
						t.Fatalf("%s: %s", m, rep.Body)
					}
				}
			}
			if n := strings.Count(logs.String(), "its config does not allow (logged once)"); n != 2 {
				t.Fatalf("%d refusal lines, want one per refused thing:\n%s", n, logs.String())
			}
			if got := metricValue(r.metrics.failures.WithLabelValues("wat", kindMalformed)); got != 0 {
				t.Fatalf("a refusal counted as a plugin failure")
			}
		})
	}
}

// TestBindingComputeBudgetExcludesIO: time the guest waits in a host call
// (here: the client taking its notifications slowly) does not count against
// its call-timeout.
func TestBindingComputeBudgetExcludesIO(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	b := loadBindingFixture(t, r, BindingConfig{Plugin: PluginConfig{Name: "wat", CallTimeout: 100 * time.Millisecond}})
	var got []*binding.Reply
	err := b.Do(context.Background(), rpcRequest("emit"), func(rep *binding.Reply) error {
		got = append(got, rep)
		if !rep.Final {
			time.Sleep(150 * time.Millisecond) // each longer than the whole budget
		}
		return nil
	})
	if err != nil || len(got) != 3 || !strings.Contains(string(got[2].Body), `"ok":true`) {
		t.Fatalf("err %v, replies %d, final %s", err, len(got), final(got).Body)
	}
}

// TestBindingCancelled: a call whose context ends is interrupted at once,
// answers nothing, and is not counted as a plugin failure.
func TestBindingCancelled(t *testing.T) {
	r := newTestRuntime(t, prometheus.NewRegistry(), nil)
	b := loadBindingFixture(t, r, BindingConfig{Plugin: PluginConfig{Name: "wat", CallTimeout: time.Minute, PoolSize: 1}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	var replies int
	err := b.Do(ctx, rpcRequest("loop"), func(*binding.Reply) error { replies++; return nil })
	if !errors.Is(err, context.DeadlineExceeded) || replies != 0 {
		t.Fatalf("err %v, %d replies", err, replies)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the looping guest ran %s after its context ended", d)
	}
	if got := metricValue(r.metrics.failures.WithLabelValues("wat", kindTimeout)); got != 0 {
		t.Fatalf("a cancelled call counted as a timeout")
	}
	if rep := final(doBinding(t, b, rpcRequest("ok"))); !strings.Contains(string(rep.Body), `"ok":true`) {
		t.Fatalf("next call: %s", rep.Body)
	}
}

func TestBindingTooLarge(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	b := loadBindingFixture(t, r, BindingConfig{Plugin: PluginConfig{Name: "wat", MaxMessageSize: 64}})
	req := rpcRequest("ok")
	req.Body = json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"ok","params":{"x":"` + strings.Repeat("a", 100) + `"}}`)
	rep := final(doBinding(t, b, req))
	if !strings.Contains(string(rep.Body), `"kind":"too_large"`) {
		t.Fatalf("reply %s", rep.Body)
	}
}

func TestLoadBindingRefuses(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  BindingConfig
		want string
	}{
		{"a filter", BindingConfig{Plugin: PluginConfig{Name: "f", Path: fixture("good.wasm")}}, "missing export sluice_on_call"},
		{"an Extism module", BindingConfig{Plugin: PluginConfig{Name: "x", Path: fixture("extism-go.wasm")}}, "an Extism module cannot be a binding plugin"},
		{"a pin that does not match", BindingConfig{Plugin: PluginConfig{Name: "p", Path: fixture("binding.wasm"), SHA256: strings.Repeat("0", 64)}}, "sha256 mismatch"},
		{"a bad allow-list entry", BindingConfig{Plugin: PluginConfig{Name: "h", Path: fixture("binding.wasm")}, HTTP: HTTPConfig{AllowedHosts: []string{"ftp://x"}}}, "want an absolute http:// or https:// URL"},
		{"a header for a host not allowed", BindingConfig{Plugin: PluginConfig{Name: "h", Path: fixture("binding.wasm")},
			HTTP: HTTPConfig{AllowedHosts: []string{"http://a:1"}, Headers: []HTTPHeader{{Origin: "http://b:1", Name: "Authorization", Value: "x"}}}}, "is not an allowed host"},
		{"a command that does not exist", BindingConfig{Plugin: PluginConfig{Name: "c", Path: fixture("binding.wasm")},
			Commands: []Command{{Name: "x", Argv: []string{"/nonexistent/sluice-test-program"}}}}, "command x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.LoadBinding(ctx, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), `host: load binding plugin "`+tc.cfg.Plugin.Name+`"`) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	_, err := r.Load(ctx, PluginConfig{Name: "b", Path: fixture("binding.wasm")})
	if err == nil || !strings.Contains(err.Error(), "configure it under mcp.bindings") {
		t.Fatalf("binding loaded as a chain stage: %v", err)
	}
}

// TestBindingReloadDrains: a reload swaps the plugin while a call runs; the
// call finishes on the old one, new calls go to the new one, and the old one
// is closed only after the call ended.
func TestBindingReloadDrains(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	b := loadBindingFixture(t, r, BindingConfig{Plugin: PluginConfig{Name: "old"}})
	inCall, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	done := make(chan []*binding.Reply, 1)
	go func() {
		var got []*binding.Reply
		err := b.Do(context.Background(), rpcRequest("emit"), func(rep *binding.Reply) error {
			got = append(got, rep)
			if !rep.Final {
				once.Do(func() { close(inCall) })
				<-release
			}
			return nil
		})
		if err != nil {
			t.Errorf("in-flight call: %v", err)
		}
		done <- got
	}()
	<-inCall
	var reloaded atomic.Bool
	reloadErr := make(chan error, 1)
	go func() {
		reloadErr <- b.Reload(context.Background(), BindingConfig{Plugin: PluginConfig{Name: "new", Path: fixture("binding.wasm")}}, 20*time.Second)
		reloaded.Store(true)
	}()
	enginetest.WaitFor(t, "new plugin serving", func() bool { return b.Name() == "new" })
	if rep := final(doBinding(t, b, rpcRequest("ok"))); !strings.Contains(string(rep.Body), `"ok":true`) {
		t.Fatalf("call on the new plugin: %s", rep.Body)
	}
	time.Sleep(50 * time.Millisecond)
	if reloaded.Load() {
		t.Fatal("reload returned (closing the old plugin) while a call still ran on it")
	}
	close(release)
	got := <-done
	if len(got) != 3 || !strings.Contains(string(got[2].Body), `"ok":true`) {
		t.Fatalf("in-flight call replies: %d, final %s", len(got), final(got).Body)
	}
	if err := <-reloadErr; err != nil {
		t.Fatal(err)
	}
	// A reload that fails keeps the running plugin.
	if err := b.Reload(context.Background(), BindingConfig{Plugin: PluginConfig{Name: "broken", Path: fixture("good.wasm")}}, time.Second); err == nil {
		t.Fatal("a filter module was loaded as the binding")
	}
	if b.Name() != "new" {
		t.Fatalf("after a failed reload the binding is %q", b.Name())
	}
}

// TestBindingHammer: concurrent calls on a small pool all get their own
// answer.
func TestBindingHammer(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	b := loadBindingFixture(t, r, BindingConfig{Plugin: PluginConfig{Name: "wat", PoolSize: 2}})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				m := []string{"ok", "emit", "reject"}[w%3]
				rs := doBinding(t, b, rpcRequest(m))
				if st := final(rs).Status; (m == "reject") != (st == 404) {
					t.Errorf("%s: status %d", m, st)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := b.cur.Load().s.pool.idleCount(); n > 2 {
		t.Fatalf("%d idle instances in a pool of 2", n)
	}
}

var _ = engine.Respond
