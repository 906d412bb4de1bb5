package e2e

import (
	"strings"
	"testing"
)

// TestUnknownSessionIs404ThroughTheTunnel: the go-sdk server answers a call
// in an unknown session with a plain-text 404. The client must see that 404
// (the spec tells it to start a new session on exactly that), not a
// synthesized "the MCP server could not be reached".
func TestUnknownSessionIs404ThroughTheTunnel(t *testing.T) {
	url := startGoEverythingServer(t)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: url}}})
	te := h.tunnel(0)
	hdr := te.clientHeaders()
	hdr["Content-Type"] = "application/json"
	hdr["Accept"] = "application/json, text/event-stream"
	hdr["Mcp-Session-Id"] = "no-such-session"
	hdr["Mcp-Protocol-Version"] = "2025-11-25"
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`)

	directHdr := map[string]string{}
	for k, v := range hdr {
		if k != "Authorization" {
			directHdr[k] = v
		}
	}
	dst, _, _ := rawPost(t, "POST", url, directHdr, body)
	st, _, got := rawPost(t, "POST", te.mcpURL, hdr, body)
	if dst != 404 {
		t.Fatalf("the server itself answered %d, not 404: the test needs another server", dst)
	}
	if st != dst {
		t.Errorf("through the tunnel: %d, directly: %d", st, dst)
	}
	if strings.Contains(string(got), "could not be reached") || strings.Contains(string(got), "tunnel_failure") {
		t.Errorf("the server's answer was replaced by a tunnel failure: %s", got)
	}
}
