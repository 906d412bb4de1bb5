package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sluicemcp/sluice/engine/agent"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// modernMeta is the _meta a 2026-07-28 request carries in place of the
// initialize handshake.
const modernMeta = `{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"sluice-e2e","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}`

// mcpHeaders are the headers of a raw MCP POST through tunnel te.
func mcpHeaders(te *tunnelEnv) map[string]string {
	h := map[string]string{
		"Content-Type": "application/json",
		"Accept":       "application/json, text/event-stream",
	}
	for k, v := range te.clientHeaders() {
		h[k] = v
	}
	return h
}

// quickCall checks that the tunnel serves real MCP traffic: an mcp-go client
// (2026-07-28, stateless) lists tools and calls echo.
func quickCall(t *testing.T, te *tunnelEnv) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	trans, err := transport.NewStreamableHTTP(te.mcpURL,
		transport.WithHTTPBasicClient(&http.Client{Transport: headerTransport{headers: te.clientHeaders(), base: http.DefaultTransport}}))
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(trans)
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{ClientInfo: mcp.Implementation{Name: "e2e", Version: "1"}}}); err != nil {
		t.Fatalf("initialize through the tunnel: %v", err)
	}
	var req mcp.CallToolRequest
	req.Params.Name = "echo"
	req.Params.Arguments = map[string]any{"message": "still serving"}
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("call echo through the tunnel: %v", err)
	}
	if got := toolText(res); got != "echo: still serving" {
		t.Fatalf("echo = %q", got)
	}
}

// TestRelayDownAtAgentStart starts the agent while nothing listens on the
// relay's address; the agent retries, and serves once the relay comes up on
// that port.
func TestRelayDownAtAgentStart(t *testing.T) {
	gs := startGoServer(t)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: gs.url}}, noRelay: true})
	te := h.tunnel(0)
	// Let the agent fail a few polls against the closed port.
	time.Sleep(700 * time.Millisecond)
	if st := h.probe(te); st != 0 {
		t.Fatalf("probe with the relay down answered %d, want a connection error", st)
	}
	h.startRelay()
	h.waitServing(te)
	quickCall(t, te)
}

// TestRelayRestart stops the relay while the agent runs and starts a new one
// on the same port: the agent reconnects and calls work again.
func TestRelayRestart(t *testing.T) {
	gs := startGoServer(t)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: gs.url}}})
	te := h.tunnel(0)
	quickCall(t, te)
	h.stopRelay()
	if st := h.probe(te); st != 0 {
		t.Fatalf("probe with the relay stopped answered %d", st)
	}
	h.startRelay()
	h.waitServing(te)
	quickCall(t, te)
}

// TestAgentDiesMidCall cancels the agent while a slow tool runs: the MCP
// client gets a clear error well before its own deadline instead of hanging.
func TestAgentDiesMidCall(t *testing.T) {
	gs := startGoServer(t)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: gs.url, responseTimeout: 5 * time.Second}}})
	te := h.tunnel(0)

	done := make(chan answer, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() { done <- postSlowCall(ctx, te, 42, 60) }()
	waitToolStarted(t, gs.started, done)
	h.stopAgent(te)
	select {
	case a := <-done:
		if ctx.Err() != nil {
			t.Fatalf("client hit its own deadline: the relay left it hanging (%v)", a.err)
		}
		t.Logf("client got %d %s (err %v)", a.status, bytes.TrimSpace(a.body), a.err)
		if a.err == nil && a.status == http.StatusOK && !bytes.Contains(a.body, []byte(`"error"`)) {
			t.Fatalf("client got a success after the agent died: %s", a.body)
		}
		if a.err == nil && !bytes.Contains(a.body, []byte(`"error"`)) {
			t.Errorf("status %d without an error body: %q", a.status, a.body)
		}
	case <-ctx.Done():
		t.Fatal("client still waiting 60s after the call started: the relay left it hanging")
	}
}

// cutTransport fails every request once cut is set: an agent whose host
// vanished (crash, partition) without posting anything.
type cutTransport struct {
	cut  atomic.Bool
	base http.RoundTripper
}

