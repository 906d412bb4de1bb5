package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// run is the state of one running command.
type run struct {
	a        *Agent
	t        *task
	callCtx  context.Context // bounds the MCP call: grace and deadline
	postCtx  context.Context // bounds the POSTs: abort budget and deadline
	x        *engine.Exchange
	method   string
	tool     string
	session  string
	notify   bool // the request is a notification (or a JSON-RPC response)
	noMore   bool // a notification POST failed: skip later ones
	final    bool // the final reply was handled
	oc       outcome
	status   int             // the final status posted
	decision engine.Decision // what the audit record names
}

// outcome counts the command's outcome and remembers it for the audit record.
func (r *run) outcome(oc outcome) {
	r.oc = oc
	r.a.m.outcome(oc)
}

// decided remembers a chain outcome that was not a plain pass.
func (r *run) decided(o engine.Outcome) {
	r.decision.Note(o)
}

func (a *Agent) runTask(t *task) {
	now := time.Now()
	if t.expired(now) {
		a.m.outcome(outcomeExpired)
		return
	}
	r := &run{a: a, t: t, callCtx: a.workCtx, postCtx: a.postCtx}
	if a.graceOver.Load() {
		r.abort()
		return
	}
	if !t.deadline.IsZero() {
		var c1, c2 context.CancelFunc
		r.callCtx, c1 = context.WithDeadline(a.workCtx, t.deadline)
		r.postCtx, c2 = context.WithDeadline(a.postCtx, t.deadline)
		defer c1()
		defer c2()
	}
	a.m.latency("queue", "", t.cmd.Channel, now.Sub(t.receipt))
	switch t.cmd.CommandType {
	case wire.CommandJSONRPC:
		r.jsonrpc()
	case wire.CommandSessionTermination:
		r.sessionTermination()
	case wire.CommandOAuthDiscovery:
		r.oauthDiscovery()
	case wire.CommandGetStream:
		r.getStream()
	case wire.CommandOAuthAS:
		r.oauthAS()
	}
	total := time.Since(t.receipt)
	a.m.latency("total", r.method, t.cmd.Channel, total)
	if a.audit != nil && r.method == "tools/call" {
		rec := engine.ToolCallAudit{Tunnel: a.cfg.TunnelID, Channel: t.cmd.Channel,
			RequestID: t.cmd.RequestID, SessionID: r.session, Caller: t.cmd.Caller, Tool: r.tool,
			Verdict: r.decision.Verdict, Plugin: r.decision.Plugin, Outcome: string(r.oc), Status: r.status, Latency: total}
		rec.Log(a.audit)
	}
}

func (r *run) binding() binding.Binding { return r.a.bindings[r.t.cmd.Channel] }

func (r *run) debug(msg string, args ...any) {
	r.a.log.Debug(msg, append([]any{"request_id", r.t.cmd.RequestID, "channel", r.t.cmd.Channel, "method", r.method}, args...)...)
}

