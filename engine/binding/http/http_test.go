package httpbinding

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/binding/bindingtest"
	"github.com/sluicemcp/sluice/engine/wire"
)

const (
	legacyVersion = "2025-11-25"
	modernVersion = "2026-07-28"
)

// gate lets a test hold a tool call open until it has seen a notification.
type gate struct {
	once    sync.Once
	release chan struct{}
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// newMCPGoServer starts an mcp-go Streamable HTTP server with an echo tool and
// a "gated" tool that sends one progress notification and then waits for g.
func newMCPGoServer(t testing.TB, g *gate, opts ...server.StreamableHTTPOption) *httptest.Server {
	t.Helper()
	s := server.NewMCPServer("test", "1", server.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("echo", mcp.WithString("message")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(req.GetString("message", "")), nil
	})
	s.AddTool(mcp.NewTool("gated"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if req.Params.Meta == nil || req.Params.Meta.ProgressToken == nil {
			return mcp.NewToolResultError("no progress token"), nil
		}
		err := server.ServerFromContext(ctx).SendNotificationToClient(ctx, "notifications/progress", map[string]any{
			"progressToken": req.Params.Meta.ProgressToken, "progress": 1, "total": 2,
		})
		if err != nil {
			return nil, err
		}
		select {
		case <-g.release:
			return mcp.NewToolResultText("released"), nil
		case <-time.After(10 * time.Second):
			return mcp.NewToolResultText("not released: the binding buffered the stream"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	opts = append([]server.StreamableHTTPOption{server.WithStreamableHTTPLogger(discard())}, opts...)
	ts := httptest.NewServer(server.NewStreamableHTTPServer(s, opts...))
	t.Cleanup(ts.Close)
	return ts
}

func newBinding(t testing.TB, url string, cfg Config, opts Options) *Binding {
	t.Helper()
	cfg.URL = url
	b, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// collect runs Do and returns every reply.
func collect(t testing.TB, b binding.Binding, req *binding.Request) ([]*binding.Reply, error) {
	t.Helper()
	return bindingtest.Collect(b, req, nil)
}

func rpc(id int, method, params string) *binding.Request {
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params)
	return &binding.Request{Kind: binding.KindJSONRPC, Header: http.Header{}, Body: json.RawMessage(body), ID: json.RawMessage(fmt.Sprint(id))}
}

// initialize runs the 2025 handshake and returns the session id.
func initialize(t *testing.T, b *Binding) string {
	t.Helper()
	req := rpc(0, "initialize", `{"protocolVersion":"`+legacyVersion+`","capabilities":{},"clientInfo":{"name":"t","version":"1"}}`)
	replies, err := collect(t, b, req)
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	if len(replies) != 1 || !replies[0].Final || replies[0].Status != 200 {
		t.Fatalf("initialize replies: %+v", replies)
	}
	sid := replies[0].Header.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatal("initialize: no Mcp-Session-Id")
	}
	n := &binding.Request{Kind: binding.KindJSONRPC, Notification: true,
		Header: http.Header{"Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {legacyVersion}},
		Body:   json.RawMessage(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)}
	replies, err = collect(t, b, n)
	if err != nil || len(replies) != 1 || replies[0].Status != 202 || len(replies[0].Body) != 0 || !replies[0].Final {
		t.Fatalf("notifications/initialized: %v %+v", err, replies)
	}
	return sid
}

func toolText(t *testing.T, body []byte) string {
	t.Helper()
	var r struct {
		ID     json.RawMessage `json:"id"`
		Result struct {
			Content []struct{ Text string } `json:"content"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &r); err != nil || len(r.Result.Content) != 1 {
		t.Fatalf("tool result %s: %v", body, err)
	}
	return r.Result.Content[0].Text
}

func TestMCPGoLegacyEra(t *testing.T) {
	g := &gate{release: make(chan struct{})}
	ts := newMCPGoServer(t, g)
	b := newBinding(t, ts.URL+"/mcp", Config{}, Options{})
	sid := initialize(t, b)
	hdr := func() http.Header {
		return http.Header{"Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {legacyVersion}}
	}

	t.Run("json echo", func(t *testing.T) {
		req := rpc(7, "tools/call", `{"name":"echo","arguments":{"message":"hi"}}`)
		req.Header = hdr()
		replies, err := collect(t, b, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(replies) != 1 || !replies[0].Final || replies[0].Status != 200 {
			t.Fatalf("replies: %+v", replies)
		}
		if ct := replies[0].Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("content type %q", ct)
		}
		if got := toolText(t, replies[0].Body); got != "hi" {
			t.Fatalf("echo = %q", got)
		}
	})

	t.Run("sse progress before result", func(t *testing.T) {
		req := rpc(8, "tools/call", `{"name":"gated","_meta":{"progressToken":"tok"}}`)
		req.Header = hdr()
		var replies []*binding.Reply
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := b.Do(ctx, req, func(r *binding.Reply) error {
			replies = append(replies, r)
			if !r.Final {
				g.open() // only now may the tool finish
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(replies) != 2 || replies[0].Final || !replies[1].Final {
			t.Fatalf("replies: %+v", replies)
		}
		if !bytes.Contains(replies[0].Body, []byte(`"notifications/progress"`)) || !bytes.Contains(replies[0].Body, []byte(`"tok"`)) {
			t.Fatalf("first message is not the progress: %s", replies[0].Body)
		}
		if got := toolText(t, replies[1].Body); got != "released" {
			t.Fatalf("result = %q (the notification must be emitted before the server finishes)", got)
		}
		if ct := replies[1].Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("content type %q", ct)
		}
	})
}

func TestMCPGoModernEra(t *testing.T) {
	ts := newMCPGoServer(t, &gate{release: make(chan struct{})})
	b := newBinding(t, ts.URL+"/mcp", Config{}, Options{})
	body := `{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo","arguments":{"message":"modern"},"_meta":{"io.modelcontextprotocol/protocolVersion":"` + modernVersion + `","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}}}`
	tests := []struct {
		name       string
		mcpName    string
		wantStatus int
		wantText   string
	}{
		{"echo", "echo", 200, "modern"},
		{"header mismatch passes the JSON-RPC error through", "other", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &binding.Request{Kind: binding.KindJSONRPC, Body: json.RawMessage(body), ID: json.RawMessage(`"a-1"`),
				Header: http.Header{"Mcp-Protocol-Version": {modernVersion}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {tt.mcpName}}}
			replies, err := collect(t, b, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(replies) != 1 || !replies[0].Final || replies[0].Status != tt.wantStatus {
				t.Fatalf("replies: %d %+v %s", len(replies), replies[0], replies[0].Body)
			}
			if replies[0].Header.Get("Mcp-Session-Id") != "" {
				t.Fatal("modern era must not mint a session")
			}
			if tt.wantText != "" {
				if got := toolText(t, replies[0].Body); got != tt.wantText {
					t.Fatalf("echo = %q", got)
				}
			} else if !bytes.Contains(replies[0].Body, []byte(`"error"`)) || !bytes.Contains(replies[0].Body, []byte(`"a-1"`)) {
				t.Fatalf("want a JSON-RPC error for id a-1, got %s", replies[0].Body)
			}
		})
	}
}

func TestMCPGoModernEraProgress(t *testing.T) {
	g := &gate{release: make(chan struct{})}
	ts := newMCPGoServer(t, g)
	b := newBinding(t, ts.URL+"/mcp", Config{}, Options{})
	body := `{"jsonrpc":"2.0","id":0,"method":"tools/call","params":{"name":"gated","_meta":{"progressToken":5,"io.modelcontextprotocol/protocolVersion":"` + modernVersion + `","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}}}`
	req := &binding.Request{Kind: binding.KindJSONRPC, Body: json.RawMessage(body), ID: json.RawMessage(`0`),
		Header: http.Header{"Mcp-Protocol-Version": {modernVersion}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {"gated"}}}
	var replies []*binding.Reply
	err := b.Do(context.Background(), req, func(r *binding.Reply) error {
		replies = append(replies, r)
		if !r.Final {
			g.open()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 2 || replies[0].Final || !replies[1].Final {
		t.Fatalf("replies: %+v", replies)
	}
	if got := toolText(t, replies[1].Body); got != "released" {
		t.Fatalf("result = %q", got)
	}
}

func TestSessionTermination(t *testing.T) {
	ts := newMCPGoServer(t, &gate{release: make(chan struct{})}, server.WithStateful(true))
	b := newBinding(t, ts.URL+"/mcp", Config{}, Options{})
	sid := initialize(t, b)
	hdr := http.Header{"Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {legacyVersion}}
	replies, err := collect(t, b, &binding.Request{Kind: binding.KindSessionTermination, Header: hdr})
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 1 || !replies[0].Final || replies[0].Status != 200 || len(replies[0].Body) != 0 {
		t.Fatalf("delete replies: %+v", replies)
	}
	// The session is gone: the server's 404 passes through as the answer, so
	// the MCP client starts a new session as the spec tells it to.
	req := rpc(3, "tools/call", `{"name":"echo","arguments":{"message":"x"}}`)
	req.Header = hdr
	replies, err = collect(t, b, req)
	if err != nil || len(replies) != 1 || !replies[0].Final || replies[0].Status != 404 {
		t.Fatalf("after delete: %+v, %v; want a final 404", replies, err)
	}
}

// TestServerErrorWithoutJSONRPC: a 5xx without a JSON-RPC body is a failure
// with the status as provenance (the agent synthesizes -32603 for it).
func TestServerErrorWithoutJSONRPC(t *testing.T) {
	ts := httptest.NewServer(status(503, "text/html", "<h1>down</h1>"))
	defer ts.Close()
	b := newBinding(t, ts.URL, Config{}, Options{})
	_, err := collect(t, b, rpc(1, "tools/call", `{}`))
	var be *binding.Error
	if !errors.As(err, &be) || be.UpstreamStatus != 503 || be.Source != wire.SourceTargetHTTP {
		t.Fatalf("err = %v, want target_http 503", err)
	}
}

// TestGoSDKSeesOwnHost runs a go-sdk server, which answers 403 to a foreign
// Host, and forwards a client Host header that must not reach it.
func TestGoSDKSeesOwnHost(t *testing.T) {
	s := sdk.NewServer(&sdk.Implementation{Name: "gosdk", Version: "1"}, nil)
	ts := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	defer ts.Close()

	// Control: the server really refuses a foreign Host.
	hreq, _ := http.NewRequest(http.MethodPost, ts.URL, strings.NewReader(`{}`))
	hreq.Host = "relay.example.com"
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("control: foreign Host got %d, want 403", resp.StatusCode)
	}

	b := newBinding(t, ts.URL, Config{}, Options{})
	req := rpc(1, "initialize", `{"protocolVersion":"`+legacyVersion+`","capabilities":{},"clientInfo":{"name":"t","version":"1"}}`)
	req.Header = http.Header{"Host": {"relay.example.com"}, "X-Forwarded-Host": {"relay.example.com"}}
	replies, err := collect(t, b, req)
	if err != nil {
		t.Fatal(err)
	}
	last := replies[len(replies)-1]
	if last.Status != 200 || !last.Final || !bytes.Contains(last.Body, []byte(`"serverInfo"`)) {
		t.Fatalf("initialize through binding: %d %s", last.Status, last.Body)
	}
}

func TestForwardedHeaders(t *testing.T) {
	var got http.Header
	var host string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, host = r.Header.Clone(), r.Host
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer ts.Close()
	b := newBinding(t, ts.URL, Config{ExtraHeaders: http.Header{
		"X-Api-Key":     {"extra-key"},
		"Authorization": {"Bearer extra"},
	}}, Options{})
	req := rpc(1, "ping", `{}`)
	req.Header = http.Header{
		"Authorization":        {"Bearer client"},
		"Mcp-Session-Id":       {"s1"},
		"Mcp-Protocol-Version": {legacyVersion},
		"Mcp-Method":           {"ping"},
		"Mcp-Param-Region":     {"eu"},
		"Last-Event-Id":        {"42"},
		"Traceparent":          {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		"Tracestate":           {"a=b"},
		"Accept":               {"application/json"},
		"Content-Type":         {"text/plain"},
		"Cookie":               {"c=1"},
		"X-Forwarded-For":      {"1.2.3.4"},
		"Connection":           {"X-Hop"},
		"X-Hop":                {"1"},
		"Host":                 {"relay.example.com"},
	}
	if _, err := collect(t, b, req); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Authorization":        "Bearer client",
		"X-Api-Key":            "extra-key",
		"Mcp-Session-Id":       "s1",
		"Mcp-Protocol-Version": legacyVersion,
		"Mcp-Method":           "ping",
		"Mcp-Param-Region":     "eu",
		"Last-Event-Id":        "42",
		"Traceparent":          "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"Tracestate":           "a=b",
		"Accept":               acceptBoth,
		"Content-Type":         "application/json",
	}
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, got.Get(k), v)
		}
	}
	for _, k := range []string{"Cookie", "X-Forwarded-For", "X-Hop"} {
		if got.Get(k) != "" {
			t.Errorf("%s forwarded", k)
		}
	}
	if host != strings.TrimPrefix(ts.URL, "http://") {
		t.Errorf("Host = %q, want the server's own", host)
	}
}

// sseBody writes an SSE response made of the given raw events.
func sseBody(events ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, e := range events {
			fmt.Fprint(w, e)
			w.(http.Flusher).Flush()
		}
	}
}

func status(code int, ct, body string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		if ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
}

func TestReplies(t *testing.T) {
	progress := "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n"
	sampling := "data: {\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"sampling/createMessage\",\"params\":{}}\n\n"
	otherResp := "data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n"
	final := "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1,\"result\":{\"ok\":true}}\r\n\r\n"
	tests := []struct {
		name      string
		h         http.HandlerFunc
		req       *binding.Request
		wantFinal []bool
		wantCode  int
		wantBody  string
		wantHdr   [2]string
	}{
		{name: "json", h: status(200, "application/json", `{"jsonrpc":"2.0","id":1,"result":{}}`),
			wantFinal: []bool{true}, wantCode: 200, wantBody: `{"jsonrpc":"2.0","id":1,"result":{}}`},
		{name: "json without content type", h: status(200, "", `{"jsonrpc":"2.0","id":1,"result":{}}`),
			wantFinal: []bool{true}, wantCode: 200},
		{name: "sse notifications, server request, other response, final", h: sseBody(": keep-alive\n\n", "id: p\ndata: \n\n", progress, sampling, otherResp, final, progress),
			wantFinal: []bool{false, false, false, true}, wantCode: 200, wantBody: "{\"jsonrpc\":\"2.0\",\n\"id\":1,\"result\":{\"ok\":true}}"},
		{name: "sse final without blank line at EOF", h: sseBody("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-1,\"message\":\"x\"}}"),
			wantFinal: []bool{true}, wantCode: 200},
		{name: "sse string id", req: &binding.Request{Kind: binding.KindJSONRPC, Body: json.RawMessage(`{"jsonrpc":"2.0","id":"x","method":"ping"}`)},
			h: sseBody("data: {\"jsonrpc\":\"2.0\",\"id\": \"x\",\"result\":{}}\n\n"), wantFinal: []bool{true}, wantCode: 200},
		{name: "sse non-message event skipped", h: sseBody("event: endpoint\ndata: /messages\n\n", "event: custom\ndata: "+strings.TrimPrefix(final, "event: message\r\ndata: ")),
			wantFinal: []bool{true}, wantCode: 200},
		{name: "notification 202", req: &binding.Request{Kind: binding.KindJSONRPC, Notification: true, Body: json.RawMessage(`{"jsonrpc":"2.0","method":"notifications/cancelled"}`)},
			h: status(202, "", ""), wantFinal: []bool{true}, wantCode: 202, wantBody: ""},
		{name: "500 with JSON-RPC error passes through", h: status(500, "application/json", `{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"boom"}}`),
			wantFinal: []bool{true}, wantCode: 500, wantBody: `{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"boom"}}`},
		{name: "404 with JSON-RPC error null id passes through", h: status(404, "application/json", `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}`),
			wantFinal: []bool{true}, wantCode: 404, wantBody: `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}`},
		{name: "401 text body passes status and WWW-Authenticate", h: status(401, "text/plain", "unauthorized", "WWW-Authenticate", `Bearer resource_metadata="http://x/.well-known/oauth-protected-resource"`),
			wantFinal: []bool{true}, wantCode: 401, wantBody: "", wantHdr: [2]string{"WWW-Authenticate", `Bearer resource_metadata="http://x/.well-known/oauth-protected-resource"`}},
		{name: "403 passes with its JSON body", h: status(403, "application/json", `{"error":"insufficient_scope"}`, "WWW-Authenticate", `Bearer error="insufficient_scope"`),
			wantFinal: []bool{true}, wantCode: 403, wantBody: `{"error":"insufficient_scope"}`},
		{name: "404 text passes its status without a body", h: status(404, "text/plain", "session not found\n"),
			wantFinal: []bool{true}, wantCode: 404, wantBody: "", wantHdr: [2]string{"Content-Type", "text/plain"}},
		{name: "400 text passes its status", h: status(400, "text/plain", "Bad Request: unsupported protocol version"),
			wantFinal: []bool{true}, wantCode: 400, wantBody: ""},
		{name: "405 passes", h: status(405, "", ""), wantFinal: []bool{true}, wantCode: 405, wantBody: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(tt.h)
			defer ts.Close()
			b := newBinding(t, ts.URL, Config{}, Options{})
			req := tt.req
			if req == nil {
				req = rpc(1, "tools/call", `{}`)
				req.ID = nil // the binding reads the id from the body
			}
			replies, err := collect(t, b, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(replies) != len(tt.wantFinal) {
				t.Fatalf("got %d replies, want %d", len(replies), len(tt.wantFinal))
			}
			for i, r := range replies {
				if r.Final != tt.wantFinal[i] {
					t.Errorf("reply %d final = %v", i, r.Final)
				}
				if r.Status != tt.wantCode {
					t.Errorf("reply %d status = %d", i, r.Status)
				}
			}
			last := replies[len(replies)-1]
			if (tt.wantBody != "" || tt.wantCode >= 202) && string(last.Body) != tt.wantBody {
				t.Errorf("body = %q, want %q", last.Body, tt.wantBody)
			}
			if tt.wantHdr[0] != "" && last.Header.Get(tt.wantHdr[0]) != tt.wantHdr[1] {
				t.Errorf("%s = %q", tt.wantHdr[0], last.Header.Get(tt.wantHdr[0]))
			}
		})
	}
}

// hijackReset sends a partial SSE response and then resets the connection.
func hijackReset(w http.ResponseWriter, r *http.Request) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	fmt.Fprint(buf, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
	chunk := "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n"
	fmt.Fprintf(buf, "%x\r\n%s\r\n", len(chunk), chunk)
	buf.Flush()
	time.Sleep(50 * time.Millisecond)
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0) // RST instead of FIN
	}
	conn.Close()
}

func TestFailures(t *testing.T) {
	big := `{"jsonrpc":"2.0","id":1,"result":{"x":"` + strings.Repeat("a", 2048) + `"}}`
	closedURL := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		u := "http://" + ln.Addr().String()
		ln.Close()
		return u
	}
	tests := []struct {
		name       string
		h          http.HandlerFunc
		url        string
		cfg        Config
		opts       Options
		timeout    time.Duration
		wantSource string
		wantKinds  []string
		wantStatus int
		wantEmits  int
	}{
		{name: "garbage 200", h: status(200, "application/json", "hello"), wantSource: wire.SourceProtocol, wantKinds: []string{kindMalformedJSON}},
		{name: "truncated json 200", h: status(200, "application/json", `{"jsonrpc":`), wantSource: wire.SourceProtocol, wantKinds: []string{kindMalformedJSON}},
		{name: "json array 200", h: status(200, "application/json", `[{"jsonrpc":"2.0","id":1,"result":{}}]`), wantSource: wire.SourceProtocol, wantKinds: []string{kindInvalidResponse}},
		{name: "json object not JSON-RPC", h: status(200, "application/json", `{"hello":1}`), wantSource: wire.SourceProtocol, wantKinds: []string{kindInvalidResponse}},
		{name: "empty 200 for a request", h: status(200, "application/json", ""), wantSource: wire.SourceProtocol, wantKinds: []string{kindBodyMissing}},
		{name: "500 text", h: status(500, "text/plain", "internal error"), wantSource: wire.SourceTargetHTTP, wantKinds: []string{kindHTTPStatus}, wantStatus: 500},
		{name: "502 json not JSON-RPC", h: status(502, "application/json", `{"error":"bad gateway"}`), wantSource: wire.SourceTargetHTTP, wantKinds: []string{kindHTTPStatus}, wantStatus: 502},
		{name: "redirect", h: status(307, "", "", "Location", "http://127.0.0.1:1/"), wantSource: wire.SourceProtocol, wantKinds: []string{kindNonProtocol}},
		{name: "oversize json", h: status(200, "application/json", big), cfg: Config{MaxResponseBytes: 1024}, wantSource: wire.SourceProtocol, wantKinds: []string{kindBodyTooLarge}},
		{name: "oversize chunked json", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			for range 4 {
				fmt.Fprint(w, big[:512])
				w.(http.Flusher).Flush()
			}
		}, cfg: Config{MaxResponseBytes: 1024}, wantSource: wire.SourceProtocol, wantKinds: []string{kindBodyTooLarge}},
		{name: "oversize sse event", h: sseBody("data: " + big + "\n\n"), cfg: Config{MaxResponseBytes: 1024}, wantSource: wire.SourceProtocol, wantKinds: []string{kindBodyTooLarge}},
		{name: "sse garbage event", h: sseBody("data: not json\n\n"), wantSource: wire.SourceProtocol, wantKinds: []string{kindMalformedJSON}},
		{name: "sse ends without final", h: sseBody("data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n"),
			wantSource: wire.SourceTransportClosed, wantKinds: []string{kindUnexpectedEOF}, wantEmits: 1},
		{name: "reset mid-stream", h: hijackReset, wantSource: wire.SourceTransportClosed, wantKinds: []string{kindReset, kindUnexpectedEOF}, wantEmits: 1},
		{name: "timeout", h: hang,
			timeout: 100 * time.Millisecond, wantSource: wire.SourceTimeout, wantKinds: []string{kindTimeout}},
		{name: "timeout mid-stream", h: func(w http.ResponseWriter, r *http.Request) {
			sseBody("data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n")(w, r)
			hang(w, r)
		}, timeout: 200 * time.Millisecond, wantSource: wire.SourceTimeout, wantKinds: []string{kindTimeout}, wantEmits: 1},
		{name: "connection refused", url: closedURL(), wantSource: wire.SourceConnect, wantKinds: []string{kindRefused}},
		{name: "dns", url: "http://mcp.internal.example:80", opts: Options{HTTPClient: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: "mcp.internal.example", IsNotFound: true}}
			}}}}, wantSource: wire.SourceDNS, wantKinds: []string{kindDNS}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := tt.url
			if tt.h != nil {
				ts := httptest.NewServer(tt.h)
				defer ts.Close()
				u = ts.URL
			}
			b := newBinding(t, u, tt.cfg, tt.opts)
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 20 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			emits := 0
			err := b.Do(ctx, rpc(1, "tools/call", `{}`), func(*binding.Reply) error { emits++; return nil })
			var be *binding.Error
			if !errors.As(err, &be) {
				t.Fatalf("err = %v (%T), want *binding.Error", err, err)
			}
			if be.Source != tt.wantSource || !containsString(tt.wantKinds, be.Kind) || be.UpstreamStatus != tt.wantStatus {
				t.Fatalf("got source=%s kind=%s status=%d (%v), want %s %v %d", be.Source, be.Kind, be.UpstreamStatus, be.Err, tt.wantSource, tt.wantKinds, tt.wantStatus)
			}
			if emits != tt.wantEmits {
				t.Fatalf("emits = %d, want %d", emits, tt.wantEmits)
			}
			f := binding.Failure(err)
			if tt.wantStatus == 0 && f.UpstreamStatus != nil {
				t.Fatalf("failure has an upstream status without one: %+v", f)
			}
		})
	}
}

