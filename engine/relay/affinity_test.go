package relay

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// agentHeaders are an agent instance's poll headers, with proc_affinity on
// main or not.
func agentHeaders(instance string, affinity bool) map[string]string {
	info := `{"version":1,"channels":[{"name":"main"}]}`
	if affinity {
		info = `{"version":1,"channels":[{"name":"main","proc_affinity":true}]}`
	}
	return map[string]string{wire.HeaderClientInstanceID: instance, wire.HeaderServerInfo: info}
}

// initSession runs an initialize through the instance that polls with hdr
// and returns the session id its server (the test) issued.
func initSession(t *testing.T, h *harness, hdr map[string]string, sid string) {
	t.Helper()
	ch := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, nil)
	c := h.nextWith(tunA, runtimeA, hdr)
	st, _ := h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespCode: 200,
		RespType: wire.RespJSONRPCResponse, RespHeaders: map[string][]string{"Mcp-Session-Id": {sid}},
		RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{}}`)})
	if st != 200 {
		t.Fatalf("respond: %d", st)
	}
	if resp := wait(t, ch); resp == nil || resp.StatusCode != 200 || resp.Header.Get("Mcp-Session-Id") != sid {
		t.Fatalf("initialize: %v", resp)
	}
}

// A session created by an agent whose channel has proc_affinity is served
// by that agent alone: another agent polling the tunnel never gets its
// commands; sessions of a channel without it go to any agent.
func TestProcAffinityPinsSessionsToTheirAgent(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a, b := agentHeaders("agent-a", true), agentHeaders("agent-b", true)
	// Both agents poll now and then, so both count as connected.
	h.poll(tunA, runtimeA, 1, time.Millisecond, b)
	initSession(t, h, a, "session-of-a")

	call := h.clientPost(tunA, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}`,
		map[string]string{"Mcp-Session-Id": "session-of-a"})
	time.Sleep(50 * time.Millisecond)
	if st, cmds := h.poll(tunA, runtimeA, 5, 300*time.Millisecond, b); st != 204 {
		t.Fatalf("agent b got a command of a's session: %d %v", st, cmds)
	}
	c := h.nextWith(tunA, runtimeA, a)
	if !strings.Contains(string(c.JSONRPC), `"id":2`) {
		t.Fatalf("agent a got %s", c.JSONRPC)
	}
	h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespCode: 200,
		RespType: wire.RespJSONRPCResponse, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":2,"result":{}}`)})
	if resp := wait(t, call); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("call: %v", resp)
	}

	// Without proc_affinity, a session's commands go to whoever polls.
	free := agentHeaders("agent-c", false)
	initSession(t, h, free, "session-of-c")
	call = h.clientPost(tunA, `{"jsonrpc":"2.0","id":3,"method":"ping"}`, map[string]string{"Mcp-Session-Id": "session-of-c"})
	c = h.nextWith(tunA, runtimeA, b)
	if !strings.Contains(string(c.JSONRPC), `"id":3`) {
		t.Fatalf("agent b got %s", c.JSONRPC)
	}
	h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespCode: 200,
		RespType: wire.RespJSONRPCResponse, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":3,"result":{}}`)})
	wait(t, call)
}

// When the agent that holds a pinned session is lost, the session's queued
// command fails at once (no other agent may run it), and the session's
// later commands go to any agent (whose server answers that it does not
// know the session, so the client starts a new one).
func TestProcAffinityLostAgent(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a, b := agentHeaders("agent-a", true), agentHeaders("agent-b", true)
	h.poll(tunA, runtimeA, 1, time.Millisecond, b)
	initSession(t, h, a, "session-x")
	call := h.clientPost(tunA, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x"}}`,
		map[string]string{"Mcp-Session-Id": "session-x"})
	time.Sleep(50 * time.Millisecond)
	h.r.tunnel(tunA).failHeld("agent-a") // what the lost-agent check does
	resp := wait(t, call)
	if resp == nil {
		t.Fatal("no answer")
	}
	if body := readAll(t, resp); !strings.Contains(body, "agent_lost") {
		t.Fatalf("pinned call of a lost agent: %d %s", resp.StatusCode, body)
	}
	call = h.clientPost(tunA, `{"jsonrpc":"2.0","id":6,"method":"ping"}`, map[string]string{"Mcp-Session-Id": "session-x"})
	c := h.nextWith(tunA, runtimeA, b)
	if !strings.Contains(string(c.JSONRPC), `"id":6`) {
		t.Fatalf("agent b got %s", c.JSONRPC)
	}
	h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespCode: 404, RespType: wire.RespJSONRPCResponse,
		RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":6,"error":{"code":-32001,"message":"session not found"}}`)})
	if resp := wait(t, call); resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("call after the loss: %v", resp)
	}
}
