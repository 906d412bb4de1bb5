package wasmtest_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/sdktest/wasmtest"
)

func TestEchoPluginThroughHost(t *testing.T) {
	path := wasmtest.Build(t, "./testdata/echo")
	req := sdk.Message{Method: "tools/call", Tool: "t1", Caller: "alice",
		Headers: sdk.Headers{{Name: "X-In", Value: "v"}},
		Body:    json.RawMessage(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}`)}
	tests := []struct {
		mode  string
		check func(t *testing.T, r engine.Result)
	}{
		{"", func(t *testing.T, r engine.Result) {
			if r.Action != engine.Continue {
				t.Fatalf("action %v", r.Action)
			}
		}},
		{"reject", func(t *testing.T, r engine.Result) {
			if r.Action != engine.Reject || r.Status != 403 || r.Error == nil || r.Error.Code != -32001 || r.Error.Message != "denied t1" {
				t.Fatalf("got %+v %+v", r, r.Error)
			}
		}},
		{"replace", func(t *testing.T, r engine.Result) {
			if r.Action != engine.Replace || !strings.Contains(string(r.Body), `"name":"y"`) {
				t.Fatalf("got %v %s", r.Action, r.Body)
			}
		}},
		{"headers", func(t *testing.T, r engine.Result) {
			if r.Action != engine.Replace || r.Header.Get("X-Echo") != "v|alice" || r.Header.Get("X-In") != "v" {
				t.Fatalf("got %v %v", r.Action, r.Header)
			}
		}},
	}
	for _, tt := range tests {
		t.Run("mode="+tt.mode, func(t *testing.T) {
			r, err := wasmtest.Run(t, path, map[string]any{"mode": tt.mode}, req)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
		})
	}
	t.Run("kv persists across calls", func(t *testing.T) {
		st := wasmtest.Load(t, path, map[string]any{"mode": "kv"})
		var last string
		for range 3 {
			r, err := wasmtest.Handle(t, st, req)
			if err != nil {
				t.Fatal(err)
			}
			last = r.Header.Get("X-Count")
		}
		if last != "+++" {
			t.Fatalf("X-Count = %q", last)
		}
	})
	t.Run("drop notification", func(t *testing.T) {
		r, err := wasmtest.Run(t, path, nil, sdk.Message{Hook: sdk.HookResponse, Notification: true, Status: 200,
			Body: json.RawMessage(`{"jsonrpc":"2.0","method":"notifications/progress"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if r.Action != engine.Drop {
			t.Fatalf("action %v", r.Action)
		}
	})
	t.Run("many calls (GC path)", func(t *testing.T) {
		st := wasmtest.Load(t, path, map[string]any{"mode": "headers"})
		for i := range 2500 {
			if _, err := wasmtest.Handle(t, st, req); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
	})
}
