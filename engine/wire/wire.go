// Package wire holds the types of the Secure MCP Tunnel control-plane protocol that
// the agent (sluice run) and the relay (sluice relay) exchange, and the small
// parsers both halves share. It is wire-compatible with OpenAI's hosted tunnel
// service; see docs/wire.md and the OpenAPI contract it is tested against.
//
// JSON-RPC payloads travel as json.RawMessage: they are never decoded into a map
// and re-encoded, so ids, key order and numbers survive byte for byte.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"
)

// Command types carried in Command.CommandType.
const (
	CommandJSONRPC            = "jsonrpc"
	CommandSessionTermination = "session_termination"
	// CommandOAuthDiscovery asks the agent to fetch the MCP server's OAuth
	// protected-resource metadata (RFC 9728) from inside the network. It has
	// only the common fields; the agent answers RespOAuthDiscovery. OpenAI's
	// agent and its mock of the hosted service use it; the published OpenAPI
	// contract does not list it yet.
	CommandOAuthDiscovery = "oauth_discovery"
)

// Response payload types carried in Response.RespType.
const (
	RespJSONRPCResponse    = "jsonrpc_response"
	RespJSONRPCNotify      = "jsonrpc_notify"
	RespNotifyAck          = "notify_ack"
	RespSessionTermination = "session_termination_response"
	// RespOAuthDiscovery answers CommandOAuthDiscovery: resp_code is the
	// metadata fetch's HTTP status, resp_json the document as fetched (or
	// null), resp_headers that fetch's headers, unfiltered.
	RespOAuthDiscovery = "oauth_discovery_response"
)

// IsAckType reports whether responses of type t acknowledge without a
// payload: they carry neither resp_json nor resp_headers (WIRE.md; OpenAI's
// mock service rejects an acknowledgement with "resp_json": null).
func IsAckType(t string) bool { return t == RespNotifyAck || t == RespSessionTermination }

// DefaultChannel is the channel a command without one belongs to.
const DefaultChannel = "main"

// MaxPollLimit is the largest limit a poll may ask for.
const MaxPollLimit = 25

// Header names used on the control plane.
const (
	HeaderClientName       = "X-Tunnel-Client-Name"
	HeaderClientVersion    = "X-Tunnel-Client-Version"
	HeaderClientInstanceID = "X-Tunnel-Client-Instance-Id"
	HeaderServerInfo       = "X-Tunnel-MCP-Server-Info"
	HeaderShardToken       = "X-Tunnel-Shard-Token"
	HeaderClientRequestID  = "X-Client-Request-Id"
)

// Error codes of the APIErrorBody.code schema that Sluice produces or reacts to.
const (
	CodeInvalidChannelFormat     = "invalid_channel_format"
	CodeInvalidJSONPayload       = "invalid_json_payload"
	CodeInvalidTunnelIDFormat    = "invalid_tunnel_id_format"
	CodeMissingMCPSessionID      = "missing_mcp_session_id"
	CodePendingRequestNotFound   = "pending_request_not_found"
	CodeRateLimitExceeded        = "rate_limit_exceeded"
	CodeRequestBodyTooLarge      = "request_body_too_large"
	CodeTunnelClientNotConnected = "tunnel_client_not_connected"
	CodeTunnelQueueFull          = "tunnel_queue_full"
	CodeTunnelRequestMismatch    = "tunnel_request_mismatch"
	CodeTunnelTransportUnavail   = "tunnel_transport_unavailable"
	CodeTunnelUseForbidden       = "tunnel_use_forbidden"
	CodeTunnelMissingPrincipals  = "tunnel_missing_principals"
)

