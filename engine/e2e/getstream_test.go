package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sluicemcp/sluice/engine/agent"
	"github.com/sluicemcp/sluice/engine/enginetest"
)

// samplingServer is an in-process mcp-go Streamable HTTP server whose tool
// "ask" asks the client to sample (sampling/createMessage): mcp-go sends
// such requests on the standalone GET stream only. It counts the GET
// streams open on it.
type samplingServer struct {
	url     string
	mcp     *server.MCPServer
	openGET atomic.Int64 // GET requests being served right now
	gets    atomic.Int64 // GET requests served in all
}

// startSamplingServer starts the server; opts are added to the Streamable
// HTTP server's options (an event store, for resumption).
func startSamplingServer(t testing.TB, opts ...server.StreamableHTTPOption) *samplingServer {
	t.Helper()
	ss := &samplingServer{}
	s := server.NewMCPServer("sluice-e2e-sampling", "1.0.0", server.WithToolCapabilities(false))
	s.EnableSampling()
	s.AddTool(mcp.NewTool("ask", mcp.WithDescription("ask the client's model"), mcp.WithString("question", mcp.Required())),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			res, err := server.ServerFromContext(ctx).RequestSampling(ctx, mcp.CreateMessageRequest{
				CreateMessageParams: mcp.CreateMessageParams{
					Messages:  []mcp.SamplingMessage{{Role: mcp.RoleUser, Content: mcp.NewTextContent(req.GetString("question", ""))}},
					MaxTokens: 16,
				},
			})
			if err != nil {
				return mcp.NewToolResultError("sampling failed: " + err.Error()), nil
			}
			text, _ := res.Content.(mcp.TextContent)
			return mcp.NewToolResultText(res.Model + ": " + text.Text), nil
		})
	ss.mcp = s
	h := server.NewStreamableHTTPServer(s, append([]server.StreamableHTTPOption{server.WithStateful(true)}, opts...)...)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			ss.gets.Add(1)
			ss.openGET.Add(1)
			defer ss.openGET.Add(-1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ss.url = srv.URL + "/mcp"
	return ss
}

// fixedSampler answers every sampling request with the same text.
type fixedSampler struct{ calls atomic.Int64 }

func (f *fixedSampler) CreateMessage(_ context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	f.calls.Add(1)
	q := ""
	if len(req.Messages) > 0 {
		if tc, ok := req.Messages[0].Content.(mcp.TextContent); ok {
			q = tc.Text
		} else if m, ok := req.Messages[0].Content.(map[string]any); ok {
			q, _ = m["text"].(string)
		}
	}
	return &mcp.CreateMessageResult{
		SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent("sampled " + q)},
		Model:           "e2e-model",
		StopReason:      "endTurn",
	}, nil
}

// callWithSampling runs an mcp-go client (protocol 2025-11-25, listening on
// the GET stream, answering sampling) against url and calls "ask". It
// returns the tool's text, or the error.
func callWithSampling(t *testing.T, url string, headers map[string]string, timeout time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	trans, err := transport.NewStreamableHTTP(url,
		transport.WithContinuousListening(),
		transport.WithHTTPLogger(testLogger(t, "mcp-go-client")),
		transport.WithHTTPBasicClient(&http.Client{Transport: headerTransport{headers: headers, base: http.DefaultTransport}}))
	if err != nil {
		return "", err
	}
	sampler := &fixedSampler{}
	c := client.NewClient(trans, client.WithProtocolVersion("2025-11-25"), client.WithSamplingHandler(sampler))
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		return "", err
	}
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{
		ClientInfo: mcp.Implementation{Name: "sluice-e2e-sampling", Version: "1.0.0"},
	}}); err != nil {
		return "", err
	}
	var call mcp.CallToolRequest
	call.Params.Name = "ask"
	call.Params.Arguments = map[string]any{"question": "6*7?"}
	res, err := c.CallTool(ctx, call)
	if err != nil {
		return "", err
	}
	if res.IsError {
		return "", errors.New(toolText(res))
	}
	if sampler.calls.Load() != 1 {
		return "", errors.New("the sampling handler was not called exactly once")
	}
	return toolText(res), nil
}

