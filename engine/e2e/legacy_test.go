package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sluicemcp/sluice/engine/binding"
	httpbinding "github.com/sluicemcp/sluice/engine/binding/http"
)

// startServerEverythingSSE starts the reference "everything" server on the
// deprecated 2024-11-05 HTTP+SSE transport (its sse mode), on 127.0.0.1, and
// returns its SSE endpoint URL and the process.
func startServerEverythingSSE(t testing.TB) (string, *proc) {
	t.Helper()
	addr, p := startServerEverythingMode(t, "sse")
	return "http://" + addr + "/sse", p
}

// legacyHarness runs relay + agent with the legacy HTTP+SSE binding in
// front of url.
func legacyHarness(t *testing.T, url string) *tunnelEnv {
	t.Helper()
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{binding: func(t testing.TB) binding.Binding {
		b, err := httpbinding.NewLegacySSE(httpbinding.LegacyConfig{URL: url}, httpbinding.Options{Logger: testLogger(t, "legacy-binding")})
		if err != nil {
			t.Fatalf("legacy binding: %v", err)
		}
		return b
	}}}})
	return h.tunnel(0)
}

// TestLegacySSEServerTypeScriptClient: an MCP server that only speaks the
// deprecated HTTP+SSE transport (the reference server in its sse mode) works
// behind the tunnel for today's TypeScript SDK client over Streamable HTTP:
// tools, progress before the result, sampling and elicitation answered by
// the client, and the session's end closing the server's stream.
func TestLegacySSEServerTypeScriptClient(t *testing.T) {
	url, server := startServerEverythingSSE(t)
	te := legacyHarness(t, url)
	checkEverythingTSRun(t, runTSClient(t, te.mcpURL, te.clientKey))
	// The client's DELETE closes the binding's stream: the server logs the
	// disconnect of its session (the readiness probe's session too).
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(server.out.String(), "Client Disconnected") < 2 {
		if time.Now().After(deadline) {
			t.Errorf("the server never saw the session's stream close:\n%s", server.out.String())
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLegacySSEServerMCPGoClient: the mcp-go client reaches the same old
// server through the tunnel on the 2025-11-25 session protocol and with its
// default (2026-07-28: server/discover first, which the old server refuses,
// then a fallback to initialize).
func TestLegacySSEServerMCPGoClient(t *testing.T) {
	url, _ := startServerEverythingSSE(t)
	te := legacyHarness(t, url)
	for _, version := range []string{"2025-11-25", ""} {
		t.Run("version="+version, func(t *testing.T) {
			run := runEverythingMCPGo(t, te.mcpURL, te.clientHeaders(), version)
			if run.protocol == "" || !slices.Contains(run.tools, "echo") || run.echo != "Echo: ünïcode ✓ 0" {
				t.Fatalf("through the tunnel: %+v", run)
			}
		})
	}
}

// runEverythingMCPGo initializes an mcp-go client (version "" = its
// default), lists the tools and calls echo on the reference server.
func runEverythingMCPGo(t *testing.T, url string, headers map[string]string, version string) mcpGoRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newMCPGoClient(t, url, headers, version)
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	defer c.Close()
	init, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{ClientInfo: mcp.Implementation{Name: "sluice-e2e", Version: "1"}}})
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	run := mcpGoRun{protocol: init.ProtocolVersion}
	tools, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("list tools: %v", err)
	}
	for _, tl := range tools.Tools {
		run.tools = append(run.tools, tl.Name)
	}
	var echo mcp.CallToolRequest
	echo.Params.Name = "echo"
	echo.Params.Arguments = map[string]any{"message": "ünïcode ✓ 0"}
	res, err := c.CallTool(ctx, echo)
	if err != nil {
		t.Fatalf("call echo: %v", err)
	}
	run.echo = toolText(res)
	return run
}
