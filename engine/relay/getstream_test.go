package relay

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/wire"
)

// offer is the header of a poll that offers the get-stream extension.
var offer = map[string]string{wire.HeaderExtensions: wire.ExtGetStream}

// clientGET opens a client's GET stream asynchronously; cancel ends it.
func (h *harness) clientGET(tunnel string, hdr map[string]string) (<-chan *http.Response, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	return h.client(ctx, "GET", tunnel, "", map[string]string{"Accept": "text/event-stream",
		"Mcp-Session-Id": "sess-1", "Mcp-Protocol-Version": "2025-11-25"}, hdr), cancel
}

// connectOffering makes the tunnel's agent count as connected and offering
// GET streams.
func (h *harness) connectOffering(tunnel, key string) {
	h.t.Helper()
	if st, _ := h.poll(tunnel, key, 1, time.Millisecond, offer); st != 204 {
		h.t.Fatalf("connect poll: %d", st)
	}
}

// nextStream polls with the offer until a command arrives.
func (h *harness) nextStream(tunnel, key string) wire.Command {
	h.t.Helper()
	return h.nextWith(tunnel, key, offer)
}

// notify is a stream message as an agent posts it.
func notify(cmd wire.Command, body string, header map[string][]string) wire.Response {
	r := wire.Response{RequestID: cmd.RequestID, Channel: "main", RespCode: 200, RespType: wire.RespJSONRPCNotify, RespHeaders: header}
	if body != "" {
		r.RespJSON = json.RawMessage(body)
	}
	return r
}

// streamEvent is one SSE event as a client reads it.
type streamEvent struct{ id, data string }

// readEvents reads a client's stream until it ends, sending each event.
func readEvents(body io.Reader) <-chan streamEvent {
	ch := make(chan streamEvent, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(body)
		var ev streamEvent
		has := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if has {
					ch <- ev
				}
				ev, has = streamEvent{}, false
			case strings.HasPrefix(line, "id: "):
				ev.id, has = line[len("id: "):], true
			case strings.HasPrefix(line, "data:"):
				ev.data, has = strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "), true
			}
		}
	}()
	return ch
}

func nextEvent(t *testing.T, ch <-chan streamEvent) streamEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return streamEvent{}
}