// TestSamplingThroughGETStream: an mcp-go server asks for sampling from a
// tool handler, on its standalone GET stream. Directly that works; through
// relay+agent it works only with the get-stream extension (before it, the
// relay answered the GET with 405 and the tool call hung until it timed out).
func TestSamplingThroughGETStream(t *testing.T) {
	ss := startSamplingServer(t)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: ss.url}}})
	te := h.tunnel(0)

	direct, err := callWithSampling(t, ss.url, nil, 20*time.Second)
	if err != nil || direct != "e2e-model: sampled 6*7?" {
		t.Fatalf("directly: %q, %v", direct, err)
	}
	got, err := callWithSampling(t, te.mcpURL, te.clientHeaders(), 20*time.Second)
	if err != nil {
		t.Fatalf("through the tunnel: %v", err)
	}
	if got != direct {
		t.Fatalf("through the tunnel %q, directly %q", got, direct)
	}
}

// sseEvent is one event a raw client read from a GET stream.
type sseEvent struct {
	id   string
	data string
}

// rawStream is a client's GET stream opened with plain HTTP.
type rawStream struct {
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseEvent // closed when the stream ends
}

// initSession initializes a 2025-11-25 session at url with raw POSTs and
// returns its id.
func initSession(t *testing.T, url string, headers map[string]string) string {
	t.Helper()
	hdr := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	for k, v := range headers {
		hdr[k] = v
	}
	st, h, body := rawPost(t, http.MethodPost, url, hdr, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"sluice-e2e-raw","version":"1.0.0"}}}`))
	sid := h.Get("Mcp-Session-Id")
	if st != http.StatusOK || sid == "" {
		t.Fatalf("initialize at %s: %d session %q: %s", url, st, sid, body)
	}
	hdr["Mcp-Session-Id"] = sid
	hdr["Mcp-Protocol-Version"] = "2025-11-25"
	if st, _, body := rawPost(t, http.MethodPost, url, hdr, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)); st != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %d %s", st, body)
	}
	return sid
}

// openGET opens a GET stream at url in session sid (resuming after
// lastEventID when set). A non-200 answer is returned with events nil.
func openGET(t *testing.T, url string, headers map[string]string, sid, version, lastEventID string) *rawStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept", "text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	req.Header.Set("Mcp-Protocol-Version", version)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	rs := &rawStream{resp: resp, cancel: cancel}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return rs
	}
	rs.events = make(chan sseEvent, 64)
	go func() {
		defer close(rs.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		has := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if has {
					rs.events <- ev
				}
				ev, has = sseEvent{id: ev.id}, false // the id carries over, as in an SSE reader
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "id:"):
				ev.id, has = strings.TrimSpace(strings.TrimPrefix(line, "id:")), true
			case strings.HasPrefix(line, "data:"):
				ev.data, has = strings.TrimSpace(strings.TrimPrefix(line, "data:")), true
			}
		}
	}()
	return rs
}

// next returns the next event with data, failing after d.
func (rs *rawStream) next(t *testing.T, d time.Duration) sseEvent {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-rs.events:
			if !ok {
				t.Fatal("the stream ended before the next event")
			}
			if ev.data != "" {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no event within %s", d)
		}
	}
}

// ended reports whether the stream ends within d.
func (rs *rawStream) ended(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-rs.events:
			if !ok {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

// logMessage sends a notifications/message with text to session sid, on
// its GET stream.
func (ss *samplingServer) logMessage(t *testing.T, sid, text string) {
	t.Helper()
	if err := ss.mcp.SendNotificationToSpecificClient(sid, "notifications/message", map[string]any{"level": "info", "data": text}); err != nil {
		t.Fatalf("send notification: %v", err)
	}
}

// messageText returns params.data of a notifications/message.
func messageText(t *testing.T, data string) string {
	t.Helper()
	var m struct {
		Method string `json:"method"`
		Params struct {
			Data string `json:"data"`
		} `json:"params"`
	}
	if err := json.Unmarshal([]byte(data), &m); err != nil || m.Method != "notifications/message" {
		t.Fatalf("not a notifications/message: %s (%v)", data, err)
	}
	return m.Params.Data
}

// fastHeartbeat makes the agent notice a departed client within 200ms.
func fastHeartbeat(c *agent.Config) { c.StreamHeartbeat = 200 * time.Millisecond }

// TestGETStreamResumeThroughTunnel: the MCP server's event ids reach the
// client through the tunnel, a client that left is noticed by the agent,
// which closes its upstream GET, and a GET with Last-Event-ID reaches the
// server, which replays what the client missed.
func TestGETStreamResumeThroughTunnel(t *testing.T) {
	ss := startSamplingServer(t, server.WithEventStore(server.NewInMemoryEventStore()))
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: ss.url, agentConfig: fastHeartbeat}}})
	te := h.tunnel(0)
	sid := initSession(t, te.mcpURL, te.clientHeaders())

	first := openGET(t, te.mcpURL, te.clientHeaders(), sid, "2025-11-25", "")
	if first.resp.StatusCode != http.StatusOK || !strings.HasPrefix(first.resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET through the tunnel: %d %s", first.resp.StatusCode, first.resp.Header.Get("Content-Type"))
	}
	if got := first.resp.Header.Get("Mcp-Session-Id"); got != "" && got != sid {
		t.Errorf("stream answered for session %q, want %q", got, sid)
	}
	enginetest.WaitFor(t, "the upstream GET", func() bool { return ss.openGET.Load() == 1 })
	ss.logMessage(t, sid, "one")
	one := first.next(t, 10*time.Second)
	if messageText(t, one.data) != "one" || one.id == "" {
		t.Fatalf("first event %+v: want message one with the server's event id", one)
	}

	// The client leaves: the agent notices and closes its upstream GET.
	first.cancel()
	enginetest.WaitFor(t, "the agent to close its upstream GET", func() bool { return ss.openGET.Load() == 0 })

	// What the server sends meanwhile is recorded, and replayed to a client
	// that resumes through the tunnel.
	ss.logMessage(t, sid, "two")
	second := openGET(t, te.mcpURL, te.clientHeaders(), sid, "2025-11-25", one.id)
	if second.resp.StatusCode != http.StatusOK {
		t.Fatalf("resuming GET: %d", second.resp.StatusCode)
	}
	two := second.next(t, 10*time.Second)
	if messageText(t, two.data) != "two" || two.id == "" || two.id == one.id {
		t.Fatalf("resumed stream's first event %+v: want message two, replayed with its own id", two)
	}
	ss.logMessage(t, sid, "three")
	if three := second.next(t, 10*time.Second); messageText(t, three.data) != "three" {
		t.Fatalf("live event after the replay: %+v", three)
	}
}

// TestGETStreamEndsWithAgentAndRelay: a client's GET stream ends when the
// agent stops or the relay restarts, and the client can open it again once
// the tunnel is back; the agent never keeps an upstream GET nobody reads.
func TestGETStreamEndsWithAgentAndRelay(t *testing.T) {
	ss := startSamplingServer(t)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: ss.url, agentConfig: fastHeartbeat}}})
	te := h.tunnel(0)
	sid := initSession(t, te.mcpURL, te.clientHeaders())
	open := func() *rawStream {
		t.Helper()
		rs := openGET(t, te.mcpURL, te.clientHeaders(), sid, "2025-11-25", "")
		if rs.resp.StatusCode != http.StatusOK {
			t.Fatalf("GET through the tunnel: %d", rs.resp.StatusCode)
		}
		enginetest.WaitFor(t, "one upstream GET", func() bool { return ss.openGET.Load() == 1 })
		return rs
	}

	rs := open()
	h.stopAgent(te)
	if !rs.ended(10 * time.Second) {
		t.Fatal("the client's stream outlived the agent")
	}
	// The upstream server sees its GET end a moment after the client does.
	enginetest.WaitFor(t, "no upstream GET open after the agent stopped", func() bool { return ss.openGET.Load() == 0 })
	h.startAgent(te)
	h.waitServing(te)

	rs = open()
	h.stopRelay()
	if !rs.ended(10 * time.Second) {
		t.Fatal("the client's stream outlived the relay")
	}
	h.startRelay()
	h.waitServing(te)
	// The restarted relay does not know the old stream: the agent closes it
	// at its next heartbeat, and the client's new stream is the only one.
	rs = open()
	time.Sleep(500 * time.Millisecond) // a few heartbeats
	if n := ss.openGET.Load(); n != 1 {
		t.Fatalf("%d upstream GETs open, want only the new stream's", n)
	}
	ss.logMessage(t, sid, "after restart")
	if ev := rs.next(t, 10*time.Second); messageText(t, ev.data) != "after restart" {
		t.Fatalf("event %+v", ev)
	}
}

// TestGETStreamOff: without the agent's offer (control-plane.get-stream
// off) the relay answers GET 405 as before, and the MCP server never sees
// it; a stateless (2026-07-28) request's 405 from the server passes through
// as the server gave it.
func TestGETStreamOff(t *testing.T) {
	ss := startSamplingServer(t)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{
		{serverURL: ss.url, agentConfig: func(c *agent.Config) { c.NoGetStream = true }},
		{serverURL: ss.url},
	}})
	off, on := h.tunnel(0), h.tunnel(1)

	sid := initSession(t, off.mcpURL, off.clientHeaders())
	rs := openGET(t, off.mcpURL, off.clientHeaders(), sid, "2025-11-25", "")
	if rs.resp.StatusCode != http.StatusMethodNotAllowed || rs.resp.Header.Get("Allow") != "POST, DELETE" {
		t.Fatalf("GET with the extension off: %d Allow %q, want 405 with Allow: POST, DELETE", rs.resp.StatusCode, rs.resp.Header.Get("Allow"))
	}
	if n := ss.gets.Load(); n != 0 {
		t.Fatalf("%d GETs reached the server", n)
	}

	direct := openGET(t, ss.url, nil, "", "2026-07-28", "")
	tunnel := openGET(t, on.mcpURL, on.clientHeaders(), "", "2026-07-28", "")
	if direct.resp.StatusCode != http.StatusMethodNotAllowed || tunnel.resp.StatusCode != direct.resp.StatusCode {
		t.Fatalf("stateless GET: %d through the tunnel, %d directly, want 405 both", tunnel.resp.StatusCode, direct.resp.StatusCode)
	}
	if ss.gets.Load() != 2 {
		t.Fatalf("the stateless GET did not reach the server through the tunnel")
	}
}

// TestTypeScriptSamplingThroughGETStream: the official TypeScript SDK
// client opens its GET stream after initializing, and answers the sampling
// request an mcp-go server sends there, directly and through relay+agent.
func TestTypeScriptSamplingThroughGETStream(t *testing.T) {
	requireFiles(t, filepath.Join(tsSDKDir(), "package.json"))
	node := node20(t)
	ss := startSamplingServer(t)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: ss.url}}})
	te := h.tunnel(0)
	script, _ := filepath.Abs(filepath.Join("testdata", "ts-sampling.mjs"))
	run := func(url, key string) map[string]any {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		stdout, err := runNode(t, ctx, node, []string{"MCP_URL=" + url, "MCP_KEY=" + key, "MCP_SDK_DIR=" + tsSDKDir()}, script)
		var out map[string]any
		if jerr := json.Unmarshal(stdout, &out); jerr != nil {
			t.Fatalf("ts-sampling output (exit %v): %v\n%s", err, jerr, stdout)
		}
		return out
	}
	direct := run(ss.url, "")
	tunnel := run(te.mcpURL, te.clientKey)
	for name, out := range map[string]map[string]any{"directly": direct, "through the tunnel": tunnel} {
		if out["ok"] != true || out["isError"] != false || out["result"] != "ts-model: sampled 6*7?" || out["samplingRequests"] != 1.0 {
			t.Errorf("%s: %v", name, out)
		}
	}
}
