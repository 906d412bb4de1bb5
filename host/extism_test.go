package host

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/enginetest"
)

// rejectMessage runs method through s and returns the message of the
// reject the guest answers with.
func rejectMessage(t *testing.T, s *Stage, method string) string {
	t.Helper()
	res, err := handle(t, s, request(method))
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if res.Action != engine.Reject || res.Error == nil {
		t.Fatalf("%s: %v %+v, want a reject", method, res.Action, res)
	}
	return res.Error.Message
}

// TestExtismKernel runs host/testdata/extism-c.wasm, a C guest written
// against the raw Extism imports, through every kernel and user function the
// host implements.
func TestExtismKernel(t *testing.T) {
	var logs enginetest.SyncBuffer
	reg := prometheus.NewRegistry()
	r := newTestRuntime(t, reg, slog.New(slog.NewJSONHandler(&logs, nil)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/redirect" {
			http.Redirect(w, req, "http://localhost:1/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("hello " + req.Method))
	}))
	t.Cleanup(srv.Close)
	cfg := PluginConfig{
		Name: "kernel", Path: fixture("extism-c.wasm"), PoolSize: 1,
		Config:       map[string]any{"team": "infra", "url": srv.URL + "/x"},
		AllowedHosts: []string{"127.0.0.*"},
	}
	s := load(t, r, cfg)

	t.Run("kv and vars", func(t *testing.T) {
		for _, want := range []string{"1", "2", "3"} {
			if got := rejectMessage(t, s, "kv/incr"); got != want {
				t.Fatalf("kv count %q, want %q", got, want)
			}
		}
		if got := rejectMessage(t, s, "var/incr"); got != "1" {
			t.Fatalf("var count %q", got)
		}
		if got := rejectMessage(t, s, "var/incr"); got != "2" {
			t.Fatalf("var count %q", got)
		}
		// A failure discards the instance: its vars go with it, the
		// plugin's key/value store stays.
		if _, err := handle(t, s, request("error")); err == nil || !strings.Contains(err.Error(), "plugin error: boom") {
			t.Fatalf("error: %v", err)
		}
		if got := rejectMessage(t, s, "var/incr"); got != "1" {
			t.Fatalf("var count after a new instance %q, want 1", got)
		}
		if got := rejectMessage(t, s, "kv/incr"); got != "4" {
			t.Fatalf("kv count after a new instance %q, want 4", got)
		}
		// Shared with a reload of the same plugin (same name).
		s2 := load(t, r, cfg)
		if got := rejectMessage(t, s2, "kv/incr"); got != "5" {
			t.Fatalf("kv count in a reloaded stage %q, want 5", got)
		}
		if res, err := handle(t, s2, request("kv/del")); err != nil || res.Action != engine.Continue {
			t.Fatalf("kv/del: %v %v", res.Action, err)
		}
		if got := rejectMessage(t, s, "kv/incr"); got != "1" {
			t.Fatalf("kv count after delete %q, want 1", got)
		}
	})
	t.Run("config", func(t *testing.T) {
		if got := rejectMessage(t, s, "config"); got != "infra" {
			t.Fatalf("config team %q", got)
		}
	})
	t.Run("log", func(t *testing.T) {
		if res, err := handle(t, s, request("log")); err != nil || res.Action != engine.Continue {
			t.Fatalf("log: %v %v", res.Action, err)
		}
		var line map[string]any
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "hello from extism-c") {
				_ = json.Unmarshal([]byte(l), &line)
			}
		}
		if line["plugin"] != "kernel" || line["request_id"] != "req-1" || line["method"] != "log" || line["level"] != "INFO" {
			t.Fatalf("log line %v in %s", line, logs.String())
		}
	})
	t.Run("http allowed", func(t *testing.T) {
		if got := rejectMessage(t, s, "http"); got != "418 hello GET" {
			t.Fatalf("http answer %q", got)
		}
	})
	t.Run("http refused", func(t *testing.T) {
		for _, c := range []struct {
			name    string
			allowed []string
			path    string
			want    string
		}{
			{"none allowed", nil, "/x", `host "127.0.0.1" is not in allowed-hosts`},
			{"other host", []string{"example.com"}, "/x", `host "127.0.0.1" is not in allowed-hosts`},
			{"redirect", []string{"127.0.0.1"}, "/redirect", `redirect to host "localhost", which is not in allowed-hosts`},
		} {
			t.Run(c.name, func(t *testing.T) {
				cfg := cfg
				cfg.Name = "http-" + c.name
				cfg.AllowedHosts = c.allowed
				cfg.Config = map[string]any{"url": srv.URL + c.path}
				s := load(t, r, cfg)
				_, err := handle(t, s, request("http"))
				if !errors.Is(err, engine.ErrPluginFailure) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("err = %v, want %q", err, c.want)
				}
			})
		}
	})
	t.Run("oom", func(t *testing.T) {
		cfg := cfg
		cfg.Name = "oom"
		cfg.MemoryPages = 32
		s := load(t, r, cfg)
		_, err := handle(t, s, request("oom"))
		if !errors.Is(err, engine.ErrPluginFailure) || !strings.Contains(err.Error(), "plugin \"oom\" oom") {
			t.Fatalf("err = %v", err)
		}
		if got := rejectMessage(t, s, "config"); got != "infra" {
			t.Fatalf("after oom: %q", got)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		if _, isExtism := s.backend.(*extismBackend); !isExtism || !s.backend.(*extismBackend).interruptible {
			t.Fatal("the Extism module was not instrumented with the host's loop checks")
		}
		cfg := cfg
		cfg.Name = "spin"
		cfg.CallTimeout = 200 * time.Millisecond
		s := load(t, r, cfg)
		_, err := handle(t, s, request("spin"))
		if !errors.Is(err, engine.ErrPluginFailure) || !strings.Contains(err.Error(), "did not return within call-timeout 200ms") {
			t.Fatalf("err = %v", err)
		}
		if got := rejectMessage(t, s, "config"); got != "infra" {
			t.Fatalf("after timeout: %q", got)
		}
	})
}

