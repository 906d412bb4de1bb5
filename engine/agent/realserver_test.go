package agent

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sluicemcp/sluice/engine/binding"
	httpbinding "github.com/sluicemcp/sluice/engine/binding/http"
	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/wire"
)

// TestRealMCPServer runs the agent with the real HTTP binding against an
// in-process mcp-go Streamable HTTP server (software nobody here wrote).
func TestRealMCPServer(t *testing.T) {
	s := server.NewMCPServer("echo", "1.0.0", server.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("echo", mcp.WithString("message", mcp.Required())),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("echo: " + req.GetString("message", "")), nil
		})
	mcpSrv := httptest.NewServer(server.NewStreamableHTTPServer(s))
	t.Cleanup(mcpSrv.Close)
	b, err := httpbinding.New(httpbinding.Config{URL: mcpSrv.URL + "/mcp"}, httpbinding.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	relay := newFakeRelay(t)
	a, _, _ := startAgent(t, relay, b, func(_ *Config, o *Options) { o.Bindings = map[string]binding.Binding{"main": b} })
	enginetest.WaitFor(t, "ready against the real server", func() bool { ok, _ := a.Ready(); return ok })

	hdr := func(sid string) func(map[string]any) {
		return func(c map[string]any) {
			h := map[string][]string{"Accept": {"application/json, text/event-stream"}, "Content-Type": {"application/json"},
				"Mcp-Protocol-Version": {"2025-11-25"}}
			if sid != "" {
				h["Mcp-Session-Id"] = []string{sid}
			}
			c["headers"] = h
		}
	}
	relay.add(cmd("init", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, hdr("")))
	init := relay.finalFor("init")
	if init.resp.RespCode != 200 || !strings.Contains(string(init.resp.RespJSON), `"serverInfo"`) {
		t.Fatalf("initialize = %d %s", init.resp.RespCode, init.resp.RespJSON)
	}
	sid := ""
	if v := init.resp.RespHeaders["Mcp-Session-Id"]; len(v) == 1 {
		sid = v[0]
	}
	if sid == "" {
		t.Fatalf("initialize returned no Mcp-Session-Id in resp_headers: %v", init.resp.RespHeaders)
	}
	relay.add(cmd("initialized", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr(sid)))
	if p := relay.finalFor("initialized"); p.resp.RespType != wire.RespNotifyAck || p.resp.RespCode != 202 {
		t.Errorf("initialized = %+v", p.resp)
	}
	relay.add(cmd("call", `{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`, hdr(sid)))
	p := relay.finalFor("call")
	var res struct {
		ID     json.RawMessage `json:"id"`
		Result struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"result"`
	}
	if err := json.Unmarshal(p.resp.RespJSON, &res); err != nil || string(res.ID) != `"c-1"` || len(res.Result.Content) != 1 || res.Result.Content[0].Text != "echo: hi" {
		t.Errorf("tools/call = %d %s", p.resp.RespCode, p.resp.RespJSON)
	}
	relay.add(cmd("unknown", `{"jsonrpc":"2.0","id":2,"method":"no/such"}`, hdr(sid)))
	if p := relay.finalFor("unknown"); !strings.Contains(string(p.resp.RespJSON), `-32601`) {
		t.Errorf("unknown method = %d %s", p.resp.RespCode, p.resp.RespJSON)
	}
	relay.add(map[string]any{"request_id": "end", "shard_token": "s", "command_type": "session_termination",
		"headers": map[string][]string{"Mcp-Session-Id": {sid}}})
	if p := relay.finalFor("end"); p.resp.RespType != wire.RespSessionTermination || p.resp.RespCode >= 300 || p.resp.RespJSON != nil {
		t.Errorf("session termination = %+v", p.resp)
	}
}