func (r *run) jsonrpc() {
	cmd := &r.t.cmd
	p, err := engine.PeekMessage(cmd.JSONRPC)
	if err != nil {
		// The relay sent something that is not one JSON-RPC object: answer as
		// an MCP server would, without calling it.
		r.debug("command body is not a JSON-RPC object")
		r.postFinal(wire.RespJSONRPCResponse, http.StatusBadRequest, nil,
			engine.ErrorResponse(nil, &engine.RPCError{Code: engine.CodeParseError, Message: "parse error"}), outcomeMCPError)
		return
	}
	r.method, r.tool = p.Method, p.Tool
	req := &binding.Request{Kind: binding.KindJSONRPC, Header: canonicalHeader(cmd.Headers), Body: cmd.JSONRPC}
	r.session = req.Header.Get("Mcp-Session-Id")
	if p.ID == nil || p.Method == "" {
		req.Notification, r.notify = true, true
	} else {
		req.ID = p.ID
	}
	if r.a.rawUnsafe {
		r.debug("command", "body", string(cmd.JSONRPC))
	}
	if r.a.pipeline != nil {
		r.x = r.a.pipeline.Begin()
		defer r.x.Close()
		m := &engine.Message{Hook: engine.HookRequest, Side: engine.SideAgent, Tunnel: r.a.cfg.TunnelID,
			Channel: cmd.Channel, SessionID: r.session, RequestID: cmd.RequestID, Method: p.Method, Tool: p.Tool,
			Caller: cmd.Caller, Header: req.Header, Body: req.Body, Notification: r.notify}
		o := r.x.Request(r.callCtx, m)
		r.decided(o)
		switch o.Action {
		case engine.Respond, engine.Reject:
			oc := outcomeOK
			if o.Action == engine.Reject {
				oc = outcomeMCPError
			}
			if r.notify {
				r.postFinal(wire.RespNotifyAck, o.Status, o.Header, nil, oc)
			} else {
				r.postFinal(wire.RespJSONRPCResponse, o.Status, o.Header, o.Body, oc)
			}
			return
		case engine.Drop:
			r.postFinal(wire.RespNotifyAck, http.StatusAccepted, nil, nil, outcomeOK)
			return
		}
		req.Body, req.Header = o.Body, o.Header
		if req.Header == nil {
			req.Header = http.Header{}
		}
	}
	r.call(req)
}

func (r *run) sessionTermination() {
	req := &binding.Request{Kind: binding.KindSessionTermination, Header: canonicalHeader(r.t.cmd.Headers)}
	r.method = "session_termination"
	r.call(req)
}

// call delivers req to the channel's binding and posts what comes back.
func (r *run) call(req *binding.Request) {
	b := r.binding()
	if b == nil {
		r.debug("no binding for channel")
		r.fail(&binding.Error{Source: wire.SourceClientInternal, Kind: "unknown", Err: errors.New("no binding for channel")})
		return
	}
	if r.t.expired(time.Now()) { // the chain may have taken a while
		r.outcome(outcomeExpired)
		return
	}
	start := time.Now()
	err := b.Do(r.callCtx, req, func(rep *binding.Reply) error {
		r.reply(req, rep)
		return nil
	})
	r.a.m.latency("mcp", r.method, r.t.cmd.Channel, time.Since(start))
	switch {
	case r.final:
		if err != nil {
			r.debug("binding error after the final reply", "err", err)
		}
	case r.a.graceOver.Load() && r.a.workCtx.Err() != nil:
		r.abort()
	case r.t.expired(time.Now()):
		r.debug("deadline passed during the MCP call: nothing posted")
		r.outcome(outcomeExpired)
	case err == nil:
		r.fail(&binding.Error{Source: wire.SourceProtocol, Kind: "response_body_missing", Err: errors.New("binding returned without a final reply")})
	default:
		r.fail(err)
	}
}

// reply handles one message from the MCP server: up the chain, then posted.
func (r *run) reply(req *binding.Request, rep *binding.Reply) {
	if r.final {
		return
	}
	status, header, body := rep.Status, rep.Header, rep.Body
	if status == 0 {
		status = http.StatusOK
	}
	if r.a.rawUnsafe {
		r.debug("reply", "status", status, "final", rep.Final, "body", string(body))
	}
	if r.x != nil && len(body) > 0 {
		m := &engine.Message{Hook: engine.HookResponse, Side: engine.SideAgent, Tunnel: r.a.cfg.TunnelID,
			Channel: r.t.cmd.Channel, SessionID: r.session, RequestID: r.t.cmd.RequestID, Method: r.method,
			Tool: r.tool, Caller: r.t.cmd.Caller, Status: status, Header: header, Body: body, Notification: !rep.Final}
		o := r.x.Response(r.callCtx, m)
		if rep.Final || o.Action != engine.Continue || o.Changed != "" {
			r.decided(o)
		}
		switch o.Action {
		case engine.Drop:
			if !rep.Final {
				return
			}
		case engine.Reject:
			body, status = o.Body, o.Status
		default:
			body, header = o.Body, o.Header
			if o.Status != 0 {
				status = o.Status
			}
		}
	}
	if !rep.Final {
		if r.noMore {
			return
		}
		if err := r.a.post(r.postCtx, r.t, wire.RespJSONRPCNotify, status, header, body, false); err != nil {
			r.debug("notification post failed: skipping later notifications", "err", err)
			r.noMore = true
		}
		return
	}
	r.final = true
	oc := outcomeOK
	if status >= 400 {
		oc = outcomeMCPError
	}
	switch {
	case req.Kind == binding.KindSessionTermination:
		r.postFinal(wire.RespSessionTermination, status, header, nil, oc)
	case r.notify && len(body) == 0:
		r.postFinal(wire.RespNotifyAck, status, header, nil, oc)
	default:
		r.postFinal(wire.RespJSONRPCResponse, status, header, body, oc)
	}
}

