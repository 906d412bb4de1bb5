// Package relay is the self-hostable public side of the tunnel (sluice relay).
//
// MCP clients POST JSON-RPC messages to /v1/mcp/{tunnel}; the relay checks the
// caller (client key, OAuth passthrough or public), runs the relay's plugin
// chain, and queues a command per message on the tunnel's bounded queue. An
// agent (sluice run, or OpenAI's tunnel-client) long-polls
// /v1/tunnels/{tunnel}/poll, receives each command exactly once, and posts
// results to /v1/tunnels/{tunnel}/response. The relay streams every
// notification to the waiting client as an SSE event as it arrives and ends
// the exchange with the final response:
//
//	MCP client ──POST /v1/mcp/{id}──▶ auth ▶ chain.Request ▶ queue ──poll──▶ agent
//	MCP client ◀── JSON or SSE ◀── chain.Response ◀── waiter ◀──POST response── agent
//
// Tunnels and keys come from the configuration (read-only) and from a store
// (package store: memory, a file in relay.data-dir, or JetStream key-value)
// that the admin API on the admin listener changes and every replica watches
// (registry.go, admin.go). Keys are scoped (runtime, client, admin), kept as
// SHA-256 hashes, compared in constant time, and failed authentications are
// rate-limited per address and per tunnel (auth.go, authlimit.go).
//
// Messages stay json.RawMessage end to end. The wire protocol is described in
// docs/WIRE.md; decisions and rejected alternatives are in RATIONALE.md.
package relay
