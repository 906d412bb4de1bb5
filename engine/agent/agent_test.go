package agent

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/wire"
)

func TestNewValidates(t *testing.T) {
	main := map[string]binding.Binding{"main": &fakeBinding{}}
	good := Config{TunnelID: testTunnel, APIKey: testKey}
	tests := []struct {
		name    string
		cfg     func(*Config)
		binds   map[string]binding.Binding
		wantErr string
	}{
		{name: "ok", cfg: func(*Config) {}, binds: main},
		{name: "bad tunnel id", cfg: func(c *Config) { c.TunnelID = "tunnel_ABC" }, binds: main, wantErr: "control-plane.tunnel-id:"},
		{name: "empty key", cfg: func(c *Config) { c.APIKey = "" }, binds: main, wantErr: "control-plane.api-key:"},
		{name: "key charset", cfg: func(c *Config) { c.APIKey = "sk key" }, binds: main, wantErr: "control-plane.api-key:"},
		{name: "max inflight", cfg: func(c *Config) { c.MaxInflight = 10001 }, binds: main, wantErr: "control-plane.max-inflight:"},
		{name: "max concurrent", cfg: func(c *Config) { c.MaxConcurrent = 1 << 40 }, binds: main, wantErr: "mcp.max-concurrent-requests:"},
		{name: "poll timeout below 1ms", cfg: func(c *Config) { c.PollTimeout = time.Microsecond }, binds: main, wantErr: "control-plane.poll-timeout:"},
		{name: "poll timeout that overflows its deadline", cfg: func(c *Config) { c.PollTimeout = math.MaxInt64 }, binds: main, wantErr: "control-plane.poll-timeout:"},
		{name: "base url", cfg: func(c *Config) { c.BaseURL = "ftp://x" }, binds: main, wantErr: "control-plane.base-url:"},
		{name: "no main", cfg: func(*Config) {}, binds: map[string]binding.Binding{"other": &fakeBinding{}}, wantErr: "mcp.server-url:"},
		{name: "bad channel", cfg: func(*Config) {}, binds: map[string]binding.Binding{"main": &fakeBinding{}, "Bad!": &fakeBinding{}}, wantErr: "mcp.server-url:"},
		{name: "version is a commit hash", cfg: func(c *Config) { c.ClientVersion = "1474d1f" }, binds: main, wantErr: "client version"},
		{name: "semantic version", cfg: func(c *Config) { c.ClientVersion = "0.7.0-dev" }, binds: main},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.cfg(&c)
			_, err := New(c, Options{Bindings: tc.binds})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
				t.Fatalf("error = %v, want prefix %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "sk key") {
				t.Fatalf("error leaks the key: %v", err)
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	relay := newFakeRelay(t)
	relay.add(call("r1", 1, "tools/list"))
	b := &fakeBinding{affinity: true}
	a, _, _ := startAgent(t, relay, b, func(c *Config, o *Options) {
		c.OrganizationID = "org-1"
		c.ExtraHeaders = http.Header{"X-Extra": {"yes"}, "Authorization": {"Bearer evil"}, "X-Tunnel-Client-Name": {"evil"}, "User-Agent": {"evil"}}
		o.Bindings["aux"] = &fakeBinding{}
	})
	final := relay.finalFor("r1")
	relay.mu.Lock()
	ph := relay.pollHdrs[0]
	relay.mu.Unlock()
	for _, h := range []http.Header{ph, final.header} {
		if got := h.Get("Authorization"); got != "Bearer "+testKey {
			t.Errorf("Authorization = %q", got)
		}
		if got := h.Values("Authorization"); len(got) != 1 {
			t.Errorf("Authorization values = %q", got)
		}
		if got := h.Get(wire.HeaderClientName); got != "sluice" {
			t.Errorf("client name = %q", got)
		}
		if got := h.Get(wire.HeaderClientVersion); got != "1.2.3" {
			t.Errorf("client version = %q", got)
		}
		if got := h.Get("User-Agent"); got != "sluice/1.2.3" {
			t.Errorf("User-Agent = %q, want sluice/1.2.3", got)
		}
		id := h.Get(wire.HeaderClientInstanceID)
		if _, err := hex.DecodeString(id); err != nil || len(id) != 32 || id != a.instanceID {
			t.Errorf("instance id = %q", id)
		}
		if got, want := h.Get(wire.HeaderServerInfo), `{"version":1,"channels":[{"name":"aux"},{"name":"main","proc_affinity":true}]}`; got != want {
			t.Errorf("server info = %s, want %s", got, want)
		}
		if got := h.Get("OpenAI-Organization"); got != "org-1" {
			t.Errorf("organization = %q", got)
		}
		if got := h.Get("X-Extra"); got != "yes" {
			t.Errorf("extra header = %q", got)
		}
	}
	if ph.Get(wire.HeaderShardToken) != "" {
		t.Error("poll carries a shard token")
	}
	if got := final.header.Get(wire.HeaderShardToken); got != "shard-r1" {
		t.Errorf("shard token header = %q", got)
	}
	if bytes.Contains(final.raw, []byte("shard")) {
		t.Errorf("shard token in the body: %s", final.raw)
	}
	// Only the allow-listed response headers travel back.
	if _, ok := final.resp.RespHeaders["X-Internal"]; ok {
		t.Errorf("resp_headers not filtered: %v", final.resp.RespHeaders)
	}
	if got := final.resp.RespHeaders["Content-Type"]; len(got) != 1 || got[0] != "application/json" {
		t.Errorf("resp_headers = %v", final.resp.RespHeaders)
	}
	// The binding saw the command headers in canonical form.
	if got := b.requests()[0].Header.Get("Mcp-Session-Id"); got != "sess-1" {
		t.Errorf("binding header Mcp-Session-Id = %q", got)
	}
}

// TestServerInfoIsVersion1 checks the server-info header against what the
// published contract allows in version 1: version, channels, name and
// proc_affinity, nothing else (an oauth_metadata flag used to ride along).
func TestServerInfoIsVersion1(t *testing.T) {
	got, err := serverInfo(map[string]binding.Binding{"main": &oauthBinding{}, "local": &fakeBinding{affinity: true}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"version":1,"channels":[{"name":"local","proc_affinity":true},{"name":"main"}]}`; got != want {
		t.Fatalf("server info = %s, want %s", got, want)
	}
}

func TestPollLimit(t *testing.T) {
	tests := []struct {
		name               string
		inflight, parallel int
		wantFirst          int
	}{
		{name: "buffer smaller than 25", inflight: 3, parallel: 1, wantFirst: 3},
		{name: "capped at 25", inflight: 100, parallel: 1, wantFirst: 25},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			relay := newFakeRelay(t)
			release := make(chan struct{})
			b := &fakeBinding{do: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				return echo(req, emit)
			}}
			for i := range 200 {
				relay.add(call("r"+itoa(i), i, "tools/call"))
			}
			startAgent(t, relay, b, func(c *Config, _ *Options) {
				c.MaxInflight, c.MaxConcurrent = tc.inflight, tc.parallel
			})
			want := int64(tc.inflight + tc.parallel)
			enginetest.WaitFor(t, "buffer and workers full", func() bool {
				return relay.delivered.Load() >= want && b.running.Load() == int64(tc.parallel)
			})
			enginetest.WaitFor(t, "no poll outstanding", func() bool { return relay.outstanding.Load() == 0 })
			polls := relay.polls.Load()
			time.Sleep(150 * time.Millisecond) // a window in which no poll may start
			if got := relay.polls.Load(); got != polls {
				t.Errorf("polled %d more times with a full buffer", got-polls)
			}
			if got := relay.delivered.Load(); got != want {
				t.Errorf("delivered %d commands, want %d (buffer + running)", got, want)
			}
			relay.mu.Lock()
			limits := append([]int(nil), relay.limits...)
			relay.mu.Unlock()
			if limits[0] != tc.wantFirst {
				t.Errorf("first limit = %d, want %d", limits[0], tc.wantFirst)
			}
			for _, l := range limits {
				if l < 1 || l > min(tc.inflight, 25) {
					t.Errorf("limit %d out of range", l)
				}
			}
			close(release)
			enginetest.WaitFor(t, "all served", func() bool { return len(relay.allPosts()) == 200 })
			if m := relay.maxOut.Load(); m != 1 {
				t.Errorf("max outstanding polls = %d, want 1", m)
			}
		})
	}
}

func TestOverdeliveredCommandsAllServed(t *testing.T) {
	relay := newFakeRelay(t)
	relay.overdeliver = true
	for i := range 60 {
		relay.add(call("r"+itoa(i), i, "ping"))
	}
	startAgent(t, relay, &fakeBinding{}, func(c *Config, _ *Options) { c.MaxInflight = 2; c.MaxConcurrent = 2 })
	enginetest.WaitFor(t, "all 60 served", func() bool { return len(relay.allPosts()) == 60 })
}

func TestDeadlines(t *testing.T) {
	relay := newFakeRelay(t)
	gate := make(chan struct{})
	b := &fakeBinding{do: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
		switch {
		case strings.Contains(string(req.Body), `"block"`):
			<-gate
		case strings.Contains(string(req.Body), `"hang"`):
			<-ctx.Done() // the deadline bounds the call
			return &binding.Error{Source: wire.SourceTimeout, Kind: "timeout", Err: ctx.Err()}
		}
		return echo(req, emit)
	}}
	startAgent(t, relay, b, func(c *Config, _ *Options) { c.MaxConcurrent = 1 })
	relay.add(
		cmd("zero", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, withTimeout("0s")),
		cmd("malformed", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, withTimeout("5 seconds")),
		cmd("null", `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`, func(c map[string]any) { c["response_timeout"] = nil }),
	)
	relay.finalFor("malformed")
	relay.finalFor("null")
	if n := relay.attemptsFor("zero"); n != 0 {
		t.Errorf("expired command got %d POSTs", n)
	}
	for _, r := range b.requests() {
		if bytes.Contains(r.Body, []byte(`"id":1,`)) {
			t.Error("expired command reached the MCP server")
		}
	}
	// Expires while waiting in the buffer behind a blocked call.
	relay.add(
		cmd("blocker", `{"jsonrpc":"2.0","id":4,"method":"block"}`),
		cmd("short", `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`, withTimeout("50ms")),
	)
	enginetest.WaitFor(t, "blocker running", func() bool { return b.running.Load() == 1 })
	enginetest.WaitFor(t, "short delivered", func() bool { return relay.delivered.Load() == 5 })
	time.Sleep(100 * time.Millisecond) // let "short" expire in the buffer
	calls := b.calls.Load()
	close(gate)
	relay.finalFor("blocker")
	// A hanging call is cut by its deadline and no late error is synthesized.
	relay.add(cmd("hang", `{"jsonrpc":"2.0","id":6,"method":"hang"}`, withTimeout("100ms")),
		call("after", 7, "tools/list"))
	relay.finalFor("after")
	enginetest.WaitFor(t, "hang call ended", func() bool { return b.running.Load() == 0 })
	if n := relay.attemptsFor("short"); n != 0 {
		t.Errorf("command expired in the buffer got %d POSTs", n)
	}
	if got := b.calls.Load(); got != calls+2 { // hang + after; short never called
		t.Errorf("binding calls = %d, want %d", got, calls+2)
	}
	if n := relay.attemptsFor("hang"); n != 0 {
		t.Errorf("late error synthesized: %d POSTs", n)
	}
}

func TestSkipsBadInput(t *testing.T) {
	relay := newFakeRelay(t)
	relay.pollHook = func(n int, w http.ResponseWriter) bool {
		if n == 0 {
			_, _ = w.Write([]byte(`{"commands": [garbage`))
			return true
		}
		return false
	}
	b := &fakeBinding{}
	a, _, _ := startAgent(t, relay, b, nil)
	relay.add(
		map[string]any{"request_id": "u1", "shard_token": "s", "command_type": "teleport", "channel": "main", "headers": map[string]any{}},
		map[string]any{"request_id": "bad", "shard_token": "s", "command_type": "jsonrpc", "jsonrpc": "not an object"},
		map[string]any{"shard_token": "s", "command_type": "jsonrpc", "jsonrpc": map[string]any{}},
		call("ok", 1, "tools/list"),
	)
	relay.finalFor("ok")
	for _, id := range []string{"u1", "bad"} {
		if n := relay.attemptsFor(id); n != 0 {
			t.Errorf("%s: %d POSTs, want none", id, n)
		}
	}
	if n := b.calls.Load(); n != 1 {
		t.Errorf("binding calls = %d, want 1", n)
	}
	if got := counterValue(t, a, "commands_poll_errors_total", "decode"); got != 1 {
		t.Errorf("decode poll errors = %v", got)
	}
	if got := counterValue(t, a, "sluice_agent_commands_total", "skipped"); got != 3 {
		t.Errorf("skipped = %v, want 3", got)
	}
}

func TestStreamingNotificationsBeforeFinal(t *testing.T) {
	relay := newFakeRelay(t)
	b := &fakeBinding{do: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
		for i := range 3 {
			n := `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":` + itoa(i) + `}}`
			if err := emit(&binding.Reply{Status: 200, Body: json.RawMessage(n), Header: http.Header{"Content-Type": {"text/event-stream"}}}); err != nil {
				return err
			}
		}
		return echo(req, emit)
	}}
	startAgent(t, relay, b, nil)
	relay.add(call("s1", 9, "tools/call"))
	relay.finalFor("s1")
	ps := relay.postsFor("s1")
	if len(ps) != 4 {
		t.Fatalf("got %d POSTs, want 4", len(ps))
	}
	for i, p := range ps[:3] {
		if p.resp.RespType != wire.RespJSONRPCNotify {
			t.Errorf("post %d type = %s", i, p.resp.RespType)
		}
		if want := `"progress":` + itoa(i); !strings.Contains(string(p.resp.RespJSON), want) {
			t.Errorf("post %d out of order: %s", i, p.resp.RespJSON)
		}
	}
	if f := ps[3].resp; f.RespType != wire.RespJSONRPCResponse || f.RespCode != 200 || string(f.RespJSON) != `{"jsonrpc":"2.0","id":9,"result":{"ok":true}}` {
		t.Errorf("final = %+v", f)
	}
}

func TestFinalResponseTypes(t *testing.T) {
	relay := newFakeRelay(t)
	errBody := `{"jsonrpc":"2.0","id":3,"error":{"code":-32004,"message":"nope"}}`
	b := &fakeBinding{do: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
		if strings.Contains(string(req.Body), "missing/method") {
			return emit(&binding.Reply{Status: 404, Final: true, Body: json.RawMessage(errBody)})
		}
		return echo(req, emit)
	}}
	startAgent(t, relay, b, nil)
	relay.add(
		cmd("note", `{"jsonrpc":"2.0","method":"notifications/initialized"}`),
		cmd("answer", `{"jsonrpc":"2.0","id":"srv-1","result":{"action":"accept"}}`),
		map[string]any{"request_id": "end", "shard_token": "s-end", "command_type": "session_termination",
			"headers": map[string][]string{"Mcp-Session-Id": {"sess-9"}}},
		cmd("err", `{"jsonrpc":"2.0","id":3,"method":"missing/method"}`),
	)
	tests := []struct {
		id, typ string
		code    int
		json    string
	}{
		{"note", wire.RespNotifyAck, 202, ""}, // acknowledgements carry no resp_json
		{"answer", wire.RespNotifyAck, 202, ""},
		{"end", wire.RespSessionTermination, 204, ""},
		{"err", wire.RespJSONRPCResponse, 404, errBody},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			p := relay.finalFor(tc.id)
			if p.resp.RespType != tc.typ || p.resp.RespCode != tc.code || string(p.resp.RespJSON) != tc.json {
				t.Errorf("got type=%s code=%d json=%s, want %s %d %s", p.resp.RespType, p.resp.RespCode, p.resp.RespJSON, tc.typ, tc.code, tc.json)
			}
			if p.resp.Channel != "main" {
				t.Errorf("channel = %q", p.resp.Channel)
			}
		})
	}
	for _, r := range b.requests() {
		if r.Kind == binding.KindSessionTermination && r.Header.Get("Mcp-Session-Id") != "sess-9" {
			t.Errorf("session termination header = %v", r.Header)
		}
		if r.Kind == binding.KindJSONRPC && strings.Contains(string(r.Body), "notifications/initialized") && !r.Notification {
			t.Error("notification not marked")
		}
	}
}