func (r *run) postFinal(typ string, status int, header http.Header, body json.RawMessage, oc outcome) {
	if status == 0 {
		status = http.StatusOK
	}
	r.final = true
	r.status = status
	if err := r.a.post(r.postCtx, r.t, typ, status, header, body, true); err != nil {
		if r.t.expired(time.Now()) || errors.Is(err, errPastDeadline) || errors.Is(err, context.DeadlineExceeded) {
			r.debug("deadline reached while posting: given up", "err", err)
			r.outcome(outcomeExpired)
			return
		}
		r.a.log.Warn("response post failed", "request_id", r.t.cmd.RequestID, "channel", r.t.cmd.Channel, "err", err)
		r.outcome(outcomePostFailed)
		return
	}
	r.outcome(oc)
}

// fail synthesizes the -32603 tunnel failure for a binding error. Commands
// without a JSON-RPC message (session termination, OAuth discovery) get only
// the status: their response types carry no JSON-RPC error.
func (r *run) fail(err error) {
	r.a.log.Info("mcp call failed", "request_id", r.t.cmd.RequestID, "channel", r.t.cmd.Channel, "method", r.method, "err", err)
	f, code := failureFor(err)
	r.postFinal(r.failureType(), code, nil, r.failureBody(f), outcomeTunnelFailure)
}

// abort posts the connection_aborted failure of a command the shutdown grace
// cut short, unless its deadline has passed.
func (r *run) abort() {
	if r.t.expired(time.Now()) {
		r.outcome(outcomeExpired)
		return
	}
	f := wire.TunnelFailure{Version: 1, Source: wire.SourceClientInternal, TransportErrorKind: "connection_aborted"}
	if err := r.a.post(r.postCtx, r.t, r.failureType(), http.StatusBadGateway, nil, r.failureBody(f), true); err != nil {
		r.debug("abort post failed", "err", err)
	}
	r.outcome(outcomeAborted)
}

// failureType is the final response type of the command's kind.
func (r *run) failureType() string {
	switch r.t.cmd.CommandType {
	case wire.CommandSessionTermination:
		return wire.RespSessionTermination
	case wire.CommandOAuthDiscovery:
		return wire.RespOAuthDiscovery
	case wire.CommandOAuthAS:
		return wire.RespOAuthAS
	}
	return wire.RespJSONRPCResponse
}

// failureBody is the synthesized -32603 error for a JSON-RPC command, nil for
// the other kinds.
func (r *run) failureBody(f wire.TunnelFailure) json.RawMessage {
	if r.t.cmd.CommandType != wire.CommandJSONRPC {
		return nil
	}
	return failureBody(r.requestID(), f)
}

// requestID returns the JSON-RPC id of the command's message, nil if none.
func (r *run) requestID() json.RawMessage {
	if r.t.cmd.CommandType != wire.CommandJSONRPC {
		return nil
	}
	p, err := engine.PeekMessage(r.t.cmd.JSONRPC)
	if err != nil {
		return nil
	}
	return p.ID
}

