package relay

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/internal/wwwauth"
	"github.com/sluicemcp/sluice/engine/wire"
)

// Request outcomes, the values of the outcome label of
// sluice_relay_requests_total.
const (
	outcomeOK           = "ok"            // final response relayed as JSON
	outcomeSSE          = "sse"           // final response relayed on an SSE stream
	outcomeAccepted     = "accepted"      // 202 after notify_ack
	outcomeTimeout      = "timeout"       // response_timeout expired: 504
	outcomeClientGone   = "client_gone"   // the MCP client disconnected
	outcomeUnauthorized = "unauthorized"  // missing or wrong client key
	outcomeForbidden    = "forbidden"     // Host/Origin mismatch
	outcomeNoAgent      = "not_connected" // no agent polled recently: 503
	outcomeQueueFull    = "queue_full"    // 429
	outcomeBadRequest   = "bad_request"   // malformed, batch, oversize, missing header
	outcomePlugin       = "plugin"        // answered, rejected or dropped by the chain
	outcomeUnavailable  = "unavailable"   // relay closing or tunnel removed
	outcomeLimited      = "limited"       // 429/503: a limit for hostile clients (limits.go)
	outcomeSlowBody     = "slow_body"     // 408: the body did not arrive in time
)

// retryAfterNotConnected is the Retry-After (seconds) of a 503
// tunnel_client_not_connected.
const retryAfterNotConnected = "5"

// msgKind classifies a client's JSON-RPC message.
type msgKind uint8

const (
	kindRequest      msgKind = iota // method and id: expects a response
	kindNotification                // method, no id: expects notify_ack
	kindResponse                    // result/error, no method: expects notify_ack
)

// exchange is one MCP client call in flight.
type exchange struct {
	t         *tunnelState
	conf      *tunnelConf
	p         *pending
	x         *engine.Exchange // nil when the chain is empty
	rpcID     json.RawMessage  // the client's JSON-RPC id (nil for none)
	method    string
	tool      string // the tool of a tools/call
	sessionID string
	sse       bool       // the client accepts text/event-stream
	audit     *toolAudit // nil unless the exchange is an audited tools/call
	caller    string     // who is calling ("" when unknown)
	// metadataURL is the relay's protected-resource metadata URL for the
	// tunnel (WWW-Authenticate rewrites in oauth mode).
	metadataURL string
}

// handleMCPPost serves POST /v1/mcp/{id}: one JSON-RPC message per request.
func (r *Relay) handleMCPPost(w http.ResponseWriter, req *http.Request, d door) {
	id, start := d.id, d.start
	if !engine.IsJSON(req.Header.Get("Content-Type")) {
		// Streamable HTTP: the body of a POST is one JSON-RPC message.
		writeRPC(w, http.StatusUnsupportedMediaType, engine.ErrorResponse(nil, &engine.RPCError{
			Code: engine.CodeInvalidRequest, Message: "unsupported media type: Content-Type must be application/json"}))
		r.met.request(id, outcomeBadRequest, start)
		return
	}
	body, outcome := r.readBody(w, req, r.set.maxBody, d.key)
	if outcome != "" {
		r.met.request(id, outcome, start)
		return
	}
	peek, kind, rpcErr := classify(body)
	if rpcErr != nil {
		writeRPC(w, http.StatusBadRequest, engine.ErrorResponse(nil, rpcErr))
		r.met.request(id, outcomeBadRequest, start)
		return
	}
	e := r.newExchange(req, &d, wire.CommandJSONRPC, body, time.Now())
	p := e.p
	e.rpcID, e.method, e.tool = peek.ID, peek.Method, peek.Tool
	e.sse = engine.AcceptsEventStream(req.Header)
	w = r.auditToolCall(w, e, kind, d.caller, peek.Tool)
	if r.pipeline != nil && r.pipeline.Chain().Len() > 0 {
		e.x = r.pipeline.Begin()
		defer e.x.Close()
		m := &engine.Message{
			Hook: engine.HookRequest, Side: engine.SideRelay,
			Tunnel: id, Channel: wire.DefaultChannel, SessionID: e.sessionID,
			RequestID: p.cmd.RequestID, Method: peek.Method, Tool: peek.Tool,
			Caller: d.caller, Header: http.Header(p.cmd.Headers), Body: body,
			Notification: kind == kindNotification,
		}
		out := e.x.Request(req.Context(), m)
		e.audit.decided(out)
		switch out.Action {
		case engine.Continue:
			p.cmd.JSONRPC = out.Body
			if out.Header != nil {
				p.cmd.Headers = map[string][]string(out.Header)
			}
		case engine.Drop:
			w.WriteHeader(http.StatusAccepted)
			r.finish(e, outcomePlugin, start)
			return
		default: // Respond, Reject
			st := out.Status
			if st == 0 {
				st = http.StatusOK
			}
			if len(out.Body) == 0 {
				if kind != kindRequest && st == http.StatusOK {
					st = http.StatusAccepted
				}
				w.WriteHeader(st)
			} else {
				writeRPC(w, st, out.Body)
			}
			r.finish(e, outcomePlugin, start)
			return
		}
	}
	r.finish(e, r.run(w, req, e), start)
}