// hang reads the request and waits until the client goes away (bounded).
func hang(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body) // lets the server notice the client closing
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestTLSFailure(t *testing.T) {
	ts := httptest.NewUnstartedServer(status(200, "application/json", `{"jsonrpc":"2.0","id":1,"result":{}}`))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	defer ts.Close()
	b := newBinding(t, ts.URL, Config{}, Options{})
	_, err := collect(t, b, rpc(1, "ping", `{}`))
	var be *binding.Error
	if !errors.As(err, &be) || be.Source != wire.SourceTLS || be.Kind != kindTLS {
		t.Fatalf("err = %v, want tls", err)
	}
	// With the server's certificate trusted the same binding code succeeds.
	b2 := newBinding(t, ts.URL, Config{}, Options{HTTPClient: ts.Client()})
	if _, err := collect(t, b2, rpc(1, "ping", `{}`)); err != nil {
		t.Fatal(err)
	}
}

func TestEmitErrorStops(t *testing.T) {
	progress := "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n"
	ts := httptest.NewServer(sseBody(progress, progress, "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"))
	defer ts.Close()
	b := newBinding(t, ts.URL, Config{}, Options{})
	stop := errors.New("stop")
	n := 0
	err := b.Do(context.Background(), rpc(1, "x", `{}`), func(*binding.Reply) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err = %v after %d emits", err, n)
	}
}

