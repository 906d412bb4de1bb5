package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/wire"
	"github.com/sluicemcp/sluice/engine/wire/wiretest"
)

// streamBinding is a fakeBinding that can also open GET streams.
type streamBinding struct {
	fakeBinding
	stream func(ctx context.Context, h http.Header, emit func(*binding.Reply) error) error

	mu      sync.Mutex
	headers []http.Header
	open    atomic.Int64 // Stream calls running
	calls   atomic.Int64
}

func (b *streamBinding) Stream(ctx context.Context, h http.Header, emit func(*binding.Reply) error) error {
	b.calls.Add(1)
	b.open.Add(1)
	defer b.open.Add(-1)
	b.mu.Lock()
	b.headers = append(b.headers, h.Clone())
	b.mu.Unlock()
	return b.stream(ctx, h, emit)
}

// Interface guard.
var _ binding.Streamer = (*streamBinding)(nil)

// streamCmd builds a get_stream command.
func streamCmd(id string, extra ...func(map[string]any)) map[string]any {
	c := map[string]any{
		"request_id": id, "shard_token": "shard-" + id, "command_type": wire.CommandGetStream, "channel": "main",
		"created_at": "2026-01-01T00:00:00Z",
		"headers":    map[string][]string{"Mcp-Session-Id": {"sess-1"}, "Last-Event-Id": {"ev-0"}, "Accept": {"text/event-stream"}},
	}
	for _, e := range extra {
		e(c)
	}
	return c
}

// opened is the reply of a server that opened its GET stream.
func opened() *binding.Reply {
	return &binding.Reply{Status: 200, Header: http.Header{"Content-Type": {"text/event-stream"}, "Mcp-Session-Id": {"sess-1"}, "X-Internal": {"secret"}}}
}

// holdOpen opens the stream and holds it until ctx ends.
func holdOpen(ctx context.Context, _ http.Header, emit func(*binding.Reply) error) error {
	if err := emit(opened()); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

func fastStreams(c *Config, _ *Options) { c.StreamHeartbeat = 60 * time.Millisecond }

// streamSchema compiles the project's schema of what an agent posts for a
// get_stream command (engine/wire/testdata/schema.json). The published
// contract is checked in TestEveryBodyMatchesContract.
func streamSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("../wire/testdata/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("file:///schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("file:///schema.json#/$defs/streamResponse")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkBodies validates every posted body against the project's schema.
func checkBodies(t *testing.T, posts []posted) {
	t.Helper()
	s := streamSchema(t)
	for _, p := range posts {
		if err := wiretest.Validate(t, s, p.raw); err != nil {
			t.Errorf("posted body %s: %v", p.raw, err)
		}
	}
}

// TestGetStreamOffer: the agent offers GET streams on its polls only to a
// relay that advertised the extension, only when it is on, and only when
// the main binding can open them.
func TestGetStreamOffer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		advertise bool
		off       bool
		plain     bool // a binding without GET streams
		want      bool
	}{
		{"advertised", true, false, false, true},
		{"relay without the extension", false, false, false, false},
		{"extension off", true, true, false, false},
		{"binding cannot stream", true, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := newFakeRelay(t)
			relay.streams = tc.advertise
			var b binding.Binding = &streamBinding{stream: holdOpen}
			if tc.plain {
				b = &fakeBinding{}
			}
			startAgent(t, relay, b, func(c *Config, _ *Options) { c.NoGetStream = tc.off })
			enginetest.WaitFor(t, "two polls", func() bool { return relay.polls.Load() >= 2 })
			relay.mu.Lock()
			hdrs := append([]http.Header(nil), relay.pollHdrs...)
			relay.mu.Unlock()
			for i, h := range hdrs {
				if got := wire.HasExtension(h.Get(wire.HeaderExtensions), wire.ExtGetStream); got != tc.want {
					t.Fatalf("poll %d offers GET streams: %v, want %v (%q)", i, got, tc.want, h.Get(wire.HeaderExtensions))
				}
			}
		})
	}
	// Extra headers cannot fake the offer.
	if !isProtected(wire.HeaderExtensions) {
		t.Error("X-Sluice-Extensions can be set through control-plane.extra-headers")
	}
}