// handleMCPDelete serves DELETE /v1/mcp/{id}: a session_termination command.
func (r *Relay) handleMCPDelete(w http.ResponseWriter, req *http.Request, d door) {
	if req.Header.Get("Mcp-Session-Id") == "" {
		writeAPIError(w, http.StatusBadRequest, "invalid_request_error", wire.CodeMissingMCPSessionID, "DELETE needs an Mcp-Session-Id header")
		r.met.request(d.id, outcomeBadRequest, d.start)
		return
	}
	e := r.newExchange(req, &d, wire.CommandSessionTermination, nil, time.Now())
	r.met.request(d.id, r.run(w, req, e), d.start)
}

// newExchange begins the exchange of a request that passed the front door d:
// its command of type cmdType (with body, for jsonrpc) on the default
// channel, carrying the forwarded headers and the caller's identity.
func (r *Relay) newExchange(req *http.Request, d *door, cmdType string, body []byte, now time.Time) *exchange {
	headers := forwardHeaders(req.Header, d.conf.authMode == AuthOAuth)
	p := newPending(r.replica, cmdType, wire.DefaultChannel, headers, body, d.conf.responseTimeout, now)
	p.carryIdentity(d.conf, d.caller)
	return &exchange{
		t: d.t, conf: d.conf, p: p, caller: d.caller,
		sessionID:   req.Header.Get("Mcp-Session-Id"),
		metadataURL: r.metadataURL(d.id),
	}
}

// handleMCPOther answers every other method on the MCP endpoint, HEAD, and
// GET when no agent carries standalone GET streams (getstream.go).
func (r *Relay) handleMCPOther(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Allow", "POST, DELETE")
	writeAPIError(w, http.StatusMethodNotAllowed, "invalid_request_error", "", "method not allowed: use POST (or DELETE to end a session)")
}

// door is a request that passed the MCP front door.
type door struct {
	id     string    // the tunnel's
	start  time.Time // when the request came in (the request metric's latency)
	t      *tunnelState
	conf   *tunnelConf
	caller string // who is calling ("" when unknown), for plugins, audit and the agent
	key    keyID  // whose limits apply (zero when no caller is known)
	slot   slot   // its place in the concurrency limits: release it when done
}

// behindFrontDoor makes h, a handler of the MCP endpoint, run behind the
// front door (mcpFrontDoor): only for a request that passed it, and holding
// the request's slot in the concurrency limits until h returns.
func (r *Relay) behindFrontDoor(h func(http.ResponseWriter, *http.Request, door)) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		d, ok := r.mcpFrontDoor(w, req)
		if !ok {
			return
		}
		defer d.slot.release()
		h(w, req, d)
	}
}