// TestGETWithoutOffer: while no connected agent offers GET streams (a
// non-Sluice agent, or a Sluice agent with the extension off), GET answers
// 405 with Allow: POST, DELETE as it always did, and no command is queued.
// The front door still runs first, and with no agent at all the answer is
// 503, as for a POST.
func TestGETWithoutOffer(t *testing.T) {
	h := newHarness(t, nil, Options{})
	auth := map[string]string{"Authorization": "Bearer " + clientKeyA, "Accept": "text/event-stream"}

	resp := h.do("GET", "/v1/mcp/"+tunA, nil, auth)
	if b := readAll(t, resp); resp.StatusCode != 503 || !strings.Contains(b, wire.CodeTunnelClientNotConnected) || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("GET with no agent: %d %s", resp.StatusCode, b)
	}

	h.connect(tunA, runtimeA) // a poll without the offer
	for _, method := range []string{"GET", "HEAD"} {
		resp := h.do(method, "/v1/mcp/"+tunA, nil, auth)
		readAll(t, resp)
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST, DELETE" {
			t.Fatalf("%s without the offer: %d Allow %q", method, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	if st, cmds := h.poll(tunA, runtimeA, 5, 50*time.Millisecond, offer); st != 204 {
		t.Fatalf("a command was queued: %d %+v", st, cmds)
	}

	resp = h.do("GET", "/v1/mcp/"+tunA, nil, map[string]string{"Accept": "text/event-stream"})
	readAll(t, resp)
	if resp.StatusCode != 401 {
		t.Fatalf("GET without a client key: %d, want 401", resp.StatusCode)
	}
}

// TestHEADIsNotAStream: HEAD on the MCP endpoint answers 405 with Allow:
// POST, DELETE whoever asks (the GET pattern would otherwise route it
// through the front door to the GET stream).
func TestHEADIsNotAStream(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connectOffering(tunA, runtimeA)
	for name, hdr := range map[string]map[string]string{
		"with a client key": {"Authorization": "Bearer " + clientKeyA},
		"without":           nil,
	} {
		resp := h.do("HEAD", "/v1/mcp/"+tunA, nil, hdr)
		readAll(t, resp)
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST, DELETE" {
			t.Fatalf("HEAD %s: %d Allow %q", name, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	if st, cmds := h.poll(tunA, runtimeA, 5, 50*time.Millisecond, offer); st != 204 {
		t.Fatalf("a command was queued: %d %+v", st, cmds)
	}
}

// TestGETStreamGoesToOfferingPollsOnly: a get_stream command is handed to a
// poll that offered the extension, never to one that did not (OpenAI's
// agent would log and skip it, and the client would wait for nothing).
func TestGETStreamGoesToOfferingPollsOnly(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connectOffering(tunA, runtimeA)
	got, _ := h.clientGET(tunA, map[string]string{"Last-Event-ID": "ev-7"})
	enginetest.WaitFor(t, "the stream command to queue", func() bool { _, s := h.r.tunnel(tunA).queues(); return len(s) == 1 })

	// A plain poll waits out its timeout while the stream command is queued.
	if st, cmds := h.poll(tunA, runtimeA, 5, 300*time.Millisecond, nil); st != 204 {
		t.Fatalf("a poll without the offer got %d %+v", st, cmds)
	}
	cmd := h.nextStream(tunA, runtimeA)
	if cmd.CommandType != wire.CommandGetStream || cmd.JSONRPC != nil || cmd.ResponseTimeout == nil || cmd.Channel != "main" {
		t.Fatalf("command %+v", cmd)
	}
	for k, want := range map[string]string{"Mcp-Session-Id": "sess-1", "Last-Event-Id": "ev-7", "Mcp-Protocol-Version": "2025-11-25", "Accept": "text/event-stream"} {
		if v := cmd.Headers[k]; len(v) != 1 || v[0] != want {
			t.Errorf("command header %s = %v, want %q", k, v, want)
		}
	}
	if _, ok := cmd.Headers["Authorization"]; ok {
		t.Error("the client key was forwarded")
	}
	h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespCode: 405, RespType: wire.RespJSONRPCResponse})
	resp := wait(t, got)
	readAll(t, resp)
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST, DELETE" {
		t.Fatalf("client got %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestGETStreamRelays: the agent's messages open the client's event stream,
// fill it with the server's messages and their event ids, and its final
// response ends it; heartbeats show nothing; afterwards the stream is gone.
func TestGETStreamRelays(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connectOffering(tunA, runtimeA)
	got, _ := h.clientGET(tunA, nil)
	cmd := h.nextStream(tunA, runtimeA)
	post := func(r wire.Response) {
		t.Helper()
		if st, code := h.respond(tunA, runtimeA, cmd.ShardToken, r); st != 200 {
			t.Fatalf("post: %d %s", st, code)
		}
	}
	post(notify(cmd, "", map[string][]string{"Content-Type": {"text/event-stream"}, "Mcp-Session-Id": {"sess-1"}}))
	resp := wait(t, got)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Mcp-Session-Id") != "sess-1" {
		t.Fatalf("client got %d %v", resp.StatusCode, resp.Header)
	}
	events := readEvents(resp.Body)
	defer resp.Body.Close()
	if n := h.r.tunnel(tunA).openStreams.Load(); n != 1 {
		t.Errorf("open streams gauge %d", n)
	}

	sampling := `{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{"maxTokens":8}}`
	post(notify(cmd, sampling, map[string][]string{wire.HeaderLastEventID: {"ev-1"}}))
	post(notify(cmd, "", nil)) // a heartbeat: nothing to write
	post(notify(cmd, "", map[string][]string{wire.HeaderLastEventID: {"ev-2"}}))
	post(notify(cmd, `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`, nil))
	post(notify(cmd, `{"jsonrpc":"2.0","method":"x"}`, map[string][]string{wire.HeaderLastEventID: {"bad\nid"}}))

	want := []streamEvent{{"ev-1", sampling}, {"ev-2", ""}, {"", `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`}, {"", `{"jsonrpc":"2.0","method":"x"}`}}
	for i, w := range want {
		if ev := nextEvent(t, events); ev != w {
			t.Fatalf("event %d = %+v, want %+v", i, ev, w)
		}
	}
	post(wire.Response{RequestID: cmd.RequestID, RespCode: 200, RespType: wire.RespJSONRPCResponse})
	select {
	case ev, ok := <-events:
		if ok {
			t.Fatalf("event after the final response: %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client's stream did not end with the final response")
	}
	if st, code := h.respond(tunA, runtimeA, cmd.ShardToken, notify(cmd, "", nil)); st != 404 || code != wire.CodePendingRequestNotFound {
		t.Fatalf("heartbeat after the end: %d %s", st, code)
	}
	enginetest.WaitFor(t, "the gauge to drop", func() bool { return h.r.tunnel(tunA).openStreams.Load() == 0 })
}

// TestGETStreamClientGone: when the client leaves, the agent's next message
// (a heartbeat at the latest) gets 404 pending_request_not_found: that is
// how the agent learns to close its upstream GET.
func TestGETStreamClientGone(t *testing.T) {
	for _, opened := range []bool{false, true} {
		t.Run(map[bool]string{false: "before open", true: "open"}[opened], func(t *testing.T) {
			h := newHarness(t, nil, Options{})
			h.connectOffering(tunA, runtimeA)
			got, cancel := h.clientGET(tunA, nil)
			cmd := h.nextStream(tunA, runtimeA)
			if opened {
				h.respond(tunA, runtimeA, cmd.ShardToken, notify(cmd, "", map[string][]string{"Content-Type": {"text/event-stream"}}))
				resp := wait(t, got)
				defer resp.Body.Close()
			}
			cancel()
			enginetest.WaitFor(t, "the relay to forget the stream", func() bool {
				st, _ := h.respond(tunA, runtimeA, cmd.ShardToken, notify(cmd, "", nil))
				return st == 404
			})
		})
	}
}

// TestGETStreamRefused: a final response before the stream opened is the
// client's answer, with the headers the status needs.
func TestGETStreamRefused(t *testing.T) {
	for _, tc := range []struct {
		code   int
		body   string
		header string
		value  string
	}{
		{405, "", "Allow", "POST, DELETE"},
		{429, "", "Retry-After", "5"},
		{503, "", "Retry-After", "5"},
		{404, `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"session not found"}}`, "Content-Type", "application/json"},
		{502, `{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"tunnel: the MCP server could not be reached","data":{"tunnel_failure":{"version":1,"source":"connect","upstream_response_received":false}}}}`, "Content-Type", "application/json"},
	} {
		t.Run(http.StatusText(tc.code), func(t *testing.T) {
			h := newHarness(t, nil, Options{})
			h.connectOffering(tunA, runtimeA)
			got, _ := h.clientGET(tunA, nil)
			cmd := h.nextStream(tunA, runtimeA)
			r := wire.Response{RequestID: cmd.RequestID, RespCode: tc.code, RespType: wire.RespJSONRPCResponse}
			if tc.body != "" {
				r.RespJSON = json.RawMessage(tc.body)
			}
			h.respond(tunA, runtimeA, cmd.ShardToken, r)
			resp := wait(t, got)
			b := readAll(t, resp)
			if resp.StatusCode != tc.code || resp.Header.Get(tc.header) != tc.value || b != tc.body {
				t.Fatalf("client got %d %s=%q body %s", resp.StatusCode, tc.header, resp.Header.Get(tc.header), b)
			}
		})
	}
}

// TestGETStreamTimeouts: the response timeout bounds the opening only (an
// agent that never answers: 504); an open stream the agent goes silent on
// ends after the idle timeout, and the stream is forgotten.
func TestGETStreamTimeouts(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Tunnels[0].ResponseTimeout = 300 * time.Millisecond }, Options{})
	h.r.streamIdle = 400 * time.Millisecond
	h.connectOffering(tunA, runtimeA)

	got, _ := h.clientGET(tunA, nil)
	cmd := h.nextStream(tunA, runtimeA)
	resp := wait(t, got)
	if b := readAll(t, resp); resp.StatusCode != 504 || !strings.Contains(b, `"source":"timeout"`) {
		t.Fatalf("unopened stream: %d %s", resp.StatusCode, b)
	}

	got, _ = h.clientGET(tunA, nil)
	cmd = h.nextStream(tunA, runtimeA)
	h.respond(tunA, runtimeA, cmd.ShardToken, notify(cmd, "", map[string][]string{"Content-Type": {"text/event-stream"}}))
	resp = wait(t, got)
	defer resp.Body.Close()
	// Past the response timeout, heartbeats keep it open.
	for range 4 {
		time.Sleep(150 * time.Millisecond)
		if st, _ := h.respond(tunA, runtimeA, cmd.ShardToken, notify(cmd, "", nil)); st != 200 {
			t.Fatalf("heartbeat on an open stream: %d", st)
		}
	}
	start := time.Now()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the stream of a silent agent lasted %s", d)
	}
	if st, _ := h.respond(tunA, runtimeA, cmd.ShardToken, notify(cmd, "", nil)); st != 404 {
		t.Fatalf("heartbeat after the idle timeout: %d", st)
	}
}