// failureFor maps a binding error to a provenance that satisfies the
// x-tunnel-failure-schema rules, and the resp_code to post with it.
func failureFor(err error) (wire.TunnelFailure, int) {
	f := binding.Failure(err)
	if f.Source == "" {
		f.Source = wire.SourceClientInternal
	}
	if f.UpstreamStatus != nil {
		st := *f.UpstreamStatus
		if st >= 400 && st <= 599 {
			f.Source, f.UpstreamResponseReceived = wire.SourceTargetHTTP, true
			return f, st
		}
		// Not an error status: the schema only admits 400..599, so report a
		// protocol failure with the status folded into the kind.
		f.UpstreamStatus = nil
		f.Source, f.UpstreamResponseReceived = wire.SourceProtocol, true
		if f.TransportErrorKind == "" {
			f.TransportErrorKind = "http_status"
		}
	}
	if f.Source == wire.SourceTargetHTTP { // target_http needs a status
		f.Source = wire.SourceProtocol
		f.UpstreamResponseReceived = true
	}
	if f.Source == wire.SourceTransportClosed {
		f.UpstreamResponseReceived = false
	}
	return f, http.StatusBadGateway
}

// failureBody renders the synthesized -32603 error for id.
func failureBody(id json.RawMessage, f wire.TunnelFailure) json.RawMessage {
	data, _ := json.Marshal(struct {
		TunnelFailure wire.TunnelFailure `json:"tunnel_failure"`
	}{f})
	msg := "tunnel: the MCP server could not be reached"
	switch {
	case f.UpstreamStatus != nil:
		msg = "tunnel: the MCP server answered HTTP " + strconv.Itoa(*f.UpstreamStatus) + " without a JSON-RPC response"
	case f.UpstreamResponseReceived:
		msg = "tunnel: the MCP server's answer was not a usable JSON-RPC response"
	}
	return engine.ErrorResponse(id, &engine.RPCError{Code: engine.CodeInternalError, Message: msg, Data: data})
}

// oauthDiscovery answers an oauth_discovery command: the channel's binding
// fetches the MCP server's protected-resource metadata and the answer goes
// back as it was fetched (status, headers, body). A channel whose binding
// cannot fetch metadata (stdio, in-process) answers 404 with no body, so the
// relay or the hosted service does not wait for a timeout.
func (r *run) oauthDiscovery() {
	r.method = wire.CommandOAuthDiscovery
	ob, ok := r.binding().(OAuthDiscoverer)
	if !ok {
		r.debug("binding has no OAuth metadata: answered 404")
		r.postFinal(wire.RespOAuthDiscovery, http.StatusNotFound, nil, nil, outcomeOK)
		return
	}
	rep, err := ob.OAuthDiscovery(r.callCtx, canonicalHeader(r.t.cmd.Headers))
	r.postFetched(wire.RespOAuthDiscovery, rep, err, "oauth discovery answered")
}

// postFetched posts the answer of a fetch made for a command (OAuth
// discovery, an authorization server request) as typ: the reply as it
// came, or the failure. msg is logged at debug with the status only (never
// a URL, query or body: they hold codes and tokens).
func (r *run) postFetched(typ string, rep *binding.Reply, err error, msg string, args ...any) {
	switch {
	case err == nil && rep != nil:
		oc := outcomeOK
		if rep.Status >= 400 {
			oc = outcomeMCPError
		}
		r.debug(msg, append(args, "status", rep.Status)...)
		r.postFinal(typ, rep.Status, rep.Header, objectOrNull(rep.Body), oc)
	case r.a.graceOver.Load() && r.a.workCtx.Err() != nil:
		r.abort()
	case r.t.expired(time.Now()):
		r.outcome(outcomeExpired)
	default:
		if err == nil {
			err = errors.New(r.method + ": no reply")
		}
		r.fail(err)
	}
}
