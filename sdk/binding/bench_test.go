package binding_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/binding"
)

// BenchmarkHandle measures one tools/call of the echo tool natively (the
// guest runs the same code several times slower): the envelope decoded,
// the request's members read, the 1 KiB argument unquoted and the reply
// appended, for a 2025-era request and a 2026-07-28 one (whose _meta is
// read and whose result is stamped).
func BenchmarkHandle(b *testing.B) {
	p := testPlugin()
	msg, _ := json.Marshal(strings.Repeat("The deployment finished at 10:30; see \"runbook\" §3.\n", 20)[:1024])
	for _, era := range []struct{ name, meta string }{
		{"legacy", ""},
		{"modern", modernMeta + ","},
	} {
		body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{` + era.meta + `"name":"echo","arguments":{"message":` + string(msg) + `}}}`
		env := sdk.AppendEnvelope(nil, &sdk.Message{Hook: binding.HookCall, Side: sdk.SideAgent, Method: "tools/call", Tool: "echo", Body: []byte(body)})
		b.Run(era.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				ans, err := p.Handle(env)
				if err != nil || len(ans) < len(body)/2 {
					b.Fatalf("answer %d bytes, %v", len(ans), err)
				}
			}
		})
	}
}