func (c *cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if c.cut.Load() {
		return nil, errors.New("e2e: agent cut off")
	}
	return c.base.RoundTrip(r)
}

// TestAgentVanishesMidCall cuts the agent off from the relay while a slow
// tool runs, so no failure is ever posted: the relay's response timeout (3s)
// must end the client's call with an error instead of a hang.
func TestAgentVanishesMidCall(t *testing.T) {
	gs := startGoServer(t)
	ct := &cutTransport{base: http.DefaultTransport.(*http.Transport).Clone()}
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: gs.url, responseTimeout: 3 * time.Second, agentHTTP: &http.Client{Transport: ct}}}})
	te := h.tunnel(0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan answer, 1)
	go func() { done <- postSlowCall(ctx, te, 43, 30) }()
	waitToolStarted(t, gs.started, done)
	ct.cut.Store(true)
	select {
	case a := <-done:
		t.Logf("client got %d %s (err %v)", a.status, bytes.TrimSpace(a.body), a.err)
		if a.err == nil && a.status < 500 && !bytes.Contains(a.body, []byte(`"error"`)) {
			t.Fatalf("client got no error after the agent vanished: %d %s", a.status, a.body)
		}
	case <-ctx.Done():
		t.Fatal("client still waiting 60s after the call started although the relay's response timeout is 3s")
	}
}

// TestMCPServerFailures points the agent at MCP servers that are down or
// answer garbage: the client sees a -32603 error whose
// error.data.tunnel_failure names the right source, and nothing else leaks.
func TestMCPServerFailures(t *testing.T) {
	garbage := func(status int, ctype, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.WriteHeader(status)
			io.WriteString(w, body)
		}))
		t.Cleanup(srv.Close)
		return srv.URL + "/mcp"
	}
	refused := fmt.Sprintf("http://127.0.0.1:%d/mcp", freePort(t))
	for _, tc := range []struct {
		name       string
		url        string
		source     string
		upstream   int // expected upstream_status, 0 = absent
		wantStatus int
	}{
		{"connection refused", refused, wire.SourceConnect, 0, http.StatusBadGateway},
		{"garbage JSON 200", garbage(200, "application/json", "{not json at all"), wire.SourceProtocol, 0, http.StatusBadGateway},
		{"HTML 500", garbage(500, "text/html", "<html>internal error at /secret/path</html>"), wire.SourceTargetHTTP, 500, 0},
		{"garbage SSE", garbage(200, "text/event-stream", "data: {broken\n\n"), wire.SourceProtocol, 0, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: tc.url}}})
			te := h.tunnel(0)
			hd := mcpHeaders(te)
			hd["Accept"] = "application/json, text/event-stream"
			st, _, body := rawPost(t, http.MethodPost, te.mcpURL, hd, []byte(`{"jsonrpc":"2.0","id":"req-7","method":"tools/list"}`))
			var msg struct {
				ID    json.RawMessage `json:"id"`
				Error *struct {
					Code int `json:"code"`
					Data struct {
						TunnelFailure *wire.TunnelFailure `json:"tunnel_failure"`
					} `json:"data"`
				} `json:"error"`
			}
			jb := body
			if i := bytes.Index(body, []byte("data: ")); i >= 0 { // an SSE answer: take its one event
				jb = bytes.TrimSpace(bytes.SplitN(body[i+6:], []byte("\n"), 2)[0])
			}
			if err := json.Unmarshal(jb, &msg); err != nil || msg.Error == nil {
				t.Fatalf("status %d, body %q: not a JSON-RPC error (%v)", st, body, err)
			}
			if string(msg.ID) != `"req-7"` || msg.Error.Code != -32603 {
				t.Errorf("id %s code %d, want \"req-7\" -32603", msg.ID, msg.Error.Code)
			}
			f := msg.Error.Data.TunnelFailure
			if f == nil {
				t.Fatalf("no error.data.tunnel_failure in %s", body)
			}
			if f.Version != 1 || f.Source != tc.source {
				t.Errorf("tunnel_failure = %+v, want version 1 source %q", *f, tc.source)
			}
			if tc.upstream != 0 && (f.UpstreamStatus == nil || *f.UpstreamStatus != tc.upstream || !f.UpstreamResponseReceived) {
				t.Errorf("tunnel_failure = %+v, want upstream_status %d", *f, tc.upstream)
			}
			if tc.wantStatus != 0 && st != tc.wantStatus {
				t.Errorf("HTTP status %d, want %d", st, tc.wantStatus)
			}
			for _, leak := range []string{"127.0.0.1", "secret", "not json", "broken"} {
				if bytes.Contains(body, []byte(leak)) {
					t.Errorf("error body leaks %q: %s", leak, body)
				}
			}
		})
	}
}

