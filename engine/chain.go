package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Hook says at which point of an exchange a message is seen.
type Hook uint8

// Hooks. The values are part of the plugin ABI (sdk/ABI.md): do not renumber.
const (
	HookRequest      Hook = 1 // a message from the MCP client towards the MCP server
	HookResponse     Hook = 2 // a message from the MCP server towards the MCP client
	HookHTTPResponse Hook = 3 // a plain HTTP response of a relay OAuth route
)

// String returns the hook's configuration name.
func (h Hook) String() string {
	switch h {
	case HookRequest:
		return "request"
	case HookResponse:
		return "response"
	case HookHTTPResponse:
		return "http_response"
	}
	return fmt.Sprintf("hook(%d)", uint8(h))
}

// ParseHook parses a hook's configuration name.
func ParseHook(s string) (Hook, error) {
	switch s {
	case "request":
		return HookRequest, nil
	case "response":
		return HookResponse, nil
	case "http_response":
		return HookHTTPResponse, nil
	}
	return 0, fmt.Errorf("unknown hook %q (want request, response or http_response)", s)
}

// Side says which half of the tunnel runs a chain.
type Side uint8

// Sides.
const (
	SideAgent Side = 1
	SideRelay Side = 2
)

// Message is one framed JSON-RPC message (an HTTP body, one SSE event, one stdio
// line) with its context, as a Stage sees it. A Stage never sees half a document.
type Message struct {
	Hook      Hook
	Side      Side
	Tunnel    string
	Channel   string
	SessionID string
	RequestID string // the tunnel request id (opaque)
	Method    string // JSON-RPC method of the exchange's request ("" when unknown)
	Tool      string // tool name for tools/call
	Caller    string // who is calling: a client-key name or token subject ("" when unknown)
	Status    int    // HTTP status, for responses; 0 for requests
	Header    http.Header
	// Body is the raw JSON-RPC message; for HookHTTPResponse it is the raw HTTP
	// body. Stages must treat it as read-only and return a new slice to change it.
	Body json.RawMessage
	// Notification is true for a JSON-RPC message without an id, or a
	// non-final message of a response stream.
	Notification bool
}

// Action is what a Stage decides for a message.
type Action uint8

// Actions. The values are part of the plugin ABI (sdk/ABI.md): do not renumber.
const (
	Continue Action = 0 // pass the message on unchanged (the cheap path)
	Replace  Action = 1 // pass on Result.Body and/or Result.Header instead
	Respond  Action = 2 // answer a request with Result.Body (a full JSON-RPC response)
	Reject   Action = 3 // answer with the JSON-RPC error Result.Error and Result.Status
	Drop     Action = 4 // drop a notification (only valid for notifications)
)

// String returns the action's name.
func (a Action) String() string {
	switch a {
	case Continue:
		return "continue"
	case Replace:
		return "replace"
	case Respond:
		return "respond"
	case Reject:
		return "reject"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Result is a Stage's answer for one message.
type Result struct {
	Action Action
	// Body replaces the message (Replace) or is the response (Respond). nil
	// with Replace leaves the body unchanged.
	Body json.RawMessage
	// Header, when non-nil with Replace, is the complete new header set.
	Header http.Header
	// Status is the HTTP status for Respond and Reject (0 = 200: MCP clients
	// surface a JSON-RPC error in a 200 response as the tool call's error).
	Status int
	// Error is the JSON-RPC error object for Reject.
	Error *RPCError
}

// RPCError is a JSON-RPC error object.
type RPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// JSON-RPC error codes used by the engine.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// Stage is one configured plugin in a chain. It is long-lived and safe for
// concurrent use; per exchange the chain asks it for a Filter.
type Stage interface {
	// Name identifies the stage in logs and metrics.
	Name() string
	// Wants reports whether the stage needs to see messages of this hook and
	// JSON-RPC method; the chain skips it otherwise (the filter is never opened
	// for an exchange no hook of which it wants).
	Wants(h Hook, method string) bool
	// Open returns the Filter for one exchange. It may pin resources (a plugin
	// instance) until Filter.Close.
	Open(ctx context.Context) (Filter, error)
	// Close releases everything the stage holds. The chain calls it once, after
	// the last exchange using it has closed its filters.
	Close() error
}

// Filter handles the messages of one exchange for one Stage. It is used by one
// goroutine at a time.
type Filter interface {
	// Handle is called once per message the stage wants. An error is a plugin
	// failure, handled by the stage's on_error policy.
	Handle(ctx context.Context, m *Message) (Result, error)
	// Close ends the exchange for this stage.
	Close()
}

// OnError is a stage's policy for plugin failures (traps, timeouts, running out
// of memory, malformed output).
type OnError uint8

// Failure policies.
const (
	FailClosed OnError = 0 // the default: the message is rejected (request) or replaced by -32603 / dropped (response)
	FailOpen   OnError = 1 // the message passes unchanged
)

// ErrPluginFailure wraps every failure a Stage reports for a message so callers
// can tell it from a verdict.
var ErrPluginFailure = errors.New("plugin failure")

// ErrCircuitOpen marks a plugin failure that did not run the plugin: the
// stage's circuit breaker is open after repeated failures, so its failure
// policy applies at once. The chain does not log these one by one (the
// stage logs when its circuit opens and closes).
var ErrCircuitOpen = errors.New("circuit open")

// CircuitBreaker is implemented by a Stage that can stop running its plugin
// after repeated failures (host stages do). Readiness reports list the
// stages whose circuit is open.
type CircuitBreaker interface {
	// CircuitOpen reports whether calls currently get the stage's failure
	// policy without running it.
	CircuitOpen() bool
}
