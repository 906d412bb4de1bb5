//go:build wasip1

// Command echobinding is the binding plugin sluice-bench loads with -binding:
// the same echo tool as its mcp-go echo server (the text of the call's
// "message" argument), served by a Wasm plugin inside the agent instead of
// an MCP server behind HTTP. sluice-bench builds it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o echobinding.wasm ./cmd/sluice-bench/testdata/echobinding
package main

import "github.com/sluicemcp/sluice/sdk/binding"

func init() {
	binding.Plugin{
		Name:    "bench-echo",
		Version: "1.0.0",
		Tools: []binding.Tool{{
			Name:        "echo",
			InputSchema: []byte(`{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}`),
			Handler: func(c *binding.Call, args binding.Args) binding.ToolResult {
				m, _ := args.String("message")
				return binding.TextResult(m)
			},
		}},
	}.Register()
}

func main() {}
