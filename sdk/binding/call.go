package binding

import (
	"strconv"

	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/internal/hostapi"
	"github.com/sluicemcp/sluice/sdk/rawjson"
)

// Call is one request (or notification) to a binding plugin, as its method
// or tool handler sees it. Like sdk.Message, everything in it points into
// the host's buffer and is valid only until the handler returns.
type Call struct {
	// Message is the envelope: headers, session id, caller, raw body.
	Message *sdk.Message
	// Method is the JSON-RPC method.
	Method string
	// ID is the raw JSON-RPC id (nil for a notification).
	ID []byte
	// Params is the raw params object (nil when absent).
	Params []byte
	// Tool is the tool's name for tools/call.
	Tool string
	// ProtocolVersion is the request's protocol version: the _meta one of a
	// 2026-07-28 request, else the Mcp-Protocol-Version header ("" when
	// neither says: initialize, or a 2025-03-26 client).
	ProtocolVersion string

	s             *server
	modern        bool
	arguments     []byte // tools/call arguments
	progressToken []byte
	buf           []byte // the response being built
	scratch       []byte // a result being built
}

// Meta keys of the stateless era (2026-07-28).
const (
	metaProtocolVersion = "io.modelcontextprotocol/protocolVersion"
	metaServerInfo      = "io.modelcontextprotocol/serverInfo"
)

func (c *Call) reset(s *server, m *sdk.Message) {
	*c = Call{Message: m, Method: m.Method, Tool: m.Tool, s: s, buf: c.buf[:0], scratch: c.scratch[:0]}
}

// parse reads the id, params, tool arguments and _meta of the body.
func (c *Call) parse() {
	body := c.Message.Body
	eachMember(body, func(k, v []byte) bool {
		switch string(k) {
		case "id":
			if string(v) != "null" {
				c.ID = v
			}
		case "method":
			if c.Method == "" {
				c.Method, _ = unquote(v)
			}
		case "params":
			if len(v) > 0 && v[0] == '{' {
				c.Params = v
			}
		}
		return true
	})
	eachMember(c.Params, func(k, v []byte) bool {
		switch string(k) {
		case "name":
			if c.Method == "tools/call" && c.Tool == "" {
				c.Tool, _ = unquote(v)
			}
		case "arguments":
			c.arguments = v
		case "_meta":
			eachMember(v, func(mk, mv []byte) bool {
				switch string(mk) {
				case "progressToken":
					if string(mv) != "null" {
						c.progressToken = mv
					}
				case metaProtocolVersion:
					c.ProtocolVersion, _ = unquote(mv)
				}
				return true
			})
		}
		return true
	})
	if c.ProtocolVersion == "" {
		c.ProtocolVersion = c.Message.Headers.Get("Mcp-Protocol-Version")
	}
	c.modern = modernVersion(c.ProtocolVersion)
}

// Modern reports whether the request is of the stateless era (2026-07-28
// or later).
func (c *Call) Modern() bool { return c.modern }

// Result answers the request with result (a JSON object) as its "result".
// On a 2026-07-28 request the result is stamped with resultType "complete"
// and the server's identity in _meta, unless it has its own.
func (c *Call) Result(result []byte) sdk.Result {
	b := append(c.buf[:0], `{"jsonrpc":"2.0","id":`...)
	b = append(b, c.idOrNull()...)
	b = append(b, `,"result":`...)
	if c.modern {
		b = c.decorate(b, result)
	} else {
		b = append(b, result...)
	}
	c.buf = append(b, '}')
	return sdk.Respond(0, c.buf)
}

// decorate appends result with the members the stateless era requires of
// every result, when it lacks them.
func (c *Call) decorate(b, result []byte) []byte {
	hasType, hasMeta := false, false
	eachMember(result, func(k, _ []byte) bool {
		switch string(k) {
		case "resultType":
			hasType = true
		case "_meta":
			hasMeta = true
		}
		return true
	})
	i := rawjson.SkipSpace(result, 0)
	if i >= len(result) || result[i] != '{' || (hasType && hasMeta) {
		return append(b, result...)
	}
	b = append(b, '{')
	sep := false
	if !hasType {
		b = append(b, `"resultType":"complete"`...)
		sep = true
	}
	if !hasMeta {
		if sep {
			b = append(b, ',')
		}
		b = append(b, `"_meta":{"`+metaServerInfo+`":`...)
		b = c.s.appendServerInfo(b)
		b = append(b, '}')
		sep = true
	}
	rest := result[rawjson.SkipSpace(result, i+1):]
	if sep && len(rest) > 0 && rest[0] != '}' {
		b = append(b, ',')
	}
	return append(b, rest...)
}

func (c *Call) idOrNull() []byte {
	if len(c.ID) == 0 {
		return []byte("null")
	}
	return c.ID
}

// Error answers the request with a JSON-RPC error. The HTTP status follows
// the era: on a 2026-07-28 request an unknown method is 404 and a malformed
// request 400, as the stateless transport requires; before, errors travel
// with 200 (a parse error with 400).
func (c *Call) Error(code int, message string) sdk.Result {
	return c.ErrorData(code, message, nil)
}

// ErrorData is Error with a "data" member (JSON; nil = none).
func (c *Call) ErrorData(code int, message string, data []byte) sdk.Result {
	status := 0
	switch {
	case code == CodeParseError:
		status = 400
	case c.modern && code == CodeMethodNotFound:
		status = 404
	case c.modern && (code == CodeInvalidRequest || code == CodeInvalidParams):
		status = 400
	}
	return sdk.RejectData(status, code, message, data)
}

// Notify streams a notification with method and params (a JSON object, nil
// = none) to the client now, before the call's answer.
func (c *Call) Notify(method string, params []byte) error {
	b := append(c.scratch[:0], `{"jsonrpc":"2.0","method":`...)
	b = sdk.AppendJSONString(b, method)
	if len(params) > 0 {
		b = append(b, `,"params":`...)
		b = append(b, params...)
	}
	c.scratch = append(b, '}')
	return emit(c.scratch)
}

// Progress reports progress on the call to a client that asked for it (a
// progressToken in the request's _meta); otherwise it does nothing. total
// <= 0 means unknown; message may be empty.
func (c *Call) Progress(progress, total float64, message string) error {
	if len(c.progressToken) == 0 {
		return nil
	}
	b := append(c.scratch[:0], `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":`...)
	b = append(b, c.progressToken...)
	b = append(b, `,"progress":`...)
	b = strconv.AppendFloat(b, progress, 'g', -1, 64)
	if total > 0 {
		b = append(b, `,"total":`...)
		b = strconv.AppendFloat(b, total, 'g', -1, 64)
	}
	if message != "" {
		b = append(b, `,"message":`...)
		b = sdk.AppendJSONString(b, message)
	}
	c.scratch = append(b, `}}`...)
	return emit(c.scratch)
}

// emit hands one notification to the host.
func emit(msg []byte) error {
	io := hostapi.GetIO()
	if io == nil {
		return hostError(-1, "no host I/O")
	}
	if code, msg := io.Emit(msg); code != 0 {
		return hostError(code, msg)
	}
	return nil
}
