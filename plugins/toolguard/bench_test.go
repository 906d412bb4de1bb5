package toolguard

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/sdk"
)

// BenchmarkResult measures the check of a 1 KiB tools/call result
// natively (the guest runs the same code several times slower): "x" is one
// repeated letter, "prose" log-like text with dates, URLs and capitals.
func BenchmarkResult(b *testing.B) {
	g, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range []struct{ name, text string }{
		{"x", strings.Repeat("x", 1024)},
		{"prose", strings.Repeat("The deployment of api-gateway v2.14.3 finished at 2026-05-01T10:30:00Z on node-17; see https://docs.example.com/runbooks/Gateway?tab=3 (ticket OPS-4412, 99.95% SLO, 3 retries). ", 6)[:1024]},
	} {
		t, _ := json.Marshal(p.text)
		m := &sdk.Message{Hook: sdk.HookResponse, Method: "tools/call", Tool: "echo", Status: 200, Side: sdk.SideAgent,
			Body: []byte(`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":` + string(t) + `}],"isError":false}}`)}
		b.Run(p.name, func(b *testing.B) {
			b.SetBytes(int64(len(m.Body)))
			for b.Loop() {
				if r := g.onToolsCall(m); r.Action != sdk.ActionContinue {
					b.Fatal(r.Action)
				}
			}
		})
	}
}