func TestCanceled(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(hang))
	defer ts.Close()
	b := newBinding(t, ts.URL, Config{}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	err := b.Do(ctx, rpc(1, "x", `{}`), func(*binding.Reply) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestOAuthDiscovery(t *testing.T) {
	meta := `{"resource":"http://mcp.internal/mcp","authorization_servers":["http://as.internal"]}`
	tests := []struct {
		name       string
		paths      map[string]string
		serverPath string
		// challenge is the WWW-Authenticate of the probe's 401 ("" = no 401);
		// %s is replaced by the test server's URL.
		challenge  string
		wantStatus int
		wantBody   string
		wantAsked  []string // GET paths in order
	}{
		{name: "path-specific", paths: map[string]string{"/.well-known/oauth-protected-resource/mcp": meta, "/.well-known/oauth-protected-resource": `{"root":true}`},
			serverPath: "/mcp", wantStatus: 200, wantBody: meta, wantAsked: []string{"/.well-known/oauth-protected-resource/mcp"}},
		{name: "falls back to root", paths: map[string]string{"/.well-known/oauth-protected-resource": meta},
			serverPath: "/mcp", wantStatus: 200, wantBody: meta, wantAsked: []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"}},
		{name: "root url", paths: map[string]string{"/.well-known/oauth-protected-resource": meta},
			wantStatus: 200, wantBody: meta, wantAsked: []string{"/.well-known/oauth-protected-resource"}},
		{name: "none", paths: map[string]string{}, serverPath: "/mcp", wantStatus: 404,
			wantAsked: []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"}},
		{name: "challenge names the document", paths: map[string]string{"/meta/prm.json": meta, "/.well-known/oauth-protected-resource/mcp": `{"wrong":1}`},
			serverPath: "/mcp", challenge: `Bearer realm="x", resource_metadata="%s/meta/prm.json"`, wantStatus: 200, wantBody: meta,
			wantAsked: []string{"/meta/prm.json"}},
		{name: "challenge document missing falls back", paths: map[string]string{"/.well-known/oauth-protected-resource/mcp": meta},
			serverPath: "/mcp", challenge: `Bearer resource_metadata=%s/gone`, wantStatus: 200, wantBody: meta,
			wantAsked: []string{"/gone", "/.well-known/oauth-protected-resource/mcp"}},
		{name: "challenge off origin is ignored", paths: map[string]string{"/.well-known/oauth-protected-resource/mcp": meta},
			serverPath: "/mcp", challenge: `Bearer resource_metadata="http://evil.example:80/steal"`, wantStatus: 200, wantBody: meta,
			wantAsked: []string{"/.well-known/oauth-protected-resource/mcp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu     sync.Mutex
				asked  []string
				probes int
				auth   []string
			)
			var ts *httptest.Server
			ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				auth = append(auth, r.Header.Get("Authorization"))
				if r.Method == http.MethodPost {
					probes++
					if b, _ := io.ReadAll(r.Body); !strings.Contains(string(b), `"method":"ping"`) {
						t.Errorf("probe body %s", b)
					}
					if tt.challenge != "" {
						w.Header().Set("WWW-Authenticate", strings.ReplaceAll(tt.challenge, "%s", ts.URL))
						w.WriteHeader(401)
						return
					}
					w.Header().Set("Content-Type", "application/json")
					fmt.Fprint(w, `{"jsonrpc":"2.0","id":"sluice-oauth-discovery","result":{}}`)
					return
				}
				asked = append(asked, r.URL.Path)
				body, ok := tt.paths[r.URL.Path]
				if !ok {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Upstream", "kept")
				fmt.Fprint(w, body)
			}))
			defer ts.Close()
			b := newBinding(t, ts.URL+tt.serverPath, Config{}, Options{})
			r, err := b.OAuthDiscovery(context.Background(), http.Header{"Traceparent": {"00-1-2-01"}, "Authorization": {"Bearer secret"}})
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if r.Status != tt.wantStatus || (tt.wantBody != "" && string(r.Body) != tt.wantBody) {
				t.Fatalf("got %d %s (asked %v)", r.Status, r.Body, asked)
			}
			if !slices.Equal(asked, tt.wantAsked) {
				t.Errorf("fetched %v, want %v", asked, tt.wantAsked)
			}
			if probes != 1 {
				t.Errorf("%d probes, want 1", probes)
			}
			for _, a := range auth {
				if a != "" {
					t.Errorf("discovery forwarded Authorization %q", a)
				}
			}
			if tt.wantStatus == 200 && r.Header.Get("X-Upstream") != "kept" {
				t.Errorf("the fetch's headers are not returned: %v", r.Header)
			}
		})
	}
	t.Run("oversize document", func(t *testing.T) {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				w.Write(bytes.Repeat([]byte("x"), maxMetadataBytes+10))
			}
		}))
		defer ts.Close()
		b := newBinding(t, ts.URL+"/mcp", Config{}, Options{})
		if _, err := b.OAuthDiscovery(context.Background(), nil); err == nil {
			t.Fatal("oversize metadata accepted")
		}
	})
}