// TestGETStreamChain: the relay's chain sees each server message of the
// stream as a response-hook notification whose method is the message's own
// (there is no request); a message it drops is not written, its event id
// still is.
func TestGETStreamChain(t *testing.T) {
	var mu sync.Mutex
	var seen []engine.Message
	stage := &fnStage{name: "watch", hooks: map[engine.Hook]bool{engine.HookResponse: true}, fn: func(m *engine.Message) engine.Result {
		mu.Lock()
		seen = append(seen, *m)
		mu.Unlock()
		if m.Method == "roots/list" {
			return engine.Result{Action: engine.Drop}
		}
		return engine.Result{Action: engine.Continue}
	}}
	h := newHarness(t, nil, Options{Pipeline: pipelineOf(stage)})
	h.connectOffering(tunA, runtimeA)
	got, _ := h.clientGET(tunA, nil)
	cmd := h.nextStream(tunA, runtimeA)
	h.respond(tunA, runtimeA, cmd.ShardToken, notify(cmd, "", map[string][]string{"Content-Type": {"text/event-stream"}}))
	resp := wait(t, got)
	defer resp.Body.Close()
	events := readEvents(resp.Body)
	h.respond(tunA, runtimeA, cmd.ShardToken, notify(cmd, `{"jsonrpc":"2.0","id":3,"method":"roots/list"}`, map[string][]string{wire.HeaderLastEventID: {"e1"}}))
	h.respond(tunA, runtimeA, cmd.ShardToken, notify(cmd, `{"jsonrpc":"2.0","id":4,"method":"sampling/createMessage"}`, map[string][]string{wire.HeaderLastEventID: {"e2"}}))
	if ev := nextEvent(t, events); ev != (streamEvent{"e1", ""}) {
		t.Fatalf("dropped message: %+v, want its id alone", ev)
	}
	if ev := nextEvent(t, events); ev != (streamEvent{"e2", `{"jsonrpc":"2.0","id":4,"method":"sampling/createMessage"}`}) {
		t.Fatalf("passed message: %+v", ev)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("the chain saw %d messages, want 2 (not the opening, not a heartbeat)", len(seen))
	}
	for i, method := range []string{"roots/list", "sampling/createMessage"} {
		m := seen[i]
		if m.Hook != engine.HookResponse || !m.Notification || m.Method != method || m.SessionID != "sess-1" || m.RequestID != cmd.RequestID || m.Caller != "alice" {
			t.Errorf("message %d: hook %v notification %v method %q session %q caller %q", i, m.Hook, m.Notification, m.Method, m.SessionID, m.Caller)
		}
	}
}

