package relay

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/wire"
)

// agentLostAfter is how long an agent instance that holds commands may go
// without a request and without a connection before the relay counts it as
// lost and fails the calls it held.
const agentLostAfter = 2 * time.Second

// agentState is what a tunnel knows of one agent instance
// (X-Tunnel-Client-Instance-Id).
type agentState struct {
	active    int  // requests in progress: polls and response POSTs
	conns     int  // open connections it made requests on
	untracked bool // its connections cannot be told apart (a proxy, or a server without ConfigureServer): never lost
	// quiet: its last connection was closed by the relay (idle timeout,
	// Connection: close while draining), not by the agent: it is not lost
	// until it shows up again and then goes silent.
	quiet    bool
	lastSeen time.Time // when a request last started or ended
	check    *time.Timer
	// key is the hash of the runtime key its polls authenticate with
	// (keyed: one was seen), so a revocation finds its agents (pollwatch.go).
	key   [32]byte
	keyed bool
}

// connInfo is attached to every connection of the public listener: the
// agent instance whose requests it carries, if any.
type connInfo struct {
	mu        sync.Mutex
	t         *tunnelState
	instance  string
	idleSince time.Time // when the connection last went idle
	closing   bool      // the relay answered with Connection: close
}

type connInfoKey struct{}

// ConfigureServer sets the hooks on srv that let the relay see its
// connections close, which is how it notices a lost agent (one that stopped
// polling and whose connections are gone) and fails the calls it held at
// once. Serve calls it; call it on a server of your own that serves Handler.
// Without it lost agents are not detected: their calls end at their
// response timeout.
func (r *Relay) ConfigureServer(srv *http.Server) {
	srv.ConnContext = r.connContext
	srv.ConnState = r.connState
	r.idleTimeout = srv.IdleTimeout
	if r.idleTimeout == 0 {
		r.idleTimeout = srv.ReadTimeout
	}
}

// connContext attaches a connInfo to a new connection
// (http.Server.ConnContext) and remembers it for connState.
func (r *Relay) connContext(ctx context.Context, c net.Conn) context.Context {
	ci := &connInfo{}
	r.connsMu.Lock()
	r.conns[c] = ci
	r.connsMu.Unlock()
	return context.WithValue(ctx, connInfoKey{}, ci)
}

// connState notes closed agent connections (http.Server.ConnState), and
// whether the relay closed them (an idle timeout, or Connection: close) or
// the agent did.
func (r *Relay) connState(c net.Conn, s http.ConnState) {
	switch s {
	case http.StateIdle:
		r.connsMu.Lock()
		ci := r.conns[c]
		r.connsMu.Unlock()
		if ci != nil {
			ci.mu.Lock()
			ci.idleSince = time.Now()
			ci.mu.Unlock()
		}
		return
	case http.StateClosed, http.StateHijacked:
	default:
		return
	}
	now := time.Now()
	r.connsMu.Lock()
	ci := r.conns[c]
	delete(r.conns, c)
	r.connsMu.Unlock()
	if ci == nil {
		return
	}
	ci.mu.Lock()
	t, inst := ci.t, ci.instance
	quiet := ci.closing || (r.idleTimeout > 0 && !ci.idleSince.IsZero() && now.Sub(ci.idleSince) >= r.idleTimeout-50*time.Millisecond)
	ci.t = nil
	ci.mu.Unlock()
	if t != nil {
		t.agentConnClosed(inst, now, quiet)
	}
}

// closingConn notes that the relay answers req with Connection: close, so
// its connection's end is not the agent's doing.
func closingConn(req *http.Request) {
	if ci, _ := req.Context().Value(connInfoKey{}).(*connInfo); ci != nil {
		ci.mu.Lock()
		ci.closing = true
		ci.mu.Unlock()
	}
}

// bindAgentConn records that req, an authenticated agent request of
// instance on tunnel t, arrived on its connection.
func (r *Relay) bindAgentConn(req *http.Request, t *tunnelState, instance string) {
	if instance == "" {
		return
	}
	ci, _ := req.Context().Value(connInfoKey{}).(*connInfo)
	if ci == nil {
		t.agentUntracked(instance)
		return
	}
	ci.mu.Lock()
	switch {
	case ci.t == nil:
		ci.t, ci.instance = t, instance
		ci.mu.Unlock()
		t.agentConnOpened(instance)
		return
	case ci.t != t || ci.instance != instance:
		ci.mu.Unlock()
		t.agentUntracked(instance)
		return
	}
	ci.mu.Unlock()
}

// agent returns the state of instance, creating it (t.mu held).
func (t *tunnelState) agentLocked(instance string, now time.Time) *agentState {
	a := t.agents[instance]
	if a == nil {
		if len(t.agents) >= maxInstances {
			for k, v := range t.agents {
				if v.active == 0 && v.conns == 0 && now.Sub(v.lastSeen) > time.Minute {
					delete(t.agents, k)
				}
			}
		}
		a = &agentState{lastSeen: now}
		t.agents[instance] = a
	}
	return a
}

func (t *tunnelState) agentConnOpened(instance string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.agentLocked(instance, time.Now()).conns++
}

func (t *tunnelState) agentUntracked(instance string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.agentLocked(instance, time.Now()).untracked = true
}