// TestGetStreamNotOffered: a get_stream command reaching an agent that did
// not offer the extension is skipped like any unknown command type.
func TestGetStreamNotOffered(t *testing.T) {
	for _, name := range []string{"off", "binding cannot stream"} {
		t.Run(name, func(t *testing.T) {
			relay := newFakeRelay(t)
			relay.streams = true
			sb := &streamBinding{stream: holdOpen}
			var b binding.Binding = sb
			if name != "off" {
				b = &fakeBinding{}
			}
			a, _, _ := startAgent(t, relay, b, func(c *Config, _ *Options) { c.NoGetStream = name == "off" })
			relay.add(streamCmd("s1"), call("c1", 1, "ping"))
			relay.finalFor("c1")
			enginetest.WaitFor(t, "the skip", func() bool { return counterValue(t, a, "sluice_agent_commands_total", string(outcomeSkipped)) == 1 })
			if n := len(relay.postsFor("s1")); n != 0 || sb.calls.Load() != 0 {
				t.Fatalf("%d posts, %d streams for a command that was never offered", n, sb.calls.Load())
			}
		})
	}
}

// TestGetStreamLifecycle: the stream's messages go to the relay in order as
// jsonrpc_notify responses (the opening with the server's headers, each
// message with its event id, an id alone), heartbeats while it is quiet, and
// a final response when the server ends it; every body is a valid response
// payload of the published contract.
func TestGetStreamLifecycle(t *testing.T) {
	relay := newFakeRelay(t)
	relay.streams = true
	sampling := `{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{"maxTokens":8}}`
	changed := `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`
	sb := &streamBinding{stream: func(ctx context.Context, _ http.Header, emit func(*binding.Reply) error) error {
		for _, r := range []*binding.Reply{
			opened(),
			{Status: 200, Body: json.RawMessage(sampling), EventID: "e1"},
			{Status: 200, EventID: "e2"},
		} {
			if err := emit(r); err != nil {
				return err
			}
		}
		time.Sleep(250 * time.Millisecond) // quiet: heartbeats
		if err := emit(&binding.Reply{Status: 200, Body: json.RawMessage(changed), EventID: "e2"}); err != nil {
			return err
		}
		return emit(&binding.Reply{Status: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, Final: true})
	}}
	a, _, _ := startAgent(t, relay, sb, fastStreams)
	relay.add(streamCmd("s1"))
	final := relay.finalFor("s1")
	if final.resp.RespType != wire.RespJSONRPCResponse || final.resp.RespCode != 200 || !isNullBody(final.resp.RespJSON) {
		t.Fatalf("final %s", final.raw)
	}
	sb.mu.Lock()
	h := sb.headers[0]
	sb.mu.Unlock()
	if h.Get("Mcp-Session-Id") != "sess-1" || h.Get("Last-Event-Id") != "ev-0" {
		t.Errorf("the binding got headers %v", h)
	}

	posts := relay.postsFor("s1")
	checkBodies(t, posts)
	var kinds []string
	heartbeats := 0
	for _, p := range posts[:len(posts)-1] {
		r := p.resp
		if r.RespType != wire.RespJSONRPCNotify || r.RespCode != 200 || r.Channel != "main" || p.header.Get(wire.HeaderShardToken) != "shard-s1" {
			t.Fatalf("stream message %s (token %q)", p.raw, p.header.Get(wire.HeaderShardToken))
		}
		id := ""
		if v := r.RespHeaders[wire.HeaderLastEventID]; len(v) == 1 {
			id = v[0]
		}
		switch {
		case isNullBody(r.RespJSON) && len(r.RespHeaders) == 0:
			heartbeats++
			continue
		case isNullBody(r.RespJSON) && id == "":
			kinds = append(kinds, "open")
			if r.RespHeaders["Content-Type"][0] != "text/event-stream" || r.RespHeaders["Mcp-Session-Id"][0] != "sess-1" || r.RespHeaders["X-Internal"] != nil {
				t.Errorf("opening headers %v", r.RespHeaders)
			}
		case isNullBody(r.RespJSON):
			kinds = append(kinds, id+":")
		default:
			kinds = append(kinds, id+":"+string(r.RespJSON))
		}
	}
	want := []string{"open", "e1:" + sampling, "e2:", "e2:" + changed}
	if strings.Join(kinds, "\n") != strings.Join(want, "\n") {
		t.Fatalf("stream messages:\n%s\nwant\n%s", strings.Join(kinds, "\n"), strings.Join(want, "\n"))
	}
	if heartbeats == 0 {
		t.Error("no heartbeat while the stream was quiet for four heartbeat intervals")
	}
	if heartbeats > 8 {
		t.Errorf("%d heartbeats in 250ms at 60ms", heartbeats)
	}
	enginetest.WaitFor(t, "the stream slot", func() bool { return gaugeValue(t, a, "sluice_agent_streams_open") == 0 })
	if got := counterValue(t, a, "sluice_agent_commands_total", string(outcomeOK)); got != 1 {
		t.Errorf("ok outcomes %v", got)
	}
}

