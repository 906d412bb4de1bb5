// Package engine is the tunnel, both ends, and the plugin-chain contract. It
// knows nothing about Wasm: the host package implements Stage.
//
// The flow of one MCP exchange:
//
//	MCP client ──POST /v1/mcp/{tunnel}──▶ relay ──(relay chain: requests down)──▶ queue
//	                                                                             │ long-poll
//	MCP server ◀── binding ◀──(agent chain: requests down)◀── agent ◀────────────┘
//	MCP server ──▶ binding ──▶(agent chain: each message up)──▶ agent ──POST response──▶ relay
//	MCP client ◀── SSE event / JSON body ◀──(relay chain: each message up)◀── relay
//
// Subpackages: wire (control-plane types), agent (sluice run), relay (sluice
// relay), binding (how messages reach the MCP server).
package engine