func TestBoundedConcurrencyOutOfOrder(t *testing.T) {
	relay := newFakeRelay(t)
	firstGate := make(chan struct{})
	var once sync.Once
	b := &fakeBinding{do: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
		if strings.Contains(string(req.Body), `"slow"`) {
			<-firstGate
		} else {
			time.Sleep(time.Millisecond)
		}
		return echo(req, emit)
	}}
	startAgent(t, relay, b, func(c *Config, _ *Options) { c.MaxConcurrent = 3; c.MaxInflight = 10 })
	relay.add(cmd("slow", `{"jsonrpc":"2.0","id":0,"method":"slow"}`))
	for i := 1; i <= 40; i++ {
		relay.add(call("r"+itoa(i), i, "tools/call"))
	}
	enginetest.WaitFor(t, "fast ones done", func() bool { return len(relay.allPosts()) == 40 })
	once.Do(func() { close(firstGate) })
	relay.finalFor("slow")
	posts := relay.allPosts()
	if posts[len(posts)-1].resp.RequestID != "slow" {
		t.Error("the slow command did not complete last")
	}
	if m := b.maxRun.Load(); m > 3 {
		t.Errorf("max concurrent binding calls = %d, want <= 3", m)
	}
	if m := b.maxRun.Load(); m < 2 {
		t.Errorf("max concurrent binding calls = %d: no concurrency", m)
	}
}

