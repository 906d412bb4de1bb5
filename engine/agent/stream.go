package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// Standalone GET streams: the wire.ExtGetStream extension (docs/wire.md,
// RATIONALE.md).
//
// A get_stream command takes a worker only long enough to claim one of
// MaxStreams slots; the stream then runs on a goroutine of its own, so open
// streams never hold a buffer slot or a worker that calls need. Each stream
// posts what the MCP server sends, in order, one POST at a time, and a
// heartbeat when it has been quiet; the relay's 404 to any of them means
// the MCP client left, and the agent closes its upstream GET.

// streams is the agent's state of the extension.
type streams struct {
	// enabled: the config allows it and the main binding can stream.
	enabled bool
	// ok: the relay advertised the extension on its latest answer.
	ok atomic.Bool
	// slots holds one token per open stream.
	slots chan struct{}
	// ctx ends the streams when the agent stops polling.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// initStreams sets up the extension after New built baseHeader.
func (a *Agent) initStreams() {
	_, canStream := a.bindings[wire.DefaultChannel].(binding.Streamer)
	a.streams.enabled = !a.cfg.NoGetStream && canStream
	a.streams.slots = make(chan struct{}, a.cfg.MaxStreams)
}

// setStreamOK records whether the relay's answer h advertises the extension.
func (a *Agent) setStreamOK(h http.Header) {
	ok := a.streams.enabled && wire.HasExtension(h.Get(wire.HeaderExtensions), wire.ExtGetStream)
	if a.streams.ok.Swap(ok) != ok {
		a.log.Debug("relay get streams", "enabled", ok)
	}
}

// getStream starts a get_stream command's stream on a goroutine of its own,
// or answers it at once: 405 when the channel's binding has no GET stream
// (as an MCP server without one would), 429 when MaxStreams are open.
func (r *run) getStream() {
	r.method = wire.CommandGetStream
	sb, ok := r.binding().(binding.Streamer)
	if !ok {
		r.debug("binding has no GET stream: answered 405")
		r.postFinal(wire.RespJSONRPCResponse, http.StatusMethodNotAllowed, nil, nil, outcomeMCPError)
		return
	}
	a := r.a
	select {
	case a.streams.slots <- struct{}{}:
	default:
		a.m.streamsRefused.Inc()
		a.log.Warn("GET stream refused: mcp.max-streams are open", "request_id", r.t.cmd.RequestID, "channel", r.t.cmd.Channel,
			"max_streams", a.cfg.MaxStreams)
		r.postFinal(wire.RespJSONRPCResponse, http.StatusTooManyRequests, nil, nil, outcomeMCPError)
		return
	}
	a.streams.wg.Add(1)
	a.m.streamsOpen.Inc()
	go func() {
		defer a.streams.wg.Done()
		defer func() { <-a.streams.slots }()
		defer a.m.streamsOpen.Dec()
		t := *r.t
		a.serveStream(&t, sb)
	}()
}

// errStreamGone: the relay no longer knows the stream (404): the MCP client
// left, or the relay restarted.
var errStreamGone = errors.New("relay no longer knows the stream")

// streamPostTimeout bounds one POST of an open stream, which has no
// deadline of its own.
const streamPostTimeout = 30 * time.Second

// stream is one open GET stream.
type stream struct {
	a       *Agent
	t       *task // deadline cleared once the stream opened
	ctx     context.Context
	cancel  context.CancelFunc
	x       *engine.Exchange // nil without a pipeline
	open    *time.Timer      // the opening deadline; nil without one
	session string           // the stream's Mcp-Session-Id

	opened  bool        // the opened message was posted
	expired atomic.Bool // the opening deadline passed
	gone    atomic.Bool // the relay answered 404
	postErr error       // a stream message could not be posted

	mu     sync.Mutex // serializes POSTs; guards the fields below
	final  bool       // the final response was handled
	lastOK time.Time  // the last POST the relay took
	last   time.Time  // the last POST made
	hbStop chan struct{}
	hbDone chan struct{}
}

// serveStream runs one stream until it ends, then posts its final response
// (unless the relay no longer wants one).
func (a *Agent) serveStream(t *task, sb binding.Streamer) {
	ctx, cancel := context.WithCancel(a.streams.ctx)
	defer cancel()
	header := canonicalHeader(t.cmd.Headers)
	s := &stream{a: a, t: t, ctx: ctx, cancel: cancel, session: header.Get("Mcp-Session-Id")}
	if !t.deadline.IsZero() {
		s.open = time.AfterFunc(time.Until(t.deadline), func() {
			s.expired.Store(true)
			cancel()
		})
	}
	if a.pipeline != nil {
		s.x = a.pipeline.Begin()
		defer s.x.Close()
	}
	a.log.Debug("GET stream starting", "request_id", t.cmd.RequestID, "channel", t.cmd.Channel)
	err := sb.Stream(ctx, header, s.emit)
	s.stopHeartbeats()
	if s.open != nil {
		s.open.Stop()
	}
	s.mu.Lock()
	final := s.final
	s.mu.Unlock()
	switch {
	case final:
	case s.gone.Load():
		a.log.Debug("GET stream closed: the MCP client left", "request_id", t.cmd.RequestID, "channel", t.cmd.Channel)
		a.m.outcome(outcomeOK)
	case s.expired.Load() && !s.opened:
		a.log.Debug("GET stream not opened before its deadline: nothing posted", "request_id", t.cmd.RequestID, "channel", t.cmd.Channel)
		a.m.outcome(outcomeExpired)
	case a.streams.ctx.Err() != nil:
		// The agent is stopping: end the client's stream so that it
		// reconnects (to another agent, or to this one restarted).
		st := http.StatusOK
		if !s.opened {
			st = http.StatusServiceUnavailable
		}
		s.finish(st, nil, nil, outcomeOK)
	case s.postErr != nil:
		// A message could not be delivered: end the stream, so the client
		// resumes it (Last-Event-ID) and the server sends it again.
		a.log.Warn("GET stream message post failed: closing the stream", "request_id", t.cmd.RequestID, "channel", t.cmd.Channel, "err", s.postErr)
		s.finish(http.StatusOK, nil, nil, outcomePostFailed)
	case s.opened:
		a.log.Info("GET stream broke", "request_id", t.cmd.RequestID, "channel", t.cmd.Channel, "err", err)
		s.finish(http.StatusBadGateway, nil, nil, outcomeTunnelFailure)
	default:
		if err == nil {
			err = &binding.Error{Source: wire.SourceProtocol, Kind: "response_body_missing", Err: errors.New("binding returned without a final reply")}
		}
		a.log.Info("GET stream could not be opened", "request_id", t.cmd.RequestID, "channel", t.cmd.Channel, "err", err)
		f, code := failureFor(err)
		s.finish(code, nil, failureBody(nil, f), outcomeTunnelFailure)
	}
}

// emit handles one reply of the binding's stream.
func (s *stream) emit(rep *binding.Reply) error {
	status := rep.Status
	if status == 0 {
		status = http.StatusOK
	}
	if rep.Final {
		body := rep.Body
		header := rep.Header
		if len(body) > 0 && s.x != nil {
			o := s.x.Response(s.ctx, s.message(status, header, body, false))
			body, header = o.Body, o.Header
			if o.Status != 0 {
				status = o.Status
			}
		}
		oc := outcomeOK
		if status >= 400 {
			oc = outcomeMCPError
		}
		s.finish(status, header, objectOrNull(body), oc)
		return nil
	}
	if !s.opened {
		if s.open != nil && !s.open.Stop() {
			return context.DeadlineExceeded // the opening deadline passed first
		}
		s.opened = true
		s.t = &task{cmd: s.t.cmd, receipt: s.t.receipt} // the deadline bounded the opening only
		if err := s.send(status, rep.Header, nil); err != nil {
			return err
		}
		s.startHeartbeats()
		if len(rep.Body) == 0 && rep.EventID == "" {
			return nil
		}
		// A binding that opened with a message: deliver it too.
	}
	body := rep.Body
	if len(body) > 0 && s.x != nil {
		o := s.x.Response(s.ctx, s.message(status, rep.Header, body, true))
		body = o.Body
		if o.Action == engine.Drop {
			body = nil
		}
	}
	var header http.Header
	if rep.EventID != "" && wire.ValidEventID(rep.EventID) {
		// Even for a message the chain dropped: the client then does not
		// resume from before it.
		header = http.Header{wire.HeaderLastEventID: {rep.EventID}}
	}
	if len(body) == 0 && header == nil {
		return nil
	}
	return s.send(status, header, body)
}

// message is the chain's view of one stream message: a server-initiated
// message has no request, so its method is its own.
func (s *stream) message(status int, header http.Header, body json.RawMessage, notification bool) *engine.Message {
	method := ""
	if p, err := engine.PeekMessage(body); err == nil {
		method = p.Method
	}
	return &engine.Message{Hook: engine.HookResponse, Side: engine.SideAgent, Tunnel: s.a.cfg.TunnelID,
		Channel: s.t.cmd.Channel, SessionID: s.session, RequestID: s.t.cmd.RequestID,
		Method: method, Caller: s.t.cmd.Caller, Status: status, Header: header, Body: body, Notification: notification}
}

// send posts one jsonrpc_notify of the stream. After a failure the stream
// ends: errStreamGone when the relay answered 404.
func (s *stream) send(status int, header http.Header, body json.RawMessage) error {
	payload := encodeResponse(s.t.cmd.RequestID, s.t.cmd.Channel, wire.RespJSONRPCNotify, status, header, body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.final {
		return nil
	}
	err := s.post(payload)
	switch {
	case err == nil:
	case errors.Is(err, errStreamGone):
		s.gone.Store(true)
	default:
		s.postErr = err
	}
	return err
}

// post sends one notification with the retry rules of notifications
// (WIRE.md: 429 and failures before the request was written), s.mu held.
func (s *stream) post(payload []byte) error {
	var lastErr error
	for i := 0; i < notifyTries; i++ {
		if i > 0 {
			if err := sleepCtx(s.a.postCtx, time.Time{}, lastDelay(lastErr, i)); err != nil {
				return fmt.Errorf("post stream message: %w (after %w)", err, lastErr)
			}
		}
		retry, err := s.postOnce(payload)
		if err == nil {
			s.lastOK = s.last
			return nil
		}
		lastErr = err
		if !retry || s.a.postCtx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("post stream message: %w", lastErr)
}

func (s *stream) postOnce(payload []byte) (retry bool, err error) {
	var wrote atomic.Bool
	ctx, cancel := context.WithTimeout(s.a.postCtx, streamPostTimeout)
	defer cancel()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	})
	s.last = time.Now()
	resp, err := s.a.postRaw(ctx, s.a.respURL, s.t.cmd.ShardToken, payload)
	if err != nil {
		return !wrote.Load(), err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return false, errStreamGone
	}
	return s.a.classify(resp.StatusCode, resp.Header, false)
}

// finish posts the stream's final response once.
func (s *stream) finish(status int, header http.Header, body json.RawMessage, oc outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.final {
		return
	}
	s.final = true
	ctx, cancel := context.WithTimeout(s.a.postCtx, finalTries*streamPostTimeout)
	defer cancel()
	if err := s.a.post(ctx, s.t, wire.RespJSONRPCResponse, status, header, body, true); err != nil {
		s.a.log.Warn("GET stream final post failed", "request_id", s.t.cmd.RequestID, "channel", s.t.cmd.Channel, "err", err)
		oc = outcomePostFailed
	}
	s.a.m.outcome(oc)
}

// startHeartbeats starts the goroutine that posts a heartbeat when the
// stream has been quiet for half the heartbeat interval at a check, so it
// is never quiet for a whole one. A relay that has not taken a POST for
// wire.StreamIdleTimeout has ended the client's stream: the stream closes.
func (s *stream) startHeartbeats() {
	s.hbStop, s.hbDone = make(chan struct{}), make(chan struct{})
	every := s.a.cfg.StreamHeartbeat / 2
	go func() {
		defer close(s.hbDone)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-s.hbStop:
				return
			case <-s.ctx.Done():
				return
			case <-tick.C:
			}
			s.mu.Lock()
			quiet := time.Since(s.last) >= every
			lost := time.Since(s.lastOK) >= wire.StreamIdleTimeout
			s.mu.Unlock()
			if lost {
				s.a.log.Info("GET stream closed: the relay has not taken a message for too long", "request_id", s.t.cmd.RequestID)
				s.gone.Store(true)
				s.cancel()
				return
			}
			if !quiet {
				continue
			}
			payload := encodeResponse(s.t.cmd.RequestID, s.t.cmd.Channel, wire.RespJSONRPCNotify, http.StatusOK, nil, nil)
			s.mu.Lock()
			var err error
			if !s.final {
				err = s.post(payload)
			}
			s.mu.Unlock()
			if errors.Is(err, errStreamGone) {
				s.gone.Store(true)
				s.cancel()
				return
			}
		}
	}()
}

// stopHeartbeats stops the heartbeat goroutine and waits for it.
func (s *stream) stopHeartbeats() {
	if s.hbStop == nil {
		return
	}
	close(s.hbStop)
	<-s.hbDone
}