func (t *tunnelState) agentConnClosed(instance string, now time.Time, quiet bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.agents[instance]
	if a == nil {
		return
	}
	if a.conns > 0 {
		a.conns--
	}
	if quiet && a.conns == 0 {
		a.quiet = true
	}
	t.maybeLostLocked(instance, a, now)
}

// agentRequest notes the start (delta 1) or end (-1) of a request of
// instance.
func (t *tunnelState) agentRequest(instance string, delta int, now time.Time) {
	if instance == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.agentLocked(instance, now)
	a.active += delta
	a.lastSeen = now
	if delta > 0 {
		a.quiet = false
		if a.check != nil {
			a.check.Stop()
			a.check = nil
		}
	}
	t.maybeLostLocked(instance, a, now)
}

// maybeLostLocked schedules the lost check of an instance that has no
// request in progress and no connection left (t.mu held).
func (t *tunnelState) maybeLostLocked(instance string, a *agentState, now time.Time) {
	if a.active > 0 || a.conns > 0 || a.untracked || a.quiet || a.check != nil || t.lost == nil {
		return
	}
	wait := agentLostAfter - now.Sub(a.lastSeen)
	a.check = time.AfterFunc(max(wait, 0), func() { t.checkLost(instance) })
}

// checkLost fails the calls a lost instance held, if it is still silent
// and disconnected.
func (t *tunnelState) checkLost(instance string) {
	now := time.Now()
	t.mu.Lock()
	a := t.agents[instance]
	if a == nil {
		t.mu.Unlock()
		return
	}
	a.check = nil
	if a.active > 0 || a.conns > 0 || a.untracked || a.quiet {
		t.mu.Unlock()
		return
	}
	if wait := agentLostAfter - now.Sub(a.lastSeen); wait > 0 {
		a.check = time.AfterFunc(wait, func() { t.checkLost(instance) })
		t.mu.Unlock()
		return
	}
	if t.elsewhere != nil {
		// In a Cluster the agent may have moved to another replica (a load
		// balancer spreads its connections): ask before calling it lost.
		t.mu.Unlock()
		alive := t.elsewhere(instance)
		t.mu.Lock()
		a = t.agents[instance]
		if a == nil || a.active > 0 || a.conns > 0 || a.untracked || a.quiet || a.check != nil {
			t.mu.Unlock() // it came back here meanwhile
			return
		}
		if alive {
			delete(t.agents, instance)
			t.mu.Unlock()
			return
		}
	}
	delete(t.agents, instance)
	t.mu.Unlock()
	if t.announce != nil {
		t.announce(instance)
	}
	t.failHeld(instance)
}

// failHeld fails the calls instance held, which it will never answer.
func (t *tunnelState) failHeld(instance string) {
	if instance == "" {
		return
	}
	t.mu.Lock()
	var held []*pending
	for id, p := range t.pending {
		if p.holder == instance {
			held = append(held, p)
			delete(t.pending, id)
		}
	}
	// Commands pinned to it that it never took: no other agent may run them.
	held = append(held, t.markGoneLocked(instance, time.Now())...)
	t.mu.Unlock()
	if len(held) == 0 || t.lost == nil {
		return
	}
	t.lost(instance, len(held))
	for _, p := range held {
		p.fail(lostAnswer(p))
	}
}

// seesAlive reports whether instance is alive as far as this replica can
// tell: a request in progress, a connection open, a request lately, or
// connections it cannot track.
func (t *tunnelState) seesAlive(instance string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.agents[instance]
	return a != nil && (a.active > 0 || a.conns > 0 || a.untracked || now.Sub(a.lastSeen) < agentLostAfter)
}

// lostAnswer is the final message for a command whose agent was lost: a
// -32603 tunnel failure for JSON-RPC requests (the call may or may not have
// run: it is never sent to another agent), a bare 502 for the others.
func lostAnswer(p *pending) *wire.Response {
	return agentGoneAnswer(p, "tunnel: the agent handling this call was lost", lostData)
}

// agentGoneAnswer is the final message for a command its agent will never
// answer: msg and data in a -32603 for JSON-RPC requests, a bare 502 for
// the others.
func agentGoneAnswer(p *pending, msg string, data json.RawMessage) *wire.Response {
	resp := &wire.Response{RequestID: p.cmd.RequestID, Channel: p.cmd.Channel, RespCode: http.StatusBadGateway}
	switch p.cmd.CommandType {
	case wire.CommandSessionTermination:
		resp.RespType = wire.RespSessionTermination
	case wire.CommandOAuthDiscovery:
		resp.RespType = wire.RespOAuthDiscovery
	default:
		resp.RespType = wire.RespJSONRPCResponse
		peek, _ := engine.PeekMessage(p.cmd.JSONRPC)
		resp.RespJSON = engine.ErrorResponse(peek.ID, &engine.RPCError{Code: engine.CodeInternalError, Message: msg, Data: data})
	}
	return resp
}

// lostData is error.data of a lost agent's calls.
var lostData = func() json.RawMessage {
	b, _ := json.Marshal(map[string]wire.TunnelFailure{"tunnel_failure": {
		Version: 1, Source: wire.SourceTransportClosed, TransportErrorKind: "agent_lost"}})
	return b
}()
