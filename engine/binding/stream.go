package binding

import (
	"context"
	"net/http"
)

// Streamer is implemented by bindings that can open the MCP server's
// standalone GET stream, the channel of server-initiated messages
// (sampling, elicitation, roots requests, list-changed notifications) of
// the 2025 protocol revisions.
type Streamer interface {
	// Stream opens the stream with the forwarded client headers in header
	// (Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Authorization,
	// …) and emits, in order:
	//
	//   - when the server opens the stream: one non-final Reply with the
	//     server's status and headers and no body;
	//   - each message as it arrives, non-final, with its SSE event id in
	//     EventID (an event that only carries an id has no body);
	//   - when the server ends the stream, or answers anything but an
	//     event stream (405 from a server without one, 404 for an unknown
	//     session, …): one Final Reply with the status, the headers and the
	//     body when it is a JSON object.
	//
	// It returns when the Final reply was emitted, when emit fails (with
	// emit's error), or with a *Error when the stream breaks or cannot be
	// opened. Cancelling ctx closes the upstream stream.
	Stream(ctx context.Context, header http.Header, emit func(*Reply) error) error
}
