package relay

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/logs"
	"github.com/sluicemcp/sluice/engine/wire"
)

// TestAuditToolCalls: with Options.Audit the relay writes one record per
// tools/call — caller, tunnel, tool, verdict, deciding plugin, outcome,
// status, latency — and nothing for other methods; never arguments or
// results.
func TestAuditToolCalls(t *testing.T) {
	var trail enginetest.SyncBuffer
	guard := &fnStage{name: "guard", hooks: map[engine.Hook]bool{engine.HookRequest: true}, fn: func(m *engine.Message) engine.Result {
		switch m.Tool {
		case "forbidden":
			return engine.Result{Action: engine.Reject, Status: 403, Error: &engine.RPCError{Code: -32001, Message: "no"}}
		case "canned":
			return engine.Result{Action: engine.Respond, Body: json.RawMessage(`{"jsonrpc":"2.0","id":3,"result":{}}`)}
		case "masked":
			// Changes the call (its arguments masked) and lets it pass.
			return engine.Result{Action: engine.Replace, Body: json.RawMessage(`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"masked","arguments":{"card":"[masked]"}}}`)}
		}
		return engine.Result{}
	}}
	h := newHarness(t, nil, Options{Pipeline: pipelineOf(guard), Audit: slog.New(slog.NewJSONHandler(&trail, nil))})
	h.connect(tunA, runtimeA)

	// Passed by the chain, answered by the agent.
	got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"private words"}}}`,
		map[string]string{"Mcp-Session-Id": "sess-1"})
	cmd := h.next(tunA, runtimeA)
	h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID,
		RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"secret result"}]}}`), RespCode: 200})
	if r := wait(t, got); r.StatusCode != 200 {
		t.Fatalf("echo: %d", r.StatusCode)
	}
	// Rejected and answered by the chain.
	if r := wait(t, h.clientPost(tunA, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"forbidden"}}`, nil)); r.StatusCode != 403 {
		t.Fatalf("forbidden: %d", r.StatusCode)
	}
	if r := wait(t, h.clientPost(tunA, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"canned"}}`, nil)); r.StatusCode != 200 {
		t.Fatalf("canned: %d", r.StatusCode)
	}
	// Changed by the chain, answered by the agent: the record names who
	// changed it.
	got = h.clientPost(tunA, `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"masked","arguments":{"card":"4111 1111 1111 1111"}}}`, nil)
	cmd = h.next(tunA, runtimeA)
	if strings.Contains(string(cmd.JSONRPC), "4111 1111") {
		t.Fatalf("the agent got the unmasked call: %s", cmd.JSONRPC)
	}
	h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":6,"result":{"content":[]}}`), RespCode: 200})
	if r := wait(t, got); r.StatusCode != 200 {
		t.Fatalf("masked: %d", r.StatusCode)
	}
	// Not tool calls: no record.
	got = h.clientPost(tunA, `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`, nil)
	cmd = h.next(tunA, runtimeA)
	h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":4,"result":{"tools":[]}}`), RespCode: 200})
	wait(t, got)
	if r := wait(t, h.clientPost(tunA, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo"}}`,
		map[string]string{"Authorization": "Bearer wrong"})); r.StatusCode != 401 {
		t.Fatalf("wrong key: %d", r.StatusCode)
	}

	lines := strings.Split(strings.TrimSpace(trail.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 audit records, got %d:\n%s", len(lines), trail.String())
	}
	// The card as sent ("4111" alone also turns up in timestamps and ids).
	if strings.Contains(trail.String(), "private words") || strings.Contains(trail.String(), "secret result") || strings.Contains(trail.String(), "4111 1111") {
		t.Fatalf("the audit trail holds arguments or results:\n%s", trail.String())
	}
	want := []map[string]any{
		{"tool": "echo", "verdict": "continue", "outcome": "ok", "status": 200.0, "session": "sess-1"},
		{"tool": "forbidden", "verdict": "reject", "plugin": "guard", "outcome": "plugin", "status": 403.0},
		{"tool": "canned", "verdict": "respond", "plugin": "guard", "outcome": "plugin", "status": 200.0},
		{"tool": "masked", "verdict": "replace", "plugin": "guard", "outcome": "ok", "status": 200.0},
	}
	for i, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("record %d not JSON: %s", i, line)
		}
		if rec["msg"] != "tool call" || rec["tunnel"] != tunA || rec["channel"] != "main" ||
			rec["caller"] != "alice" || rec["request_id"] == "" {
			t.Errorf("record %d: %s", i, line)
		}
		if _, ok := rec["latency_ms"].(float64); !ok {
			t.Errorf("record %d has no latency: %s", i, line)
		}
		if _, ok := want[i]["plugin"]; !ok && rec["plugin"] != nil {
			t.Errorf("record %d names a plugin that decided nothing: %s", i, line)
		}
		for k, v := range want[i] {
			if rec[k] != v {
				t.Errorf("record %d: %s = %v, want %v (%s)", i, k, rec[k], v, line)
			}
		}
	}
}

// TestAuditClipsClientValues: a tool name as long as the body cap allows and
// a long session id do not make the audit record as long: both are clipped
// to logs.MaxField bytes.
func TestAuditClipsClientValues(t *testing.T) {
	var trail enginetest.SyncBuffer
	h := newHarness(t, nil, Options{Audit: slog.New(slog.NewJSONHandler(&trail, nil))})
	h.connect(tunA, runtimeA)
	long := strings.Repeat("t", 1<<20)
	got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"`+long+`"}}`,
		map[string]string{"Mcp-Session-Id": strings.Repeat("s", 32<<10)})
	cmd := h.next(tunA, runtimeA)
	h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID,
		RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{}}`), RespCode: 200})
	if r := wait(t, got); r.StatusCode != 200 {
		t.Fatalf("call: %d", r.StatusCode)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(trail.String())), &rec); err != nil {
		t.Fatalf("want one record: %v", err)
	}
	if rec["tool"] != strings.Repeat("t", logs.MaxField)+"…" || rec["session"] != strings.Repeat("s", logs.MaxField)+"…" {
		t.Fatalf("tool %.40q…, session %.40q…: not clipped to %d bytes", rec["tool"], rec["session"], logs.MaxField)
	}
	if n := len(trail.String()); n > 2*1024 {
		t.Fatalf("audit record of %d bytes", n)
	}
}