func TestGracefulDrain(t *testing.T) {
	relay := newFakeRelay(t)
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	b := &fakeBinding{do: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return echo(req, emit)
	}}
	_, cancel, done := startAgent(t, relay, b, func(c *Config, _ *Options) { c.PollTimeout = time.Minute })
	relay.add(call("run", 1, "tools/call"))
	<-started
	enginetest.WaitFor(t, "next long poll outstanding", func() bool { return relay.outstanding.Load() == 1 })
	cancel()
	enginetest.WaitFor(t, "poll cancelled", func() bool { return relay.outstanding.Load() == 0 })
	polls := relay.polls.Load()
	close(release)
	<-done
	p := relay.finalFor("run")
	if p.resp.RespCode != 200 || p.resp.RespType != wire.RespJSONRPCResponse {
		t.Errorf("drained result = %+v", p.resp)
	}
	if relay.polls.Load() != polls {
		t.Error("polled after cancellation")
	}
}

func TestGraceExpiryAborts(t *testing.T) {
	relay := newFakeRelay(t)
	started := make(chan struct{}, 4)
	b := &fakeBinding{do: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
		started <- struct{}{}
		<-ctx.Done()
		return &binding.Error{Source: wire.SourceTimeout, Err: ctx.Err()}
	}}
	_, cancel, done := startAgent(t, relay, b, func(c *Config, _ *Options) {
		c.ShutdownGrace = 100 * time.Millisecond
		c.MaxConcurrent = 1
	})
	relay.add(call("running", 1, "tools/call"), call("queued", 2, "tools/call"))
	<-started
	enginetest.WaitFor(t, "queued delivered", func() bool { return relay.delivered.Load() == 2 })
	cancel()
	<-done
	for _, id := range []string{"running", "queued"} {
		p := relay.finalFor(id)
		f := checkFailure(t, p)
		if f.Source != wire.SourceClientInternal || f.TransportErrorKind != "connection_aborted" || p.resp.RespCode != 502 {
			t.Errorf("%s: failure = %+v code %d", id, f, p.resp.RespCode)
		}
	}
	if n := b.calls.Load(); n != 1 {
		t.Errorf("binding calls = %d: the queued command must not start after the grace", n)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestChannelRouting(t *testing.T) {
	relay := newFakeRelay(t)
	mainB, auxB := &fakeBinding{}, &fakeBinding{}
	startAgent(t, relay, mainB, func(_ *Config, o *Options) { o.Bindings["aux"] = auxB })
	onChannel := func(ch string) func(map[string]any) { return func(c map[string]any) { c["channel"] = ch } }
	relay.add(
		cmd("to-aux", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, onChannel("aux")),
		cmd("to-default", `{"jsonrpc":"2.0","id":2,"method":"ping"}`, func(c map[string]any) { delete(c, "channel") }),
		cmd("to-nowhere", `{"jsonrpc":"2.0","id":3,"method":"ping"}`, onChannel("nowhere")),
	)
	if p := relay.finalFor("to-aux"); p.resp.Channel != "aux" || p.resp.RespCode != 200 {
		t.Errorf("aux = %+v", p.resp)
	}
	if p := relay.finalFor("to-default"); p.resp.Channel != "main" || p.resp.RespCode != 200 {
		t.Errorf("default = %+v", p.resp)
	}
	p := relay.finalFor("to-nowhere")
	if f := checkFailure(t, p); f.Source != wire.SourceClientInternal || p.resp.RespCode != 502 {
		t.Errorf("unknown channel = %+v", f)
	}
	if auxB.calls.Load() != 1 || mainB.calls.Load() != 1 {
		t.Errorf("calls main=%d aux=%d", mainB.calls.Load(), auxB.calls.Load())
	}
}