// Command is one unit of work handed to an agent by a poll.
// Unknown fields are ignored when decoding.
type Command struct {
	RequestID       string              `json:"request_id"`
	ShardToken      string              `json:"shard_token"`
	CommandType     string              `json:"command_type"`
	Channel         string              `json:"channel,omitempty"`
	CreatedAt       string              `json:"created_at"`
	Headers         map[string][]string `json:"headers"`
	ResponseTimeout *string             `json:"response_timeout,omitempty"`
	JSONRPC         json.RawMessage     `json:"jsonrpc,omitempty"`
	// Caller names who is calling (a client-key name or a verified token
	// subject): the caller extension (caller.go). Empty when not carried.
	Caller string `json:"caller,omitempty"`
	// OAuthAS is the request of a CommandOAuthAS (the oauth-as extension,
	// oauthas.go).
	OAuthAS *ASRequest `json:"oauth_as,omitempty"`
}

// PollResponse is the 200 body of GET /v1/tunnels/{id}/poll.
type PollResponse struct {
	Commands []Command `json:"commands"`
}

// Response is the body of POST /v1/tunnels/{id}/response: one result or
// notification for one command. RespJSON is the raw JSON-RPC object, or nil
// (absent or null on the wire); acknowledgements (IsAckType) carry neither
// RespJSON nor RespHeaders.
type Response struct {
	RequestID   string              `json:"request_id"`
	Channel     string              `json:"channel,omitempty"`
	RespJSON    json.RawMessage     `json:"resp_json,omitempty"`
	RespHeaders map[string][]string `json:"resp_headers,omitempty"`
	RespCode    int                 `json:"resp_code"`
	RespType    string              `json:"resp_type"`
}

// Final reports whether a response of this type ends its command.
func (r *Response) Final() bool { return IsFinalType(r.RespType) }

// IsFinalType reports whether resp_type t ends a command. The empty type
// defaults to jsonrpc_response, which is final.
func IsFinalType(t string) bool { return t != RespJSONRPCNotify }

// Ack is the 200 body of a response POST.
type Ack struct {
	Status string `json:"status"`
}

// TunnelMetadata is the body of GET /v1/tunnels/{id}.
type TunnelMetadata struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
}

// APIError is the OpenAI-style error envelope {"error":{...}}.
type APIError struct {
	Error APIErrorBody `json:"error"`
}

// APIErrorBody is the inner object of APIError.
type APIErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// NewAPIError builds an error envelope with the given code.
func NewAPIError(typ, code, msg string) APIError {
	c := code
	return APIError{Error: APIErrorBody{Message: msg, Type: typ, Code: &c}}
}

// TunnelFailure is error.data.tunnel_failure of a synthesized -32603 error: the
// provenance of a failure the agent could not recover a JSON-RPC error for.
// It never carries URLs, bodies, exception text or secrets.
type TunnelFailure struct {
	Version                  int    `json:"version"`
	Source                   string `json:"source"`
	UpstreamResponseReceived bool   `json:"upstream_response_received"`
	UpstreamStatus           *int   `json:"upstream_status,omitempty"`
	TransportErrorKind       string `json:"transport_error_kind,omitempty"`
}

// Tunnel failure sources.
const (
	SourceTargetHTTP      = "target_http"
	SourceDNS             = "dns"
	SourceTLS             = "tls"
	SourceConnect         = "connect"
	SourceTransportClosed = "transport_closed"
	SourceTimeout         = "timeout"
	SourceProtocol        = "protocol"
	SourceClientInternal  = "client_internal"
)

