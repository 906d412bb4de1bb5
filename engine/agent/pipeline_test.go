package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/logs"
	"github.com/sluicemcp/sluice/engine/wire"
)

// policyStage rejects tools/call of "forbidden", answers "ping" itself, drops
// streamed notifications and tags final responses.
type policyStage struct {
	mu   sync.Mutex
	seen []engine.Message
}

func (s *policyStage) Name() string                                { return "policy" }
func (s *policyStage) Wants(engine.Hook, string) bool              { return true }
func (s *policyStage) Open(context.Context) (engine.Filter, error) { return policyFilter{s}, nil }
func (s *policyStage) Close() error                                { return nil }

type policyFilter struct{ *policyStage }

func (policyFilter) Close() {}

func (s *policyStage) Handle(ctx context.Context, m *engine.Message) (engine.Result, error) {
	s.mu.Lock()
	s.seen = append(s.seen, *m)
	s.mu.Unlock()
	switch {
	case m.Hook == engine.HookRequest && m.Tool == "forbidden":
		return engine.Result{Action: engine.Reject, Status: http.StatusForbidden, Error: &engine.RPCError{Code: -32001, Message: "blocked"}}, nil
	case m.Hook == engine.HookRequest && m.Method == "ping":
		return engine.Result{Action: engine.Respond, Body: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{"from":"plugin"}}`)}, nil
	case m.Hook == engine.HookResponse && m.Notification:
		return engine.Result{Action: engine.Drop}, nil
	case m.Hook == engine.HookResponse:
		return engine.Result{Action: engine.Replace, Body: json.RawMessage(strings.Replace(string(m.Body), `"ok":true`, `"ok":"tagged"`, 1))}, nil
	}
	return engine.Result{}, nil
}

func TestPipeline(t *testing.T) {
	relay := newFakeRelay(t)
	stage := &policyStage{}
	b := &fakeBinding{do: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
		_ = emit(&binding.Reply{Status: 200, Body: json.RawMessage(`{"jsonrpc":"2.0","method":"notifications/progress","params":{}}`)})
		return echo(req, emit)
	}}
	p := engine.NewPipeline(engine.NewChain([]engine.ChainStage{{Stage: stage}}, engine.ChainOptions{}))
	startAgent(t, relay, b, func(_ *Config, o *Options) { o.Pipeline = p })
	relay.add(
		cmd("blocked", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"forbidden"}}`),
		cmd("ping", `{"jsonrpc":"2.0","id":1,"method":"ping"}`),
		cmd("tagged", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}`),
	)
	tests := []struct {
		id   string
		code int
		json string
	}{
		{"blocked", 403, `{"jsonrpc":"2.0","id":7,"error":{"code":-32001,"message":"blocked"}}`},
		{"ping", 200, `{"jsonrpc":"2.0","id":1,"result":{"from":"plugin"}}`},
		{"tagged", 200, `{"jsonrpc":"2.0","id":2,"result":{"ok":"tagged"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			f := relay.finalFor(tc.id)
			if f.resp.RespCode != tc.code || string(f.resp.RespJSON) != tc.json {
				t.Errorf("got %d %s, want %d %s", f.resp.RespCode, f.resp.RespJSON, tc.code, tc.json)
			}
			for _, q := range relay.postsFor(tc.id) {
				if q.resp.RespType == wire.RespJSONRPCNotify {
					t.Error("a dropped notification was posted")
				}
			}
		})
	}
	if n := b.calls.Load(); n != 1 {
		t.Errorf("binding calls = %d, want 1 (reject and respond never reach the server)", n)
	}
	stage.mu.Lock()
	defer stage.mu.Unlock()
	for _, m := range stage.seen {
		if m.Side != engine.SideAgent || m.Tunnel != testTunnel || m.Channel != "main" || m.SessionID != "sess-1" || m.RequestID == "" {
			t.Errorf("envelope = %+v", m)
		}
	}
}

// TestAuditRecords: one audit record per tools/call, naming the tool, the
// outcome, the final status and the plugin whose verdict decided it; none for
// other methods; never the arguments or the result.
func TestAuditRecords(t *testing.T) {
	relay := newFakeRelay(t)
	var buf enginetest.SyncBuffer
	audit := slog.New(slog.NewJSONHandler(&buf, nil))
	p := engine.NewPipeline(engine.NewChain([]engine.ChainStage{{Stage: &policyStage{}}}, engine.ChainOptions{}))
	startAgent(t, relay, &fakeBinding{}, func(_ *Config, o *Options) { o.Pipeline, o.Audit = p, audit })
	relay.add(
		cmd("blocked", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"forbidden","arguments":{"secret":"s3cr3t-arg"}}}`),
		cmd("allowed", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":{"secret":"s3cr3t-arg"}}}`),
		cmd("listing", `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`),
	)
	for _, id := range []string{"blocked", "allowed", "listing"} {
		relay.finalFor(id)
	}
	var recs []map[string]any
	enginetest.WaitFor(t, "two audit records", func() bool {
		recs = nil
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil {
				recs = append(recs, m)
			}
		}
		return len(recs) >= 2
	})
	time.Sleep(50 * time.Millisecond) // a third (wrong) record would show up by now
	if strings.Contains(buf.String(), "s3cr3t-arg") || strings.Contains(buf.String(), "tools/list") {
		t.Fatalf("audit log holds arguments or non-tool-call records:\n%s", buf.String())
	}
	byTool := map[string]map[string]any{}
	for _, r := range recs {
		byTool[r["tool"].(string)] = r
	}
	if len(recs) != 2 || byTool["forbidden"] == nil || byTool["echo"] == nil {
		t.Fatalf("records: %v", recs)
	}
	if r := byTool["forbidden"]; r["plugin"] != "policy" || r["verdict"] != "reject" || r["outcome"] != "mcp_error" || r["status"] != float64(403) {
		t.Errorf("rejected call: %v", r)
	}
	// The stage rewrites every response: the record names it.
	if r := byTool["echo"]; r["plugin"] != "policy" || r["verdict"] != "replace" || r["outcome"] != "ok" || r["status"] != float64(200) || r["request_id"] != "allowed" {
		t.Errorf("allowed call: %v", r)
	}
}

// TestAuditClipsClientValues: a tool name and a session id as long as a
// request allows do not make the audit record as long: both are clipped
// to logs.MaxField bytes.
func TestAuditClipsClientValues(t *testing.T) {
	relay := newFakeRelay(t)
	var buf enginetest.SyncBuffer
	startAgent(t, relay, &fakeBinding{}, func(_ *Config, o *Options) { o.Audit = slog.New(slog.NewJSONHandler(&buf, nil)) })
	long := strings.Repeat("t", 100<<10)
	relay.add(cmd("huge", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"`+long+`"}}`,
		func(c map[string]any) {
			c["headers"] = map[string][]string{"mcp-session-id": {strings.Repeat("s", 60<<10)}}
		}))
	relay.finalFor("huge")
	enginetest.WaitFor(t, "the audit record", func() bool { return strings.Contains(buf.String(), "tool call") })
	var rec map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(buf.String())), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["tool"] != strings.Repeat("t", logs.MaxField)+"…" || rec["session"] != strings.Repeat("s", logs.MaxField)+"…" {
		t.Fatalf("tool %.40q…, session %.40q…: not clipped to %d bytes", rec["tool"], rec["session"], logs.MaxField)
	}
	if n := len(buf.String()); n > 2*1024 {
		t.Fatalf("audit record of %d bytes", n)
	}
}