// FuzzWriteStreamEvent: whatever event id and message an agent posts, the
// relay writes exactly one SSE event, and an id only when it is one an SSE
// reader takes whole (an id with a line break could inject events).
func FuzzWriteStreamEvent(f *testing.F) {
	f.Add("ev-1", []byte(`{"jsonrpc":"2.0","method":"x"}`))
	f.Add("a\nb", []byte("{\"a\":\n1}"))
	f.Add("", []byte("x\r\n\r\ndata: y"))
	f.Add("e\r", []byte(nil))
	f.Fuzz(func(t *testing.T, id string, msg []byte) {
		id = eventID(map[string][]string{wire.HeaderLastEventID: {id}})
		if len(msg) == 0 && id == "" {
			return // nothing is written for that
		}
		rec := httptest.NewRecorder()
		if err := writeStreamEvent(rec, http.NewResponseController(rec), id, msg); err != nil {
			t.Fatal(err)
		}
		out := rec.Body.String()
		if !strings.HasSuffix(out, "\n\n") || strings.Count(out, "\n\n") != 1 || strings.Contains(out, "\r") {
			t.Fatalf("not exactly one event: %q", out)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n\n"), "\n")
		if id != "" && lines[0] != "id: "+id {
			t.Fatalf("id line %q, want %q", lines[0], id)
		}
		for _, l := range lines {
			if !strings.HasPrefix(l, "id: ") && !strings.HasPrefix(l, "data:") && !strings.HasPrefix(l, "event: ") {
				t.Fatalf("unexpected line %q in %q", l, out)
			}
		}
	})
}

// TestGETStreamEndsOnDrain: an open GET stream has no end to wait for, so a
// drain ends it at once (the client reconnects, with Last-Event-ID, to a
// relay that stays) instead of holding the drain to its timeout.
func TestGETStreamEndsOnDrain(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connectOffering(tunA, runtimeA)
	got, _ := h.clientGET(tunA, nil)
	cmd := h.nextStream(tunA, runtimeA)
	h.respond(tunA, runtimeA, cmd.ShardToken, notify(cmd, "", map[string][]string{"Content-Type": {"text/event-stream"}}))
	resp := wait(t, got)
	defer resp.Body.Close()
	events := readEvents(resp.Body)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.r.Drain(ctx)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the drain waited %s for an open stream", took)
	}
	select {
	case _, ok := <-events:
		if ok {
			t.Fatal("an event instead of the end")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end on drain")
	}
}