// mcpFrontDoor checks the tunnel id, Host/Origin and the caller, and takes
// the request's slot in the per-address and per-key concurrency limits
// (limits.go). It writes the error response itself and returns ok=false on
// failure; on success the caller must release d.slot when it is done.
func (r *Relay) mcpFrontDoor(w http.ResponseWriter, req *http.Request) (d door, ok bool) {
	start := time.Now()
	id := req.PathValue("id")
	if !wire.ValidTunnelID(id) {
		writeAPIError(w, http.StatusBadRequest, "invalid_request_error", wire.CodeInvalidTunnelIDFormat, "tunnel id must match ^tunnel_[a-z0-9]{32}$")
		return door{}, false
	}
	if !r.hostAllowed(req) {
		writeAPIError(w, http.StatusForbidden, "invalid_request_error", "", "Host or Origin does not match the relay's public URL")
		r.met.request(id, outcomeForbidden, start)
		return door{}, false
	}
	t := r.tunnel(id)
	// Failed keys and tokens draw on the address's and the tunnel's budgets
	// (authlimit.go); oauth and public tunnels check nothing here.
	limited := t == nil || t.conf.Load().authMode == AuthClientKey || t.conf.Load().authMode == AuthOAuthGateway
	addr := clientAddr(req)
	if limited {
		if wait := r.limiter.allow(addr, id, start); wait > 0 {
			r.met.authFailure(realmMCP, failRateLimited)
			refuseRateLimited(w, wait)
			r.met.request(id, outcomeUnauthorized, start)
			return door{}, false
		}
	}
	v := r.authenticate(req, id, t) // frontdoor.go
	if v.status != 0 {
		if limited && (v.status == http.StatusUnauthorized || v.status == http.StatusForbidden) {
			r.limiter.fail(addr, id, start)
			why := failInvalid
			if v.revoked {
				why = failRevoked
			}
			r.met.authFailure(realmMCP, why)
		}
		r.refuse(w, v)
		r.met.request(id, v.outcome, start)
		return door{}, false
	}
	d = door{id: id, start: start, t: t, conf: t.conf.Load(), caller: v.caller, key: v.key}
	if r.closed() || r.isDraining() {
		w.Header().Set("Retry-After", retryAfterDraining)
		writeAPIError(w, http.StatusServiceUnavailable, "server_error", "", "relay is shutting down: retry")
		r.met.request(id, outcomeUnavailable, start)
		return door{}, false
	}
	if d.slot, ok = r.admit(w, req, d.key); !ok {
		r.met.request(id, outcomeLimited, start)
		return door{}, false
	}
	return d, true
}

// classify checks that body is one JSON-RPC 2.0 message as MCP defines it and
// says what kind. It returns the JSON-RPC error to answer with (status 400)
// otherwise: -32700 for a body that is not JSON (invalid UTF-8 included),
// -32600 for JSON that is not a valid message (a batch, "jsonrpc" other than
// "2.0", an id that is null or not a string or integer, an empty method, a
// message that is neither a request, a notification nor a response).
func classify(body []byte) (engine.Peek, msgKind, *engine.RPCError) {
	invalid := func(why string) (engine.Peek, msgKind, *engine.RPCError) {
		return engine.Peek{}, 0, &engine.RPCError{Code: engine.CodeInvalidRequest, Message: "invalid request: " + why}
	}
	if !utf8.Valid(body) {
		return engine.Peek{}, 0, &engine.RPCError{Code: engine.CodeParseError, Message: "parse error: the body is not valid UTF-8"}
	}
	p, err := engine.PeekMessage(body) // validates the whole message in one pass
	if err != nil {
		if !json.Valid(body) {
			return engine.Peek{}, 0, &engine.RPCError{Code: engine.CodeParseError, Message: "parse error"}
		}
		if trim := bytes.TrimLeft(body, " \t\r\n"); trim[0] == '[' {
			return invalid("JSON-RPC batches are not supported")
		}
		return invalid("not a JSON-RPC message object")
	}
	switch {
	case p.JSONRPC != "2.0":
		return invalid(`"jsonrpc" must be "2.0"`)
	case p.IDNull:
		return invalid("the id must not be null")
	case p.ID != nil && !engine.ValidID(p.ID):
		return invalid("the id must be a string or an integer")
	case p.Method != "" && p.HasResult:
		return invalid("a message cannot have both a method and a result or error")
	case p.Method != "" && p.ID != nil:
		return p, kindRequest, nil
	case p.Method != "":
		return p, kindNotification, nil
	case p.HasResult && p.ID != nil:
		return p, kindResponse, nil
	}
	return invalid("neither a request, a notification nor a response")
}