// TestGetStreamRelayLetGo: a 404 from the relay (the MCP client left, or
// the relay restarted) to a stream message or a heartbeat closes the
// upstream stream, and nothing more is posted. A message the relay would
// not take for another reason ends the stream too, with a final response,
// so the client resumes it.
func TestGetStreamRelayLetGo(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events bool // the server keeps sending
		status int  // the relay's answer after the opening
		final  bool
	}{
		{"404 to a message", true, 404, false},
		{"404 to a heartbeat", false, 404, false},
		{"message refused", true, 400, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := newFakeRelay(t)
			relay.streams = true
			var refused atomic.Bool
			relay.postHook = func(r *wire.Response, attempt int, w http.ResponseWriter) bool {
				if r.RequestID == "s1" && attempt > 1 && !r.Final() {
					refused.Store(true)
					w.WriteHeader(tc.status)
					return true
				}
				return false
			}
			cancelled := make(chan time.Time, 1)
			sb := &streamBinding{stream: func(ctx context.Context, _ http.Header, emit func(*binding.Reply) error) error {
				defer func() { cancelled <- time.Now() }()
				if err := emit(opened()); err != nil {
					return err
				}
				for i := 0; ; i++ {
					if tc.events {
						if err := emit(&binding.Reply{Status: 200, Body: json.RawMessage(`{"jsonrpc":"2.0","method":"notifications/message","params":{}}`)}); err != nil {
							return err
						}
					}
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(20 * time.Millisecond):
					}
				}
			}}
			a, _, _ := startAgent(t, relay, sb, fastStreams)
			relay.add(streamCmd("s1"))
			select {
			case <-cancelled:
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream stream stayed open")
			}
			if !refused.Load() {
				t.Fatal("the relay never refused a message")
			}
			if tc.final {
				final := relay.finalFor("s1")
				if final.resp.RespCode != 200 || !isNullBody(final.resp.RespJSON) {
					t.Fatalf("final %s", final.raw)
				}
				enginetest.WaitFor(t, "post_failed", func() bool { return counterValue(t, a, "sluice_agent_commands_total", string(outcomePostFailed)) == 1 })
				return
			}
			time.Sleep(200 * time.Millisecond)
			for _, p := range relay.postsFor("s1") {
				if p.resp.Final() {
					t.Fatalf("final posted for a stream the relay let go: %s", p.raw)
				}
			}
		})
	}
}

// TestGetStreamsDoNotStarveCalls: open streams hold neither a buffer slot
// nor a worker; one beyond mcp.max-streams is answered 429 at once.
func TestGetStreamsDoNotStarveCalls(t *testing.T) {
	relay := newFakeRelay(t)
	relay.streams = true
	sb := &streamBinding{stream: holdOpen}
	a, _, _ := startAgent(t, relay, sb, func(c *Config, _ *Options) {
		c.MaxStreams, c.MaxConcurrent, c.MaxInflight = 2, 1, 1
	})
	relay.add(streamCmd("s1"), streamCmd("s2"))
	enginetest.WaitFor(t, "two open streams", func() bool { return sb.open.Load() == 2 })
	relay.add(streamCmd("s3"), call("c1", 1, "tools/list"), call("c2", 2, "tools/list"))
	if f := relay.finalFor("s3"); f.resp.RespCode != 429 || !isNullBody(f.resp.RespJSON) {
		t.Fatalf("stream over the limit: %s", f.raw)
	}
	for _, id := range []string{"c1", "c2"} {
		if f := relay.finalFor(id); f.resp.RespCode != 200 {
			t.Fatalf("call %s beside two open streams: %s", id, f.raw)
		}
	}
	if got := counterValue(t, a, "sluice_agent_streams_refused_total", ""); got != 1 {
		t.Errorf("refused streams %v", got)
	}
	if got := gaugeValue(t, a, "sluice_agent_streams_open"); got != 2 {
		t.Errorf("open streams gauge %v", got)
	}
}

// TestGetStreamShutdown: stopping the agent ends open streams at once, each
// with a final response, so the clients reconnect elsewhere.
func TestGetStreamShutdown(t *testing.T) {
	relay := newFakeRelay(t)
	relay.streams = true
	sb := &streamBinding{stream: holdOpen}
	_, cancel, done := startAgent(t, relay, sb, func(c *Config, _ *Options) { c.ShutdownGrace = 20 * time.Second })
	relay.add(streamCmd("s1"))
	enginetest.WaitFor(t, "the stream", func() bool { return len(relay.postsFor("s1")) == 1 })
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %s: it waited for the stream", d)
	}
	if f := relay.finalFor("s1"); f.resp.RespCode != 200 || !isNullBody(f.resp.RespJSON) {
		t.Fatalf("final %s", f.raw)
	}
	if sb.open.Load() != 0 {
		t.Error("the upstream stream is still open")
	}
}

