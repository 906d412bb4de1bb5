package relay

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/wire"
)

// The standalone GET stream: the wire.ExtGetStream extension (docs/wire.md,
// RATIONALE.md). A client's GET becomes a get_stream command, handed only to
// a poll that offered the extension; the agent's jsonrpc_notify messages
// open the client's event stream and fill it, and its final response ends
// it (or, before it opened, is the answer: 405 from a server without a GET
// stream, 429 at the agent's stream limit, …).

// outcomeStreamLost: the agent went silent on an open GET stream, which the
// relay then ended.
const outcomeStreamLost = "stream_lost"

// handleMCPGet serves GET /v1/mcp/{id}: a standalone GET stream when a
// connected agent carries them, 405 otherwise (as before the extension).
// HEAD, which the GET pattern would also route, has its own (handleMCPOther).
func (r *Relay) handleMCPGet(w http.ResponseWriter, req *http.Request, d door) {
	id, start, t := d.id, d.start, d.t
	now := time.Now()
	if !t.connected(now, r.set.agentTimeout) {
		w.Header().Set("Retry-After", retryAfterNotConnected)
		writeAPIError(w, http.StatusServiceUnavailable, "server_error", wire.CodeTunnelClientNotConnected, "no tunnel agent is connected for this tunnel")
		r.met.request(id, outcomeNoAgent, start)
		return
	}
	if !t.streamsOffered(now, r.set.agentTimeout) {
		r.handleMCPOther(w, req)
		return
	}
	e := r.newExchange(req, &d, wire.CommandGetStream, nil, now)
	e.sse = true
	if r.pipeline != nil && r.pipeline.Chain().Len() > 0 {
		e.x = r.pipeline.Begin()
		defer e.x.Close()
	}
	r.met.request(id, r.runStream(w, req, e), start)
}

// runStream enqueues e's get_stream command and relays the stream until it
// ends. It returns the request outcome.
func (r *Relay) runStream(w http.ResponseWriter, req *http.Request, e *exchange) string {
	t, p := e.t, e.p
	if err := r.enqueue(t, p); err != nil {
		return r.refuseEnqueue(w, t, err)
	}
	open := time.NewTimer(time.Until(p.deadline)) // until the agent opens the stream
	defer open.Stop()
	idle := time.NewTimer(r.streamIdle) // agent silence once open
	idle.Stop()
	defer idle.Stop()
	var (
		opened bool
		ka     *time.Ticker
		kaC    <-chan time.Time
	)
	defer func() {
		if opened {
			ka.Stop()
			t.openStreams.Add(-1)
		}
	}()
	rc := http.NewResponseController(w)
	for {
		select {
		case <-p.signal:
			for _, m := range p.take() {
				if m.Final() {
					t.forget(p)
					if opened {
						return outcomeSSE // the stream ended: nothing more to write
					}
					switch mapStatus(m.RespCode) {
					case http.StatusMethodNotAllowed:
						w.Header().Set("Allow", "POST, DELETE")
					case http.StatusTooManyRequests, http.StatusServiceUnavailable:
						w.Header().Set("Retry-After", "5")
					}
					return r.final(w, req, rc, e, m, false)
				}
				if !opened {
					opened = true
					open.Stop()
					t.openStreams.Add(1)
					copyRespHeaders(w.Header(), m.RespHeaders, e)
					startSSE(w)
					if err := rc.Flush(); err != nil {
						t.forget(p)
						return outcomeClientGone
					}
					ka = time.NewTicker(r.keepalive)
					kaC = ka.C
				}
				idle.Reset(r.streamIdle)
				if err := r.streamEvent(w, rc, req, e, m); err != nil {
					t.forget(p)
					return outcomeClientGone
				}
			}
		case <-kaC:
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil || rc.Flush() != nil {
				t.forget(p)
				return outcomeClientGone
			}
		case <-open.C:
			t.forget(p)
			r.log.Info("get stream: not opened in time", "tunnel", t.id, "request_id", p.cmd.RequestID)
			writeRPC(w, http.StatusGatewayTimeout, engine.ErrorResponse(nil, &engine.RPCError{
				Code: engine.CodeInternalError, Message: "tunnel: response timeout",
				Data: json.RawMessage(`{"tunnel_failure":{"version":1,"source":"timeout","upstream_response_received":false}}`),
			}))
			return outcomeTimeout
		case <-idle.C:
			// No message and no heartbeat for three heartbeats: the agent
			// is gone. End the stream; the client reconnects.
			t.forget(p)
			r.log.Info("get stream: the agent went silent: stream ended", "tunnel", t.id, "request_id", p.cmd.RequestID)
			return outcomeStreamLost
		case <-req.Context().Done():
			t.forget(p)
			return outcomeClientGone
		case <-t.done:
			t.forget(p)
			r.streamUnavailable(w, e, opened, "tunnel removed")
			return outcomeUnavailable
		case <-r.closing:
			t.forget(p)
			r.streamUnavailable(w, e, opened, "relay shutting down")
			return outcomeUnavailable
		case <-r.draining:
			// A stream has no end to wait for: end it now, so the client
			// reconnects (with Last-Event-ID) to a relay that stays.
			t.forget(p)
			r.streamUnavailable(w, e, opened, "relay shutting down")
			return outcomeUnavailable
		}
	}
}

