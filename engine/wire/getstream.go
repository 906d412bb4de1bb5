package wire

import "time"

// Sluice's get-stream extension (docs/wire.md, engine/relay/RATIONALE.md):
// an MCP client's standalone GET stream, carried between a Sluice relay and
// a Sluice agent.
//
// Both sides must say so. The relay advertises ExtGetStream in
// HeaderExtensions on its agent-API answers, as it does ExtResponseBatch;
// an agent that can open GET streams and has seen that advertisement offers
// it back with HeaderExtensions: get-stream on its polls. The relay hands a
// CommandGetStream only to a poll that carried the offer, and answers a
// client's GET with 405 while no connected agent offers it.
//
// A get_stream command has the common fields and the client's forwarded
// headers (Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, …), no
// jsonrpc; its response_timeout bounds opening the stream, not the stream.
// The agent answers with ordinary response objects:
//
//   - opened: jsonrpc_notify, resp_json null, resp_code 200, resp_headers the
//     MCP server's (Content-Type text/event-stream, Mcp-Session-Id, …);
//   - each server message: jsonrpc_notify with the message in resp_json and
//     its SSE event id, if any, in resp_headers Last-Event-Id (an event that
//     only moves the id travels with resp_json null);
//   - a heartbeat at least every StreamHeartbeat while the stream is open:
//     jsonrpc_notify, resp_json null, no Last-Event-Id;
//   - the end: one jsonrpc_response. Before the stream opened it carries the
//     MCP server's answer (405 when the server has no GET stream, 429 when
//     the agent's stream limit is reached, a -32603 tunnel failure when the
//     server could not be reached); after, it closes the client's stream.
//
// A 404 pending_request_not_found to any of them means the MCP client went
// away (or the relay restarted): the agent closes its upstream GET.
const (
	// ExtGetStream names the get-stream extension.
	ExtGetStream = "get-stream"
	// CommandGetStream is the command type of a standalone GET stream.
	CommandGetStream = "get_stream"
	// StreamHeartbeat is the longest an agent stays silent on an open
	// stream: it posts a heartbeat when nothing else went out for that long.
	StreamHeartbeat = 15 * time.Second
	// StreamIdleTimeout is how long a relay keeps a client's stream open
	// without hearing from the agent (a lost agent): three heartbeats.
	StreamIdleTimeout = 3 * StreamHeartbeat
	// HeaderLastEventID carries a stream message's SSE event id in
	// resp_headers (in canonical form, as AllowedResponseHeaders has it).
	HeaderLastEventID = "Last-Event-Id"
)

// ValidEventID reports whether id can be written as an SSE id field: no line
// break and no NUL (an id with NUL is ignored by SSE readers), and at most
// 1024 bytes.
func ValidEventID(id string) bool {
	if len(id) > 1024 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}