func TestNewValidates(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "/relative", "http://"} {
		if _, err := New(Config{URL: u}, Options{}); err == nil {
			t.Errorf("New(%q) succeeded", u)
		}
	}
	if _, err := New(Config{URL: "http://x", MaxResponseBytes: -1}, Options{}); err == nil {
		t.Error("negative limit accepted")
	}
	b, err := New(Config{URL: "http://127.0.0.1:1/mcp"}, Options{})
	if err != nil || b.Info().ProcAffinity {
		t.Fatalf("New: %v %+v", err, b.Info())
	}
}

func TestUserAgent(t *testing.T) {
	var got []string
	var mu sync.Mutex
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("User-Agent"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer ts.Close()
	for _, tc := range []struct {
		extra http.Header
		want  string
	}{
		{nil, "sluice/1.2.3"},
		{http.Header{"User-Agent": {"operator/9"}}, "operator/9"}, // mcp.extra-headers wins
	} {
		b := newBinding(t, ts.URL, Config{UserAgent: "sluice/1.2.3", ExtraHeaders: tc.extra}, Options{})
		if _, err := collect(t, b, rpc(1, "ping", `{}`)); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		last := got[len(got)-1]
		mu.Unlock()
		if last != tc.want {
			t.Errorf("User-Agent = %q, want %q", last, tc.want)
		}
	}
}