// run enqueues e's command and relays the agent's messages to the client
// until the final one. It returns the request outcome.
func (r *Relay) run(w http.ResponseWriter, req *http.Request, e *exchange) string {
	t, p := e.t, e.p
	revokeC := t.revocations() // before the check: a revocation after it is seen below
	if !t.connected(time.Now(), r.set.agentTimeout) {
		w.Header().Set("Retry-After", retryAfterNotConnected)
		writeAPIError(w, http.StatusServiceUnavailable, "server_error", wire.CodeTunnelClientNotConnected, "no tunnel agent is connected for this tunnel")
		return outcomeNoAgent
	}
	if err := r.enqueue(t, p); err != nil {
		return r.refuseEnqueue(w, t, err)
	}
	timer := time.NewTimer(time.Until(p.deadline))
	defer timer.Stop()
	var (
		streaming bool
		kaC       <-chan time.Time
		ka        *time.Ticker
	)
	defer func() {
		if ka != nil {
			ka.Stop()
		}
	}()
	rc := http.NewResponseController(w)
	drainC := r.draining
	for {
		select {
		case <-drainC:
			if t.withdraw(p) {
				// No agent took it: nothing ran it, so the client may retry.
				r.unavailable(w, rc, e, streaming, "relay shutting down, retry")
				return outcomeUnavailable
			}
			drainC = nil // delivered: wait for its result (until Close)
		case <-revokeC:
			// A runtime key was revoked. Calls its agents held have failed
			// already; one still queued waits on only while some agent with
			// a valid key may take it.
			revokeC = t.revocations()
			if !t.connected(time.Now(), r.set.agentTimeout) && t.withdraw(p) {
				// No agent took it (so nothing streamed yet): retrying is safe.
				w.Header().Set("Retry-After", retryAfterNotConnected)
				writeAPIError(w, http.StatusServiceUnavailable, "server_error", wire.CodeTunnelClientNotConnected, "no tunnel agent is connected for this tunnel")
				return outcomeNoAgent
			}
		case <-p.signal:
			for _, m := range p.take() {
				if !m.Final() {
					if !e.sse {
						continue // the client cannot take a stream: drop notifications
					}
					body, ok := r.responseThroughChain(req, e, m, true)
					if !ok {
						continue
					}
					if !streaming {
						copyRespHeaders(w.Header(), m.RespHeaders, e)
						startSSE(w)
						streaming = true
						ka = time.NewTicker(r.keepalive)
						kaC = ka.C
					}
					if err := writeEvent(w, rc, body); err != nil {
						t.forget(p)
						return outcomeClientGone
					}
					continue
				}
				return r.final(w, req, rc, e, m, streaming)
			}
		case <-kaC:
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil || rc.Flush() != nil {
				t.forget(p)
				return outcomeClientGone
			}
		case <-timer.C:
			t.forget(p)
			r.log.Info("response timeout", "tunnel", t.id, "request_id", p.cmd.RequestID, "method", e.method)
			body := engine.ErrorResponse(e.rpcID, &engine.RPCError{
				Code: engine.CodeInternalError, Message: "tunnel: response timeout",
				Data: json.RawMessage(`{"tunnel_failure":{"version":1,"source":"timeout","upstream_response_received":false}}`),
			})
			if streaming {
				_ = writeEvent(w, rc, body)
			} else {
				writeRPC(w, http.StatusGatewayTimeout, body)
			}
			return outcomeTimeout
		case <-req.Context().Done():
			t.forget(p)
			return outcomeClientGone
		case <-t.done:
			t.forget(p)
			r.unavailable(w, rc, e, streaming, "tunnel removed")
			return outcomeUnavailable
		case <-r.closing:
			t.forget(p)
			r.unavailable(w, rc, e, streaming, "relay shutting down")
			return outcomeUnavailable
		}
	}
}

