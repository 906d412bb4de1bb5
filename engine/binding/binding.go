// Package binding is how a message reaches an MCP server: over Streamable HTTP
// or the legacy HTTP+SSE transport (http), a supervised child process
// (stdio), or an mcp-go server in the same process (inproc). A Wasm plugin
// that is the server (host.Binding) is one more Binding; this package and
// the agent do not know it is Wasm. Bindings are named channels; "main" is
// the default.
package binding

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/sluicemcp/sluice/engine/wire"
)

// Kind says what a Request asks for.
type Kind uint8

// Request kinds.
const (
	KindJSONRPC            Kind = 1 // deliver one JSON-RPC message
	KindSessionTermination Kind = 2 // end the session named by Mcp-Session-Id
)

// Request is one command for the MCP server.
type Request struct {
	Kind Kind
	// Header holds the forwarded MCP client headers (Mcp-Session-Id,
	// MCP-Protocol-Version, Authorization, …) in canonical form.
	Header http.Header
	// Body is the raw JSON-RPC message for KindJSONRPC.
	Body json.RawMessage
	// Notification is true when Body has no id: the server answers 202.
	Notification bool
	// ID is the raw JSON-RPC id of Body (nil for notifications). A binding uses
	// it to recognise the final response of a stream.
	ID json.RawMessage
}

// Reply is one message from the MCP server.
type Reply struct {
	// Status is the HTTP status of the server's answer (200 for in-process
	// bindings, 202 for an accepted notification, 204 for a closed session).
	Status int
	// Header holds the server's response headers (the agent keeps only the
	// allow-list of WIRE.md).
	Header http.Header
	// Body is one JSON-RPC message, or empty (202, 204).
	Body json.RawMessage
	// Final is true for the message that ends the exchange: the response with
	// the request's id, the 202 for a notification, the session-termination
	// answer. Everything before it is a notification or a server-to-client
	// request, delivered as it arrives.
	Final bool
	// EventID is the SSE event id the server gave this message on a
	// standalone stream (Streamer), "" when none.
	EventID string
}

// Binding delivers requests to one MCP server. Implementations are safe for
// concurrent use.
type Binding interface {
	// Do delivers req and calls emit once per message the server produces, as it
	// arrives, ending with exactly one Final reply — unless Do returns an error.
	// If emit returns an error Do stops and returns it. An error from the server
	// side is a *Error when the binding can say what failed.
	Do(ctx context.Context, req *Request, emit func(*Reply) error) error
	// Info describes the binding for X-Tunnel-MCP-Server-Info.
	Info() Info
	// Close releases the binding's resources.
	Close() error
}

// Prober is implemented by bindings that check the MCP server's readiness
// themselves instead of with an initialize request: a stdio server has one
// session per process, and an initialize from the agent would take it from
// the client. Probe returns nil when the server answers.
type Prober interface {
	Probe(ctx context.Context) error
}

// Info describes a binding for the server-info header.
type Info struct {
	// ProcAffinity is true when requests of one session must reach the same
	// process (stdio and in-process bindings).
	ProcAffinity bool
}

// Error is a failure to get a JSON-RPC answer from the MCP server, classified
// for the tunnel_failure provenance the agent synthesizes. It never holds
// URLs, bodies or secrets in Source/Kind.
type Error struct {
	Source         string // a wire.Source* value
	Kind           string // a transport_error_kind value ("" when none fits)
	UpstreamStatus int    // the server's HTTP status, 0 when none was received
	Err            error  // the underlying error, for logs
}

func (e *Error) Error() string {
	msg := "mcp server: " + e.Source
	if e.Kind != "" {
		msg += " (" + e.Kind + ")"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Failure returns the wire provenance for err. Errors that are not a *Error
// are reported as client_internal.
func Failure(err error) wire.TunnelFailure {
	var be *Error
	if !errors.As(err, &be) {
		return wire.TunnelFailure{Version: 1, Source: wire.SourceClientInternal, TransportErrorKind: "unknown"}
	}
	f := wire.TunnelFailure{Version: 1, Source: be.Source, TransportErrorKind: be.Kind}
	if be.UpstreamStatus != 0 {
		st := be.UpstreamStatus
		f.UpstreamStatus = &st
		f.UpstreamResponseReceived = true
		f.Source = wire.SourceTargetHTTP
	} else if be.Source == wire.SourceProtocol {
		f.UpstreamResponseReceived = true
	}
	return f
}
