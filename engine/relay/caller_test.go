package relay

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/wire"
)

var offerCaller = map[string]string{wire.HeaderExtensions: wire.ExtCaller}

// TestCallerOnCommand: the relay advertises the caller extension; a poll
// that offers it gets each command with the client key's name as its
// caller (tools/call, notifications, DELETE), and a poll that does not
// offer it never sees the field. The relay's own response stage sees the
// caller too.
func TestCallerOnCommand(t *testing.T) {
	var mu sync.Mutex
	var respCallers []string
	tap := &fnStage{name: "tap", hooks: map[engine.Hook]bool{engine.HookResponse: true}, fn: func(m *engine.Message) engine.Result {
		mu.Lock()
		respCallers = append(respCallers, m.Caller)
		mu.Unlock()
		return engine.Result{}
	}}
	h := newHarness(t, nil, Options{Pipeline: pipelineOf(tap)})
	resp := h.do("GET", "/v1/tunnels/"+tunA, nil, map[string]string{"Authorization": "Bearer " + runtimeA})
	resp.Body.Close()
	if !wire.HasExtension(resp.Header.Get(wire.HeaderExtensions), wire.ExtCaller) {
		t.Fatalf("the relay does not advertise the caller extension: %q", resp.Header.Get(wire.HeaderExtensions))
	}
	h.connect(tunA, runtimeA)

	// Offered: the caller is on the command.
	got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`, nil)
	raw := h.nextRawWith(tunA, runtimeA, offerCaller)
	var c wire.Command
	_ = json.Unmarshal(raw, &c)
	if c.Caller != "alice" {
		t.Fatalf("offered poll: caller %q, want alice: %s", c.Caller, raw)
	}
	h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{}}`), RespCode: 200})
	wait(t, got)
	mu.Lock()
	if len(respCallers) != 1 || respCallers[0] != "alice" {
		t.Errorf("the relay's response stage saw callers %q", respCallers)
	}
	mu.Unlock()

	// Not offered: no caller field at all, though the command had one.
	got = h.clientPost(tunA, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}`, nil)
	raw = h.nextRaw(tunA, runtimeA)
	if strings.Contains(string(raw), `"caller"`) {
		t.Fatalf("a poll that did not offer the extension got a caller: %s", raw)
	}
	_ = json.Unmarshal(raw, &c)
	h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":2,"result":{}}`), RespCode: 200})
	wait(t, got)

	// DELETE carries it as well.
	del := h.client(t.Context(), "DELETE", tunA, "", map[string]string{"Mcp-Session-Id": "s1"}, nil)
	c = h.nextWith(tunA, runtimeA, offerCaller)
	if c.CommandType != wire.CommandSessionTermination || c.Caller != "alice" {
		t.Fatalf("DELETE: %+v", c)
	}
	h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespCode: 204, RespType: wire.RespSessionTermination})
	wait(t, del)
}

// TestCallerPublicModeEmpty: in public mode nobody is identified: no
// caller travels even to an agent that offers the extension.
func TestCallerPublicModeEmpty(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Tunnels[0].AuthMode = AuthPublic }, Options{})
	h.connect(tunA, runtimeA)
	got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Authorization": ""})
	raw := h.nextRawWith(tunA, runtimeA, offerCaller)
	if strings.Contains(string(raw), `"caller"`) {
		t.Fatalf("public mode command carries a caller: %s", raw)
	}
	var c wire.Command
	_ = json.Unmarshal(raw, &c)
	h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{}}`), RespCode: 200})
	wait(t, got)
}

// TestClientKeyNameMustTravel: a client-key name that could not travel as a
// caller is a configuration error, named by its field.
func TestClientKeyNameMustTravel(t *testing.T) {
	cfg := baseConfig("http://127.0.0.1:1")
	cfg.Tunnels[0].ClientKeys[0].Name = "alice\nadmin"
	_, err := New(cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), "client-keys[0].name") {
		t.Fatalf("New = %v", err)
	}
}