func (r *Relay) unavailable(w http.ResponseWriter, rc *http.ResponseController, e *exchange, streaming bool, why string) {
	body := engine.ErrorResponse(e.rpcID, &engine.RPCError{Code: engine.CodeInternalError, Message: "tunnel: " + why})
	if streaming {
		_ = writeEvent(w, rc, body)
		return
	}
	w.Header().Set("Retry-After", "1")
	writeRPC(w, http.StatusServiceUnavailable, body)
}

// final relays the message that ends the exchange.
func (r *Relay) final(w http.ResponseWriter, req *http.Request, rc *http.ResponseController, e *exchange, m *wire.Response, streaming bool) string {
	switch m.RespType {
	case wire.RespNotifyAck:
		if streaming {
			return outcomeSSE
		}
		copyRespHeaders(w.Header(), m.RespHeaders, e)
		if st := mapStatus(m.RespCode); st >= 400 {
			// The MCP server refused the notification (an unknown session:
			// 404): the client must see that, not 202.
			w.WriteHeader(st)
			return outcomeOK
		}
		w.WriteHeader(http.StatusAccepted)
		return outcomeAccepted
	case wire.RespSessionTermination:
		copyRespHeaders(w.Header(), m.RespHeaders, e)
		w.WriteHeader(mapStatus(m.RespCode))
		return outcomeOK
	}
	body, status, header := []byte(nil), m.RespCode, http.Header(m.RespHeaders)
	if !isNull(m.RespJSON) {
		body = m.RespJSON
		if e.x != nil {
			out := e.x.Response(req.Context(), r.responseMessage(e, m, false))
			e.audit.decided(out)
			body, header = out.Body, out.Header
			if out.Status != 0 {
				status = out.Status
			}
		}
	}
	if streaming {
		if len(body) == 0 {
			body = engine.ErrorResponse(e.rpcID, &engine.RPCError{Code: engine.CodeInternalError, Message: "tunnel: empty final response"})
		}
		_ = writeEvent(w, rc, body)
		return outcomeSSE
	}
	copyRespHeaders(w.Header(), map[string][]string(header), e)
	st := mapStatus(status)
	if st == http.StatusOK && e.sse && isEventStream(header) {
		// The MCP server answered with an event stream: so does the relay,
		// with the response as its one event, or empty if the server closed
		// its stream without one.
		startSSE(w)
		if len(body) > 0 {
			_ = writeEvent(w, rc, body)
		}
		return outcomeSSE
	}
	if len(body) == 0 {
		w.WriteHeader(st)
		return outcomeOK
	}
	writeRPC(w, st, body)
	return outcomeOK
}

func (r *Relay) responseMessage(e *exchange, m *wire.Response, notification bool) *engine.Message {
	return &engine.Message{
		Hook: engine.HookResponse, Side: engine.SideRelay,
		Tunnel: e.t.id, Channel: wire.DefaultChannel, SessionID: e.sessionID,
		RequestID: e.p.cmd.RequestID, Method: e.method, Tool: e.tool, Caller: e.caller,
		Status: m.RespCode, Header: http.Header(m.RespHeaders), Body: m.RespJSON,
		Notification: notification,
	}
}

// responseThroughChain runs a streamed notification up the chain; ok=false
// means drop it.
func (r *Relay) responseThroughChain(req *http.Request, e *exchange, m *wire.Response, notification bool) (json.RawMessage, bool) {
	if isNull(m.RespJSON) {
		return nil, false
	}
	if e.x == nil {
		return m.RespJSON, true
	}
	out := e.x.Response(req.Context(), r.responseMessage(e, m, notification))
	if out.Action == engine.Drop || len(out.Body) == 0 {
		return nil, false
	}
	return out.Body, true
}