// TestExtismLoadErrors: imports the host does not provide are refused at
// load, each named.
func TestExtismLoadErrors(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	for _, tt := range []struct{ fixture, want string }{
		{"extismuser.wasm", "unknown import extism:host/user.fetch_secret (the host provides kv_delete, kv_get, kv_set)"},
		{"extismabort.wasm", "forbidden import env.abort (an Extism plugin may import only extism:host/env, extism:host/user and wasi_snapshot_preview1; build AssemblyScript with --use abort=FILE/FUNCTION)"},
		{"extismsig.wasm", "import extism:host/env.input_length has signature () -> (i32), want () -> (i64)"},
	} {
		t.Run(tt.fixture, func(t *testing.T) {
			_, err := r.Load(context.Background(), PluginConfig{Name: "p1", Path: fixture(tt.fixture)})
			if want := `host: load plugin "p1": ` + tt.want; err == nil || err.Error() != want {
				t.Fatalf("err = %v\nwant    %s", err, want)
			}
		})
	}
}

func TestKernelMemory(t *testing.T) {
	k := newKernel(64, nil)
	a := k.alloc(10)
	b := k.alloc(0)
	if a == 0 || b == 0 || a == b || k.length(a) != 10 || k.length(b) != 0 {
		t.Fatalf("alloc: %d %d len %d %d", a, b, k.length(a), k.length(b))
	}
	copy(k.span(a, 10, "t"), "0123456789")
	k.release(a) // not the top block: kept for reuse
	if k.length(a) != 0 {
		t.Fatal("freed block still has a length")
	}
	if _, ok := k.bytes(a); ok {
		t.Fatal("freed block still readable")
	}
	c := k.alloc(8)
	if c != a || k.length(c) != 8 {
		t.Fatalf("free block not reused: %d (freed %d)", c, a)
	}
	if got, _ := k.bytes(c); string(got) != "\x00\x00\x00\x00\x00\x00\x00\x00" {
		t.Fatalf("reused block not cleared: %q", got)
	}
	k.release(b) // the top block: memory shrinks
	top := k.top
	func() {
		defer func() {
			if r := recover(); r != errKernelOOM {
				t.Fatalf("recover = %v, want errKernelOOM", r)
			}
		}()
		k.alloc(64)
	}()
	if k.top != top {
		t.Fatal("a failed alloc moved the top")
	}
	k.reset()
	if k.length(c) != 0 || len(k.mem) != 0 || k.top != kernelBase {
		t.Fatal("reset kept blocks")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("out-of-bounds span did not trap")
			}
		}()
		k.span(0, 8, "load_u64")
	}()
}

// TestExtismEnvelope: the envelope is valid JSON for every message, and a
// message that is not one JSON object travels as a string, so it cannot add
// members to the envelope.
func TestExtismEnvelope(t *testing.T) {
	m := request("tools/call")
	m.Tool = "ok\"\n\x01é"
	m.Header.Add("X-Two", "a")
	m.Header.Add("X-Two", "b\"")
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`,
		`{"a":1}, "tool":"other"`,
		"\xff not json",
		"",
	} {
		m.Body = json.RawMessage(body)
		env := appendExtismEnvelope(nil, m)
		var e struct {
			Tool    string              `json:"tool"`
			Headers map[string][]string `json:"headers"`
			Message json.RawMessage     `json:"message"`
		}
		if err := json.Unmarshal(env, &e); err != nil {
			t.Fatalf("%q: envelope is not JSON: %v\n%s", body, err, env)
		}
		if e.Tool != strings.ToValidUTF8(m.Tool, "\ufffd") || len(e.Headers["X-Two"]) != 2 || e.Headers["X-Two"][1] != `b"` {
			t.Fatalf("%q: fields: %+v", body, e)
		}
		if engine.ValidObject([]byte(body)) != (string(e.Message) == body) {
			t.Fatalf("%q: message embedded as %s", body, e.Message)
		}
	}
}