// TestGetStreamNotOpened: what the agent posts when there is no stream: the
// server's answer (405 from a server without one, 404 with its JSON-RPC
// error), a tunnel failure when it cannot be reached, 405 for a channel
// whose binding has no GET stream, and nothing when the opening deadline
// passed.
func TestGetStreamNotOpened(t *testing.T) {
	relay := newFakeRelay(t)
	relay.streams = true
	errBody := `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"session not found"}}`
	sb := &streamBinding{stream: func(ctx context.Context, h http.Header, emit func(*binding.Reply) error) error {
		switch h.Get("X-Case") {
		case "405":
			return emit(&binding.Reply{Status: 405, Header: http.Header{"Allow": {"POST"}}, Final: true})
		case "404":
			return emit(&binding.Reply{Status: 404, Body: json.RawMessage(errBody), Header: http.Header{"Content-Type": {"application/json"}}, Final: true})
		case "refused":
			return &binding.Error{Source: wire.SourceConnect, Kind: "connection_refused", Err: errBoom}
		}
		<-ctx.Done() // never opens
		return ctx.Err()
	}}
	a, _, _ := startAgent(t, relay, sb, func(_ *Config, o *Options) { o.Bindings["plain"] = &fakeBinding{} })
	with := func(v string) func(map[string]any) {
		return func(c map[string]any) {
			c["headers"].(map[string][]string)["X-Case"] = []string{v}
		}
	}
	relay.add(streamCmd("n405", with("405")), streamCmd("n404", with("404")), streamCmd("down", with("refused")),
		streamCmd("plain", func(c map[string]any) { c["channel"] = "plain" }),
		streamCmd("late", withTimeout("100ms")))
	for id, want := range map[string]struct {
		code int
		body string
	}{"n405": {405, ""}, "n404": {404, errBody}, "plain": {405, ""}} {
		f := relay.finalFor(id)
		if f.resp.RespCode != want.code || (string(f.resp.RespJSON) != want.body && !(want.body == "" && isNullBody(f.resp.RespJSON))) || f.resp.RespType != wire.RespJSONRPCResponse {
			t.Errorf("%s: final %s", id, f.raw)
		}
	}
	f := relay.finalFor("down")
	var env struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(f.resp.RespJSON, &env); err != nil || f.resp.RespCode != 502 || string(env.ID) != "null" ||
		strings.Contains(string(f.raw), "secret.internal") {
		t.Fatalf("unreachable server: %s", f.raw)
	}
	if tf := checkFailure(t, f); tf.Source != wire.SourceConnect {
		t.Errorf("failure source %q", tf.Source)
	}
	enginetest.WaitFor(t, "the expired stream", func() bool { return counterValue(t, a, "sluice_agent_commands_total", string(outcomeExpired)) == 1 })
	if n := len(relay.postsFor("late")); n != 0 {
		t.Fatalf("%d posts for a stream that did not open before its deadline", n)
	}
	var all []posted
	for _, id := range []string{"n405", "n404", "down", "plain"} {
		all = append(all, relay.postsFor(id)...)
	}
	checkBodies(t, all)
}

// TestGetStreamOutlivesItsDeadline: response_timeout bounds the opening
// only; an open stream runs on past it.
func TestGetStreamOutlivesItsDeadline(t *testing.T) {
	relay := newFakeRelay(t)
	relay.streams = true
	sb := &streamBinding{stream: func(ctx context.Context, _ http.Header, emit func(*binding.Reply) error) error {
		if err := emit(opened()); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond)
		if err := emit(&binding.Reply{Status: 200, Body: json.RawMessage(`{"jsonrpc":"2.0","method":"late"}`), EventID: "9"}); err != nil {
			return err
		}
		return emit(&binding.Reply{Status: 200, Final: true})
	}}
	startAgent(t, relay, sb, nil)
	relay.add(streamCmd("s1", withTimeout("100ms")))
	relay.finalFor("s1")
	posts := relay.postsFor("s1")
	if len(posts) != 3 || string(posts[1].resp.RespJSON) != `{"jsonrpc":"2.0","method":"late"}` {
		var got []string
		for _, p := range posts {
			got = append(got, string(p.raw))
		}
		t.Fatalf("posts:\n%s", strings.Join(got, "\n"))
	}
}