// mapStatus maps an agent's resp_code to the status the MCP client sees:
// 1xx → 502, unknown 2xx → 200, other unknown → 502 (0, absent, is 200).
func mapStatus(code int) int {
	switch {
	case code == 0:
		return http.StatusOK
	case code < 200 || code > 599:
		return http.StatusBadGateway
	case http.StatusText(code) != "":
		return code
	case code < 300:
		return http.StatusOK
	}
	return http.StatusBadGateway
}

// passedRespHeaders are the agent response headers relayed to the client.
// Content-Type is not among them: the relay sets its own.
var passedRespHeaders = []string{"Mcp-Session-Id", "Mcp-Protocol-Version", "Www-Authenticate", "Access-Control-Expose-Headers"}

func copyRespHeaders(dst http.Header, src map[string][]string, e *exchange) {
	for k, vs := range src {
		ck := http.CanonicalHeaderKey(k)
		for _, name := range passedRespHeaders {
			if ck != name {
				continue
			}
			for _, v := range vs {
				if v == "" || strings.ContainsAny(v, "\r\n") {
					continue
				}
				if ck == "Www-Authenticate" {
					switch e.conf.authMode {
					case AuthOAuth:
						v = wwwauth.Replace(v, "resource_metadata", e.metadataURL) // RFC 9728
					case AuthOAuthGateway:
						// The relay is the resource server: the MCP server's
						// own challenge (it trusts the gateway, not tokens)
						// would send the client somewhere it cannot go.
						continue
					}
				}
				dst.Add(ck, v)
			}
		}
	}
}

// forwardedHeaders is the allow-list of MCP client headers carried into
// command.headers (Mcp-Param-* is matched by prefix, Authorization only in
// oauth mode).
var forwardedHeaders = map[string]bool{
	"Mcp-Session-Id":       true,
	"Mcp-Protocol-Version": true,
	"Accept":               true,
	"Last-Event-Id":        true,
	"Mcp-Method":           true,
	"Mcp-Name":             true,
	"Traceparent":          true,
	"Tracestate":           true,
}

// forwardHeaders builds command.headers from the client's request headers:
// an allow-list, minus anything Connection names. Keys are canonical.
func forwardHeaders(h http.Header, withAuth bool) map[string][]string {
	out := make(map[string][]string, 4)
	var conn map[string]bool
	for _, v := range h.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				if conn == nil {
					conn = make(map[string]bool)
				}
				conn[http.CanonicalHeaderKey(tok)] = true
			}
		}
	}
	for k, vs := range h {
		ok := forwardedHeaders[k] || strings.HasPrefix(k, "Mcp-Param-") || (withAuth && k == "Authorization")
		if !ok || conn[k] || len(vs) == 0 {
			continue
		}
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// isEventStream reports whether an agent response's headers (keys as the
// agent wrote them) say text/event-stream.
func isEventStream(h http.Header) bool {
	for k, vs := range h {
		if http.CanonicalHeaderKey(k) == "Content-Type" && len(vs) > 0 {
			return engine.IsEventStream(vs[0])
		}
	}
	return false
}

func startSSE(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

// writeEvent writes one SSE message event and flushes it.
func writeEvent(w http.ResponseWriter, rc *http.ResponseController, msg []byte) error {
	if bytes.ContainsAny(msg, "\r\n") {
		var b bytes.Buffer
		if err := json.Compact(&b, msg); err == nil {
			msg = b.Bytes()
		} else {
			msg = stripNewlines(msg)
		}
	}
	buf := make([]byte, 0, len(msg)+24)
	buf = append(buf, "event: message\ndata: "...)
	buf = append(buf, msg...)
	buf = append(buf, "\n\n"...)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	return rc.Flush()
}

func stripNewlines(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c != '\r' && c != '\n' {
			out = append(out, c)
		}
	}
	return out
}

func writeRPC(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body))) // no chunking for large results
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func isNull(b json.RawMessage) bool {
	t := bytes.TrimSpace(b)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}
