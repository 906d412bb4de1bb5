package agent

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/wire"
)

// callersSeen returns the Caller of every message stage saw for request id
// rpcID, request first.
func callersSeen(s *policyStage, tool string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.seen {
		if m.Tool == tool {
			out = append(out, m.Caller)
		}
	}
	return out
}

// offeredCaller reports whether poll headers h offered the caller extension.
func offeredCaller(h http.Header) bool {
	return wire.HasExtension(h.Get(wire.HeaderExtensions), wire.ExtCaller)
}

// TestCallerExtension: a relay that advertises the caller extension gets it
// offered back on polls, and the callers it then sends reach the agent's
// stages (request and response) and its audit record; a relay that never
// advertised it is never offered it, and a caller it sends anyway is
// dropped unread, as is a malformed one from a relay that did advertise.
func TestCallerExtension(t *testing.T) {
	for _, tc := range []struct {
		name      string
		advertise bool
		caller    string
		want      string
	}{
		{"advertised", true, "alice", "alice"},
		{"not advertised", false, "mallory", ""},
		{"malformed", true, "eve\nadmin", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := newFakeRelay(t)
			relay.caller.Store(tc.advertise)
			stage := &policyStage{}
			var audit enginetest.SyncBuffer
			p := engine.NewPipeline(engine.NewChain([]engine.ChainStage{{Stage: stage}}, engine.ChainOptions{}))
			startAgent(t, relay, &fakeBinding{}, func(_ *Config, o *Options) {
				o.Pipeline, o.Audit = p, slog.New(slog.NewJSONHandler(&audit, nil))
			})
			waitPolls(t, relay, 2) // the second poll follows the first answer
			relay.add(cmd("c1", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`, withCaller(tc.caller)))
			if got := relay.finalFor("c1"); got.resp.RespCode != 200 {
				t.Fatalf("status %d", got.resp.RespCode)
			}
			seen := callersSeen(stage, "echo")
			if len(seen) != 2 || seen[0] != tc.want || seen[1] != tc.want {
				t.Errorf("stage saw callers %q, want %q on request and response", seen, tc.want)
			}
			var rec map[string]any
			enginetest.WaitFor(t, "audit record", func() bool { return json.Unmarshal([]byte(strings.TrimSpace(audit.String())), &rec) == nil })
			if rec["caller"] != tc.want || rec["channel"] != "main" || rec["verdict"] != "replace" && rec["verdict"] != "continue" {
				t.Errorf("audit record %v, want caller %q", rec, tc.want)
			}
			relay.mu.Lock()
			hdrs := append([]http.Header(nil), relay.pollHdrs...)
			relay.mu.Unlock()
			for i, h := range hdrs {
				if offeredCaller(h) && !tc.advertise {
					t.Errorf("poll %d offered the caller extension to a relay that never advertised it", i)
				}
				if i > 0 && tc.advertise && !offeredCaller(h) {
					t.Errorf("poll %d did not offer the caller extension after the relay advertised it", i)
				}
			}
		})
	}
}

// TestCallerNeedsThisAnswer: a caller is believed only from the answer to a
// poll that offered the extension and that advertises it itself; a relay
// (or something in front of it) that stops advertising gets its claims
// dropped at once.
func TestCallerNeedsThisAnswer(t *testing.T) {
	relay := newFakeRelay(t)
	relay.caller.Store(true)
	stage := &policyStage{}
	p := engine.NewPipeline(engine.NewChain([]engine.ChainStage{{Stage: stage}}, engine.ChainOptions{}))
	startAgent(t, relay, &fakeBinding{}, func(_ *Config, o *Options) { o.Pipeline = p })
	waitPolls(t, relay, 2)
	relay.caller.Store(false)
	// Polls that started before the change were answered with the old
	// header: wait for one that started after it.
	waitPolls(t, relay, relay.polls.Load()+2)
	relay.add(cmd("c1", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"late"}}`, withCaller("alice")))
	relay.finalFor("c1")
	if seen := callersSeen(stage, "late"); len(seen) == 0 || seen[0] != "" {
		t.Errorf("stage saw callers %q from an answer that did not advertise the extension", seen)
	}
}

func waitPolls(t *testing.T, relay *fakeRelay, n int64) {
	t.Helper()
	enginetest.WaitFor(t, "polls", func() bool { return relay.polls.Load() >= n })
}
