// Package httpbinding is the Streamable HTTP binding: it POSTs each JSON-RPC
// message to one MCP server URL, splits text/event-stream answers into messages
// as they arrive (notifications and server-to-client requests first, the
// response last), ends sessions with DELETE, fetches the server's OAuth
// protected-resource metadata, and classifies every failure as a
// *binding.Error for the tunnel_failure provenance.
//
//	binding.Request ──POST (forwarded headers, own Host)──▶ MCP server
//	emit(Reply)… ◀── application/json: one final reply
//	             ◀── text/event-stream: one reply per event, final = response with the request's id
//
// LegacySSE reaches a server that speaks only the deprecated 2024-11-05
// HTTP+SSE transport (GET a stream, POST each message to the endpoint it
// names, read every answer on the stream), mapping the tunnel's sessions
// onto its streams.
package httpbinding
