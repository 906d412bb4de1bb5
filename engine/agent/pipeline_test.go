package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
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
