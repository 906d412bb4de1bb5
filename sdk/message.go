package sdk

import (
	"strings"
)

// Hook says at which point of an exchange a message is seen. The values are
// part of the ABI. It mirrors engine.Hook on purpose: sdk is compiled into
// guests and must not pull in the engine (net/http and all); host's
// TestSDKMirrorsEngine keeps the two in step.
type Hook uint8

// Hooks.
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
	return "unknown"
}

// Side says which half of the tunnel runs the chain.
type Side uint8

// Sides.
const (
	SideAgent Side = 1 // sluice run, inside the private network
	SideRelay Side = 2 // sluice relay, the public side
)

// String returns the side's name.
func (s Side) String() string {
	if s == SideRelay {
		return "relay"
	}
	return "agent"
}

// Header is one header line. A header with several values appears several
// times in Headers.
type Header struct {
	Name  string // canonical form, e.g. Mcp-Session-Id
	Value string
}

// Headers are a message's HTTP headers in the order the host sent them.
type Headers []Header

// Get returns the first value of the header name (case-insensitive), or "".
func (h Headers) Get(name string) string {
	for i := range h {
		if strings.EqualFold(h[i].Name, name) {
			return h[i].Value
		}
	}
	return ""
}

// Has reports whether the header name is present (case-insensitive).
func (h Headers) Has(name string) bool {
	for i := range h {
		if strings.EqualFold(h[i].Name, name) {
			return true
		}
	}
	return false
}

// Values returns every value of the header name (case-insensitive), in order.
func (h Headers) Values(name string) []string {
	var vs []string
	for i := range h {
		if strings.EqualFold(h[i].Name, name) {
			vs = append(vs, h[i].Value)
		}
	}
	return vs
}

// Message is one framed JSON-RPC message with its context, as a plugin sees it.
//
// Every string, Headers and Body are views into the envelope buffer the host
// wrote: they are valid only until the handler returns, because the host reuses
// the buffer for the next call. Copy what you keep (Clone, strings.Clone,
// bytes.Clone). Treat Body as read-only.
type Message struct {
	Hook         Hook
	Side         Side
	Notification bool // no JSON-RPC id, or a non-final message of a response stream
	Status       int  // HTTP status for responses; 0 for requests
	Tunnel       string
	Channel      string
	SessionID    string
	RequestID    string // the tunnel request id (opaque)
	Method       string // JSON-RPC method of the exchange's request ("" when unknown)
	Tool         string // tool name for tools/call
	Caller       string // client-key name or token subject ("" when unknown)
	Headers      Headers
	// Body is the raw JSON-RPC message (for HookHTTPResponse the raw HTTP body).
	// It is a zero-copy view, valid only during the call.
	Body []byte
}

// Clone returns a deep copy of m that stays valid after the handler returns.
func (m *Message) Clone() *Message {
	c := *m
	c.Tunnel = strings.Clone(m.Tunnel)
	c.Channel = strings.Clone(m.Channel)
	c.SessionID = strings.Clone(m.SessionID)
	c.RequestID = strings.Clone(m.RequestID)
	c.Method = strings.Clone(m.Method)
	c.Tool = strings.Clone(m.Tool)
	c.Caller = strings.Clone(m.Caller)
	if m.Headers != nil {
		c.Headers = make(Headers, len(m.Headers))
		for i, h := range m.Headers {
			c.Headers[i] = Header{Name: strings.Clone(h.Name), Value: strings.Clone(h.Value)}
		}
	}
	if m.Body != nil {
		c.Body = append([]byte(nil), m.Body...)
	}
	return &c
}