// ValidTunnelID reports whether id has the form tunnel_ + 32 lowercase alnum
// (^tunnel_[a-z0-9]{32}$). It runs on every request, so no regexp.
func ValidTunnelID(id string) bool {
	return len(id) == 39 && id[:7] == "tunnel_" && all(id[7:], func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' })
}

// ValidChannel reports whether c is a valid channel name (^[a-z0-9_-]{1,64}$).
func ValidChannel(c string) bool {
	return len(c) >= 1 && len(c) <= 64 && all(c, func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' })
}

// ValidKey reports whether k has the character set runtime keys must have
// (^[0-9A-Za-z_-]+$).
func ValidKey(k string) bool {
	return k != "" && all(k, func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	})
}

func all(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// ValidSemver reports whether v is a semantic version (semver.org 2.0.0:
// MAJOR.MINOR.PATCH with optional -prerelease and +build, no leading v),
// what X-Tunnel-Client-Version carries.
func ValidSemver(v string) bool {
	core, build, hasBuild := cutAny(v, '+')
	if hasBuild && !dotIdents(build, false) {
		return false
	}
	core, pre, hasPre := cutAny(core, '-')
	if hasPre && !dotIdents(pre, true) {
		return false
	}
	parts := 0
	for p := range splitDots(core) {
		parts++
		if p == "" || len(p) > 1 && p[0] == '0' || !all(p, isDigit) {
			return false
		}
	}
	return parts == 3
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func cutAny(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func splitDots(s string) func(func(string) bool) {
	return func(yield func(string) bool) {
		start := 0
		for i := 0; i <= len(s); i++ {
			if i == len(s) || s[i] == '.' {
				if !yield(s[start:i]) {
					return
				}
				start = i + 1
			}
		}
	}
}

// dotIdents checks dot-separated semver identifiers ([0-9A-Za-z-]+);
// numeric prerelease identifiers have no leading zero.
func dotIdents(s string, pre bool) bool {
	for id := range splitDots(s) {
		if id == "" || !all(id, func(c byte) bool {
			return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || c == '-'
		}) {
			return false
		}
		if pre && len(id) > 1 && id[0] == '0' && all(id, isDigit) {
			return false
		}
	}
	return true
}

// ErrMalformedTimeout is returned by ParseResponseTimeout for a value that is not
// ^[0-9]+(ns|us|ms|s|m|h)$ or overflows.
var ErrMalformedTimeout = errors.New("malformed response_timeout")

// ParseResponseTimeout parses a response_timeout value. It accepts exactly
// ^[0-9]+(ns|us|ms|s|m|h)$ (one unit, no sign, no fraction) and rejects values
// that overflow a time.Duration.
func ParseResponseTimeout(s string) (time.Duration, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i == len(s) {
		return 0, ErrMalformedTimeout
	}
	var unit time.Duration
	switch s[i:] {
	case "ns":
		unit = time.Nanosecond
	case "us":
		unit = time.Microsecond
	case "ms":
		unit = time.Millisecond
	case "s":
		unit = time.Second
	case "m":
		unit = time.Minute
	case "h":
		unit = time.Hour
	default:
		return 0, ErrMalformedTimeout
	}
	n, err := strconv.ParseUint(s[:i], 10, 63)
	if err != nil {
		return 0, ErrMalformedTimeout
	}
	if n > uint64(1<<63-1)/uint64(unit) {
		return 0, ErrMalformedTimeout
	}
	return time.Duration(n) * unit, nil
}

// FormatResponseTimeout renders d in the wire form, in milliseconds when exact.
func FormatResponseTimeout(d time.Duration) string {
	if d%time.Millisecond == 0 {
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
	return strconv.FormatInt(int64(d), 10) + "ns"
}

// DecodePoll decodes a poll body. A command that cannot be decoded does not stop
// the others: it is returned in bad with the error, so the caller can log it and,
// when a request_id could be recovered, answer it.
func DecodePoll(body []byte) (cmds []Command, bad []BadCommand, err error) {
	cmds, bad, err = decodePollFast(body)
	if err == nil {
		return cmds, bad, nil
	}
	if err != errFallback {
		return nil, nil, fmt.Errorf("wire: decode poll body: %w", err)
	}
	return decodePollSlow(body)
}

// decodePollSlow is DecodePoll with encoding/json, for the rare forms the
// fast codec defers (escaped or case-folded keys).
func decodePollSlow(body []byte) (cmds []Command, bad []BadCommand, err error) {
	var raw struct {
		Commands []json.RawMessage `json:"commands"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, nil, fmt.Errorf("wire: decode poll body: %w", err)
	}
	cmds = make([]Command, 0, len(raw.Commands))
	for _, r := range raw.Commands {
		var c Command
		if err := json.Unmarshal(r, &c); err != nil {
			var id struct {
				RequestID  string `json:"request_id"`
				ShardToken string `json:"shard_token"`
			}
			_ = json.Unmarshal(r, &id)
			bad = append(bad, BadCommand{RequestID: id.RequestID, ShardToken: id.ShardToken, Err: err})
			continue
		}
		if err := c.Validate(); err != nil {
			bad = append(bad, BadCommand{RequestID: c.RequestID, ShardToken: c.ShardToken, Channel: c.Channel, Err: err})
			continue
		}
		if c.Channel == "" {
			c.Channel = DefaultChannel
		}
		cmds = append(cmds, c)
	}
	return cmds, bad, nil
}

// BadCommand is a polled command that could not be decoded or validated.
type BadCommand struct {
	RequestID  string
	ShardToken string
	Channel    string
	Err        error
}

// Validate checks the fields every command needs. Unknown command types are
// valid here: the agent logs and skips them.
func (c *Command) Validate() error {
	switch {
	case c.RequestID == "":
		return errors.New("command without request_id")
	case c.Channel != "" && !ValidChannel(c.Channel):
		return fmt.Errorf("command %q: invalid channel", c.RequestID)
	case c.CommandType == CommandJSONRPC:
		j := bytes.TrimSpace(c.JSONRPC)
		if len(j) == 0 || j[0] != '{' {
			return fmt.Errorf("command %q: jsonrpc is not an object", c.RequestID)
		}
	case c.CommandType == CommandOAuthAS:
		a := c.OAuthAS
		if a == nil || !ValidASEndpoint(a.Endpoint) || (a.Method != "GET" && a.Method != "POST") || len(a.Body) > MaxOAuthASBody {
			return fmt.Errorf("command %q: oauth_as must name a known endpoint, GET or POST, and a body of at most %d bytes", c.RequestID, MaxOAuthASBody)
		}
	}
	return nil
}

// AllowedResponseHeaders are the MCP server response headers an agent keeps in
// resp_headers, in canonical form.
var AllowedResponseHeaders = []string{
	"Content-Type",
	"Mcp-Session-Id",
	"Mcp-Protocol-Version",
	"Last-Event-Id",
	"Access-Control-Expose-Headers",
	"Www-Authenticate",
}

// FilterResponseHeaders keeps only AllowedResponseHeaders, minus empty values and
// anything the Connection header names.
func FilterResponseHeaders(h http.Header) map[string][]string {
	out := make(map[string][]string, 4)
	var conn []string
	for _, v := range h.Values("Connection") {
		conn = append(conn, splitTokens(v)...)
	}
	for _, name := range AllowedResponseHeaders {
		vs := h.Values(name)
		if len(vs) == 0 {
			continue
		}
		skip := false
		for _, c := range conn {
			if http.CanonicalHeaderKey(c) == name {
				skip = true
			}
		}
		if skip {
			continue
		}
		var keep []string
		for _, v := range vs {
			if v != "" {
				keep = append(keep, v)
			}
		}
		if len(keep) > 0 {
			out[name] = keep
		}
	}
	return out
}

func splitTokens(v string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(v); i++ {
		if i == len(v) || v[i] == ',' {
			t := bytes.TrimSpace([]byte(v[start:i]))
			if len(t) > 0 {
				out = append(out, string(t))
			}
			start = i + 1
		}
	}
	return out
}

// responseTimeoutPattern is the wire pattern, kept for tests and documentation;
// ParseResponseTimeout does not use a regexp.
var responseTimeoutPattern = regexp.MustCompile(`^[0-9]+(ns|us|ms|s|m|h)$`)