// TestMalformedAgentResponses posts garbage to the relay's response endpoint
// with a raw HTTP client: each gets a 4xx, and the tunnel keeps serving.
func TestMalformedAgentResponses(t *testing.T) {
	gs := startGoServer(t)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: gs.url}}, maxResponseBytes: 64 << 10})
	te := h.tunnel(0)
	url := h.baseURL + "/v1/tunnels/" + te.id + "/response"
	auth := map[string]string{"Authorization": "Bearer " + te.runtimeKey, "Content-Type": "application/json"}
	for _, tc := range []struct {
		name string
		body string
		want []int
	}{
		{"not JSON", "{garbage", []int{400}},
		{"JSON array", "[1,2,3]", []int{400}},
		{"empty", "", []int{400}},
		{"unknown request", `{"request_id":"req_doesnotexist","resp_json":{"jsonrpc":"2.0","id":1,"result":{}},"resp_headers":{},"resp_code":200,"resp_type":"jsonrpc_response"}`, []int{404}},
		{"wrong types", `{"request_id":7,"resp_json":"x","resp_code":"200"}`, []int{400}},
		{"unknown resp_type", `{"request_id":"req_x","resp_json":null,"resp_headers":{},"resp_code":200,"resp_type":"bogus"}`, []int{400, 404}},
		{"oversize", `{"request_id":"req_x","resp_json":"` + strings.Repeat("a", 100<<10) + `"}`, []int{413}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _, body := rawPost(t, http.MethodPost, url, auth, []byte(tc.body))
			ok := false
			for _, w := range tc.want {
				ok = ok || st == w
			}
			if !ok {
				t.Errorf("status %d (%s), want one of %v", st, body, tc.want)
			}
			var e wire.APIError
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" {
				t.Errorf("body %q is not the error envelope", body)
			}
		})
	}
	quickCall(t, te)
}

// fakeRelay is a control plane that serves a script of poll bodies, then
// empty polls, and records the response POSTs it gets.
type fakeRelay struct {
	mu        sync.Mutex
	script    [][]byte
	responses []wire.Response
	got       chan wire.Response
}

