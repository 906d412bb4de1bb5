package wasmtest_test

import (
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/host"
	"github.com/sluicemcp/sluice/sdk/sdktest/wasmtest"
)

// TestBindingThroughHost builds a binding plugin written with sdk/binding
// and runs it through the real host: both protocol eras and a tool call
// with progress.
func TestBindingThroughHost(t *testing.T) {
	path := wasmtest.Build(t, "../../../host/testdata/gobinding")
	b := wasmtest.LoadBinding(t, host.BindingConfig{Plugin: host.PluginConfig{Path: path}})
	init := wasmtest.Call(t, b, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, nil)
	if body := string(init[0].Body); !strings.Contains(body, `"protocolVersion":"2025-11-25"`) {
		t.Fatalf("initialize: %s", body)
	}
	disc := wasmtest.Call(t, b, `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`, nil)
	if body := string(disc[0].Body); !strings.Contains(body, `"supportedVersions":["2026-07-28"`) {
		t.Fatalf("server/discover: %s", body)
	}
	rs := wasmtest.Call(t, b, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"progress","arguments":{"steps":2},"_meta":{"progressToken":"p"}}}`, nil)
	if len(rs) != 3 || !strings.Contains(string(rs[2].Body), `"text":"done"`) {
		t.Fatalf("progress: %d replies, final %s", len(rs), rs[len(rs)-1].Body)
	}
	if rs := wasmtest.Call(t, b, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); rs[0].Status != 202 {
		t.Fatalf("notification: %d", rs[0].Status)
	}
}