// streamEvent writes one agent message of an open stream to the client: a
// server message (through the chain), an event id alone, or nothing (the
// opening message, a heartbeat).
func (r *Relay) streamEvent(w http.ResponseWriter, rc *http.ResponseController, req *http.Request, e *exchange, m *wire.Response) error {
	id := eventID(m.RespHeaders)
	body := m.RespJSON
	if isNull(body) {
		body = nil
	} else if e.x != nil {
		out := e.x.Response(req.Context(), r.streamMessage(e, m))
		body = out.Body
		if out.Action == engine.Drop {
			body = nil
		}
	}
	if len(body) == 0 && id == "" {
		return nil
	}
	return writeStreamEvent(w, rc, id, body)
}

// streamMessage is the chain's view of a server message on a GET stream:
// there is no request, so its method is the message's own.
func (r *Relay) streamMessage(e *exchange, m *wire.Response) *engine.Message {
	msg := r.responseMessage(e, m, true)
	msg.Method = ""
	if p, err := engine.PeekMessage(m.RespJSON); err == nil {
		msg.Method = p.Method
	}
	return msg
}

// eventID returns a stream message's SSE event id from its resp_headers,
// "" when none or when it cannot be written as an SSE id.
func eventID(h map[string][]string) string {
	for k, vs := range h {
		if http.CanonicalHeaderKey(k) == wire.HeaderLastEventID && len(vs) > 0 && wire.ValidEventID(vs[0]) {
			return vs[0]
		}
	}
	return ""
}

// writeStreamEvent writes one SSE event with an id field when id is set; a
// nil msg writes the id alone (the client's last event id moves on).
func writeStreamEvent(w http.ResponseWriter, rc *http.ResponseController, id string, msg []byte) error {
	if id == "" {
		return writeEvent(w, rc, msg)
	}
	if _, err := w.Write([]byte("id: " + id + "\n")); err != nil {
		return err
	}
	if len(msg) == 0 {
		if _, err := w.Write([]byte("data:\n\n")); err != nil {
			return err
		}
		return rc.Flush()
	}
	return writeEvent(w, rc, msg)
}

// streamUnavailable ends a stream the relay gives up on: an open one just
// ends (the client reconnects), one not yet open gets 503.
func (r *Relay) streamUnavailable(w http.ResponseWriter, e *exchange, opened bool, why string) {
	if opened {
		return
	}
	w.Header().Set("Retry-After", "1")
	writeRPC(w, http.StatusServiceUnavailable, engine.ErrorResponse(nil, &engine.RPCError{Code: engine.CodeInternalError, Message: "tunnel: " + why}))
}

// streamsOffered reports whether an agent that offered GET streams is
// polling the tunnel or polled within timeout (here, or on another replica
// of a Cluster).
func (t *tunnelState) streamsOffered(now time.Time, timeout time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.offering > 0 || (!t.lastOffer.IsZero() && now.Sub(t.lastOffer) < timeout) ||
		(!t.remoteOffer.IsZero() && now.Sub(t.remoteOffer) < timeout)
}

// offerStart and offerEnd bracket a poll that offered GET streams.
func (t *tunnelState) offerStart(now time.Time) {
	t.mu.Lock()
	t.offering++
	t.lastOffer = now
	t.mu.Unlock()
}

func (t *tunnelState) offerEnd(now time.Time) {
	t.mu.Lock()
	t.offering--
	t.lastOffer = now
	t.mu.Unlock()
}

// requeue puts a command in its queue (again, after a poller left): a
// get_stream command in the stream queue, which only polls that offered the
// extension read. It reports false when that queue is full.
func (t *tunnelState) requeue(p *pending) bool {
	t.makeQueues()
	q := t.queue
	switch {
	case p.pinnedTo != "":
		q = t.instanceQueue(p.pinnedTo)
	case p.cmd.CommandType == wire.CommandGetStream:
		q = t.streams
	}
	select {
	case q <- p:
		return true
	default:
		return false
	}
}