func (f *fakeRelay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasSuffix(r.URL.Path, "/poll"):
		f.mu.Lock()
		var next []byte
		if len(f.script) > 0 {
			next, f.script = f.script[0], f.script[1:]
		}
		f.mu.Unlock()
		if next == nil {
			select { // an empty long-poll, bounded
			case <-r.Context().Done():
			case <-time.After(200 * time.Millisecond):
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(next)
	case strings.HasSuffix(r.URL.Path, "/response"):
		var resp wire.Response
		if err := json.NewDecoder(r.Body).Decode(&resp); err != nil {
			http.Error(w, `{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":"invalid_json_payload"}}`, 400)
			return
		}
		f.mu.Lock()
		f.responses = append(f.responses, resp)
		f.mu.Unlock()
		select {
		case f.got <- resp:
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	default:
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","name":"fake","description":"fake relay"}`)
	}
}

// TestGarbagePolls runs an agent against a fake relay whose polls carry
// garbage (not JSON, wrong shapes, unknown command types, bad channels and
// timeouts) between valid commands: the agent keeps polling and answers every
// valid command.
func TestGarbagePolls(t *testing.T) {
	gs := startGoServer(t)
	valid := func(id string) []byte {
		return []byte(`{"commands":[{"request_id":"` + id + `","shard_token":"s","command_type":"jsonrpc","channel":"main","created_at":"2026-01-01T00:00:00Z","headers":{"Mcp-Protocol-Version":["2026-07-28"],"Mcp-Method":["tools/call"],"Mcp-Name":["echo"],"Accept":["application/json, text/event-stream"],"Content-Type":["application/json"]},"jsonrpc":{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"` + id + `"},"_meta":` + modernMeta + `}}}]}`)
	}
	f := &fakeRelay{got: make(chan wire.Response, 64), script: [][]byte{
		[]byte(`{not json`),
		valid("req_first"),
		[]byte(`[]`),
		[]byte(`{"commands":"nope"}`),
		[]byte(`{"commands":[{"request_id":5}]}`),
		[]byte(`{"commands":[{"request_id":"req_unknown","command_type":"launch_missiles","headers":{}}]}`),
		[]byte(`{"commands":[{"request_id":"req_badchan","command_type":"jsonrpc","channel":"NOT VALID!","headers":{},"jsonrpc":{"jsonrpc":"2.0","id":2,"method":"ping"}}]}`),
		[]byte(`{"commands":[{"request_id":"req_nojson","command_type":"jsonrpc","headers":{},"jsonrpc":"ping"}]}`),
		[]byte(strings.Repeat("x", 1<<20)),
		valid("req_second"),
	}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	b := newBinding(t, gs.url)
	a, err := agent.New(agent.Config{
		BaseURL: srv.URL, TunnelID: "tunnel_" + strings.Repeat("ab", 16), APIKey: "sk-fake",
		PollTimeout: time.Second, ShutdownGrace: time.Second,
	}, agent.Options{Logger: testLogger(t, "agent"), Bindings: map[string]binding.Binding{"main": b}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-runDone:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
	})
	answered := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for !answered["req_first"] || !answered["req_second"] {
		select {
		case r := <-f.got:
			if r.Final() && (r.RequestID == "req_first" || r.RequestID == "req_second") {
				if !bytes.Contains(r.RespJSON, []byte("echo: "+r.RequestID)) {
					t.Errorf("%s answered %s", r.RequestID, r.RespJSON)
				}
				answered[r.RequestID] = true
			}
		case <-deadline:
			t.Fatalf("agent answered %v of the valid commands within 30s; responses %+v", answered, f.responses)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.responses {
		if r.RequestID == "req_unknown" {
			t.Errorf("agent answered a command of unknown type: %+v", r)
		}
	}
}

// TestKeys checks authentication on two tunnels: wrong, missing and
// cross-tunnel keys are refused with 401/403 on every endpoint, and nothing of
// tunnel A (its sessions, its server) is visible through tunnel B.
func TestKeys(t *testing.T) {
	ga := startGoServer(t, "only-on-a")
	gb := startGoServer(t, "only-on-b")
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: ga.url}, {serverURL: gb.url}}})
	a, b := h.tunnel(0), h.tunnel(1)
	ping := []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	for _, tc := range []struct {
		name, method, url, key string
		body                   []byte
	}{
		{"mcp without key", "POST", a.mcpURL, "", ping},
		{"mcp wrong key", "POST", a.mcpURL, "sk-sluice-wrong", ping},
		{"mcp B's client key on A", "POST", a.mcpURL, b.clientKey, ping},
		{"mcp A's runtime key as client key", "POST", a.mcpURL, a.runtimeKey, ping},
		{"delete B's client key on A", "DELETE", a.mcpURL, b.clientKey, nil},
		{"poll without key", "GET", h.baseURL + "/v1/tunnels/" + a.id + "/poll?timeout_ms=100", "", nil},
		{"poll B's runtime key on A", "GET", h.baseURL + "/v1/tunnels/" + a.id + "/poll?timeout_ms=100", b.runtimeKey, nil},
		{"poll A's client key", "GET", h.baseURL + "/v1/tunnels/" + a.id + "/poll?timeout_ms=100", a.clientKey, nil},
		{"metadata B's runtime key on A", "GET", h.baseURL + "/v1/tunnels/" + a.id, b.runtimeKey, nil},
		{"response B's runtime key on A", "POST", h.baseURL + "/v1/tunnels/" + a.id + "/response", b.runtimeKey,
			[]byte(`{"request_id":"req_x","resp_json":null,"resp_headers":{},"resp_code":200,"resp_type":"jsonrpc_response"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hd := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
			if tc.key != "" {
				hd["Authorization"] = "Bearer " + tc.key
			}
			if tc.method == "DELETE" {
				hd["Mcp-Session-Id"] = "some-session"
			}
			st, _, body := rawPost(t, tc.method, tc.url, hd, tc.body)
			if st != http.StatusUnauthorized && st != http.StatusForbidden {
				t.Errorf("status %d (%s), want 401 or 403", st, body)
			}
			for _, secret := range []string{a.clientKey, a.runtimeKey, b.clientKey, b.runtimeKey} {
				if bytes.Contains(body, []byte(secret)) {
					t.Errorf("error body echoes a key")
				}
			}
		})
	}

	// A session opened on A, presented to B with B's key, reaches B's server,
	// which does not know it; B's tools never include A's.
	hdA := mcpHeaders(a)
	st, rh, body := rawPost(t, "POST", a.mcpURL, hdA, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`))
	sid := rh.Get("Mcp-Session-Id")
	if st != 200 || sid == "" {
		t.Fatalf("initialize on A: %d %s", st, body)
	}
	hdB := mcpHeaders(b)
	hdB["Mcp-Session-Id"] = sid
	hdB["Mcp-Protocol-Version"] = "2025-11-25"
	st, _, body = rawPost(t, "POST", b.mcpURL, hdB, []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`))
	if bytes.Contains(body, []byte("only-on-a")) {
		t.Errorf("A's tools visible through B with A's session: %d %s", st, body)
	}
	if st == 200 && !bytes.Contains(body, []byte(`"error"`)) {
		t.Errorf("B accepted A's session id: %d %s", st, body)
	}
	hdA["Mcp-Session-Id"] = sid
	hdA["Mcp-Protocol-Version"] = "2025-11-25"
	st, _, body = rawPost(t, "POST", a.mcpURL, hdA, []byte(`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`))
	if st != 200 || !bytes.Contains(body, []byte("only-on-a")) || bytes.Contains(body, []byte("only-on-b")) {
		t.Errorf("tools/list on A: %d %s", st, body)
	}
	quickCall(t, b)
}

// TestOversizeBody sends an MCP body over the relay's cap: 413, and the
// tunnel keeps serving.
func TestOversizeBody(t *testing.T) {
	gs := startGoServer(t)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: gs.url}}, maxBodyBytes: 64 << 10})
	te := h.tunnel(0)
	big := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"` + strings.Repeat("a", 128<<10) + `"}}}`)
	st, _, body := rawPost(t, http.MethodPost, te.mcpURL, mcpHeaders(te), big)
	if st != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d (%.200s), want 413", st, body)
	}
	quickCall(t, te)
}

// answer is what an MCP client got for one call.
type answer struct {
	status int
	body   []byte
	err    error
}

// postSlowCall sends one 2026-07-28 tools/call of the sleep tool (no session:
// one POST is the whole call) and returns what the client got.
func postSlowCall(ctx context.Context, te *tunnelEnv, id, seconds int) answer {
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"sleep","arguments":{"seconds":%d},"_meta":%s}}`, id, seconds, modernMeta)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, te.mcpURL, strings.NewReader(body))
	for k, v := range mcpHeaders(te) {
		req.Header.Set(k, v)
	}
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "sleep")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: b, err: err}
}

// waitToolStarted waits until the slow tool runs, failing if the call ended first.
func waitToolStarted(t *testing.T, started <-chan string, done <-chan answer) {
	t.Helper()
	select {
	case <-started:
	case a := <-done:
		t.Fatalf("call ended before the tool started: %d %s %v", a.status, a.body, a.err)
	case <-time.After(20 * time.Second):
		t.Fatal("slow tool never started")
	}
}