// TestGetStreamPipeline: the agent's chain sees each server message as a
// response-hook notification with the message's own method; a message it
// drops is not posted, but its event id is.
func TestGetStreamPipeline(t *testing.T) {
	relay := newFakeRelay(t)
	relay.streams = true
	var mu sync.Mutex
	var seen []engine.Message
	stage := &funcStage{fn: func(m *engine.Message) engine.Result {
		mu.Lock()
		seen = append(seen, *m)
		mu.Unlock()
		if m.Method == "roots/list" {
			return engine.Result{Action: engine.Drop}
		}
		return engine.Result{}
	}}
	sb := &streamBinding{stream: func(ctx context.Context, _ http.Header, emit func(*binding.Reply) error) error {
		for _, r := range []*binding.Reply{
			opened(),
			{Status: 200, Body: json.RawMessage(`{"jsonrpc":"2.0","id":7,"method":"roots/list"}`), EventID: "e1"},
			{Status: 200, Body: json.RawMessage(`{"jsonrpc":"2.0","id":8,"method":"sampling/createMessage"}`), EventID: "e2"},
			{Status: 200, Final: true},
		} {
			if err := emit(r); err != nil {
				return err
			}
		}
		return nil
	}}
	p := engine.NewPipeline(engine.NewChain([]engine.ChainStage{{Stage: stage}}, engine.ChainOptions{}))
	startAgent(t, relay, sb, func(_ *Config, o *Options) { o.Pipeline = p })
	relay.add(streamCmd("s1"))
	relay.finalFor("s1")
	posts := relay.postsFor("s1")
	if len(posts) != 4 || !isNullBody(posts[1].resp.RespJSON) || posts[1].resp.RespHeaders[wire.HeaderLastEventID][0] != "e1" ||
		string(posts[2].resp.RespJSON) != `{"jsonrpc":"2.0","id":8,"method":"sampling/createMessage"}` {
		t.Fatalf("posts: %d, %s / %s", len(posts), posts[1].raw, posts[2].raw)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("the chain saw %d messages, want 2", len(seen))
	}
	for i, method := range []string{"roots/list", "sampling/createMessage"} {
		m := seen[i]
		if m.Hook != engine.HookResponse || !m.Notification || m.Method != method || m.SessionID != "sess-1" || m.Side != engine.SideAgent {
			t.Errorf("message %d: %+v", i, m)
		}
	}
}

// funcStage is a Stage calling fn on every message.
type funcStage struct {
	fn func(*engine.Message) engine.Result
}

func (s *funcStage) Name() string                                { return "func" }
func (s *funcStage) Wants(engine.Hook, string) bool              { return true }
func (s *funcStage) Open(context.Context) (engine.Filter, error) { return funcFilter{s}, nil }
func (s *funcStage) Close() error                                { return nil }

type funcFilter struct{ s *funcStage }

func (f funcFilter) Handle(_ context.Context, m *engine.Message) (engine.Result, error) {
	return f.s.fn(m), nil
}
func (funcFilter) Close() {}

// gaugeValue reads an unlabelled gauge of the agent's registry.
func gaugeValue(t *testing.T, a *Agent, name string) float64 {
	t.Helper()
	mfs, err := a.gatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// isNullBody reports whether a decoded resp_json is null or absent.
func isNullBody(b json.RawMessage) bool { return len(b) == 0 || string(b) == "null" }

// openStage is a Stage whose circuit breaker is open.
type openStage struct{ funcStage }

func (s *openStage) Name() string      { return "guard" }
func (s *openStage) CircuitOpen() bool { return true }

// TestReadyzListsOpenCircuits: /readyz lists each plugin stage whose
// circuit is open on a line of its own, after the readiness line, and an
// open circuit does not by itself make the agent unready.
func TestReadyzListsOpenCircuits(t *testing.T) {
	relay := newFakeRelay(t)
	p := engine.NewPipeline(engine.NewChain([]engine.ChainStage{{Stage: &funcStage{}}, {Stage: &openStage{}}}, engine.ChainOptions{}))
	a, _, _ := startAgent(t, relay, &probeBinding{}, func(_ *Config, o *Options) { o.Pipeline = p })
	enginetest.WaitFor(t, "ready", func() bool { ok, _ := a.Ready(); return ok })
	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, "/readyz", nil)
	a.HealthHandler().ServeHTTP(rec, req)
	if rec.code != 200 || rec.body.String() != "ready\nplugin guard: circuit open\n" {
		t.Fatalf("/readyz = %d %q", rec.code, rec.body.String())
	}
	if got := a.OpenCircuits(); len(got) != 1 || got[0] != "guard" {
		t.Fatalf("OpenCircuits = %v", got)
	}
}
