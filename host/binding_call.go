package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
)

// kindCancelled is a call cut short by its caller's context: not the
// plugin's failure, so it is not counted as one.
const kindCancelled = "cancelled"

// bindingResult is a decoded binding reply and the action that made it.
type bindingResult struct {
	reply  binding.Reply
	action engine.Action
}

// callBinding runs one binding call: the request m (hook HookCall) goes to
// sluice_on_call, notifications the guest emits meanwhile go to emit, and the
// reply is decoded and checked against req. It returns the failure kind and
// an error when the instance must be discarded.
func (i *nativeInstance) callBinding(ctx context.Context, m *engine.Message, req *binding.Request, emit func([]byte) error) (bindingResult, string, error) {
	s := i.b.s
	if i.onCall == nil {
		return bindingResult{}, kindMalformed, fmt.Errorf("missing export %s", ExportOnCall)
	}
	size := envelopeSize(m)
	if size > uint64(s.cfg.MaxMessageSize)+envelopeSlack {
		return bindingResult{}, kindTooLarge, fmt.Errorf("envelope of %d bytes exceeds max-message-size", size)
	}
	bc := i.bc
	if bc == nil {
		bc = &bindingCall{i: i}
		i.bc = bc
	}
	bc.ctx, bc.emit, bc.id = ctx, emit, req.ID
	bc.result, bc.hasResult, bc.emitted, bc.violation = bc.result[:0], false, 0, nil
	bc.budget, bc.used, bc.timedOut = s.cfg.CallTimeout, 0, false
	i.msg = m
	defer func() {
		bc.ctx, bc.emit, bc.id, i.msg = nil, nil, nil, nil
		if cap(bc.buf) > 1<<20 { // do not keep a large response's buffer
			bc.buf, bc.result = nil, nil
		}
	}()
	cctx := context.WithValue(ctx, instanceKey{}, i)

	if i.timer != nil {
		// The budget bounds the guest's own compute: host calls pause it,
		// and ctx ending interrupts the guest at once.
		bc.resumed = time.Now()
		i.timer.Reset(bc.budget)
		stopCancel := context.AfterFunc(ctx, func() { i.timer.Reset(0) })
		ans, kind, err := i.invokeOnCall(cctx, m, req, size)
		cancelled := !stopCancel()
		fired := !i.timer.Stop() || bc.timedOut
		switch {
		case cancelled || (fired && ctx.Err() != nil):
			// The interrupt may be set even if the guest finished: the
			// instance is spent either way.
			return bindingResult{}, kindCancelled, fmt.Errorf("%s: %w", ExportOnCall, context.Cause(ctx))
		case fired:
			return bindingResult{}, kindTimeout, fmt.Errorf("%s: did not return within call-timeout %s", ExportOnCall, s.cfg.CallTimeout)
		case err != nil:
			return bindingResult{}, kind, err
		}
		return i.bindingReply(ans, req)
	}
	// A module the host could not instrument (wazero's own checks) or a
	// trusted one: the deadline, if any, bounds the whole call, I/O included.
	if !s.cfg.Trusted {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(cctx, s.cfg.CallTimeout)
		defer cancel()
		bc.ctx = cctx
	}
	ans, kind, err := i.invokeOnCall(cctx, m, req, size)
	switch {
	case err != nil && ctx.Err() != nil:
		return bindingResult{}, kindCancelled, fmt.Errorf("%s: %w", ExportOnCall, context.Cause(ctx))
	case err != nil:
		return bindingResult{}, kind, err
	}
	return i.bindingReply(ans, req)
}

// invokeOnCall writes the envelope, calls sluice_on_call and returns the
// reply's bytes (a view into guest memory).
func (i *nativeInstance) invokeOnCall(ctx context.Context, m *engine.Message, req *binding.Request, size uint64) ([]byte, string, error) {
	ptr, kind, err := i.putEnvelope(ctx, m, size)
	if err != nil {
		return nil, kind, err
	}
	if req.Kind == binding.KindSessionTermination {
		if b, ok := i.mem.Read(ptr+envOffFlags, 1); ok {
			b[0] |= envFlagSessionEnd
		}
	}
	st := i.stack[:]
	st[0], st[1] = uint64(ptr), size
	if err := i.onCall.CallWithStack(ctx, st); err != nil {
		return nil, i.classify(ctx, err), fmt.Errorf("%s: %w", ExportOnCall, firstLine(err))
	}
	ans, err := i.answer(st[0])
	if err != nil {
		return nil, kindMalformed, err
	}
	return ans, "", nil
}

// bindingReply decodes the reply and applies the call's protocol checks.
func (i *nativeInstance) bindingReply(ans []byte, req *binding.Request) (bindingResult, string, error) {
	if v := i.bc.violation; v != nil {
		return bindingResult{}, kindMalformed, v
	}
	rep, a, err := decodeBindingReply(ans, req, i.bc.emitted)
	if err != nil {
		return bindingResult{}, kindMalformed, err
	}
	return bindingResult{rep, a}, "", nil
}

// decodeBindingReply parses a reply (the answer layout of sdk/ABI.md) for
// req. The reply's body is copied out of guest memory.
//
//   - respond: the body is the JSON-RPC response (its id must be the
//     request's); for a notification or a session end there is no body, only
//     a status (default 202 and 200).
//   - reject: the body is a JSON-RPC error object; the host wraps it in a
//     response with the request's id.
//   - the empty reply accepts a notification (202) or a session end (200);
//     for a request it is no answer at all, a failure.
//
// Header edits of op set or add become the reply's HTTP headers.
func decodeBindingReply(b []byte, req *binding.Request, emitted int) (binding.Reply, engine.Action, error) {
	expectsBody := req.Kind == binding.KindJSONRPC && !req.Notification
	defStatus := http.StatusOK
	if req.Kind == binding.KindJSONRPC && req.Notification {
		defStatus = http.StatusAccepted
	}
	if len(b) == 0 {
		if expectsBody {
			return binding.Reply{}, 0, errors.New("no answer to a request")
		}
		return binding.Reply{Status: defStatus, Final: true}, engine.Respond, nil
	}
	if len(b) < ansMinLen {
		return binding.Reply{}, 0, fmt.Errorf("reply of %d bytes is shorter than %d", len(b), ansMinLen)
	}
	a := engine.Action(b[ansOffAction])
	if a != engine.Respond && a != engine.Reject {
		return binding.Reply{}, 0, fmt.Errorf("reply action %s: want respond or reject", a)
	}
	status := int(le.Uint32(b[ansOffStatus:]))
	if status != 0 && (status < 100 || status > 599) {
		return binding.Reply{}, 0, fmt.Errorf("reply status %d is not an HTTP status", status)
	}
	rd := answerReader{b: b, o: ansOffHeaders}
	n := rd.u32()
	if uint64(n)*9 > uint64(len(b)) {
		return binding.Reply{}, 0, fmt.Errorf("reply header count %d overruns the reply", n)
	}
	var h http.Header
	for j := uint32(0); j < n && rd.err == nil; j++ {
		if rd.o >= len(b) {
			return binding.Reply{}, 0, errors.New("reply truncated in its headers")
		}
		op := b[rd.o]
		rd.o++
		name, val := rd.bytes(), rd.bytes()
		if rd.err != nil {
			break
		}
		if op != headerOpSet && op != headerOpAdd {
			return binding.Reply{}, 0, fmt.Errorf("reply header op %d: want set or add", op)
		}
		if len(name) == 0 || bytes.ContainsAny(name, " \t\r\n:") || bytes.ContainsAny(val, "\r\n") {
			return binding.Reply{}, 0, fmt.Errorf("reply header %q is not valid", name)
		}
		if h == nil {
			h = http.Header{}
		}
		k := http.CanonicalHeaderKey(string(name))
		if op == headerOpSet {
			h[k] = []string{string(val)}
		} else {
			h[k] = append(h[k], string(val))
		}
	}
	body := rd.bytes()
	if rd.err != nil {
		return binding.Reply{}, 0, fmt.Errorf("reply: %w", rd.err)
	}
	if rd.o != len(b) {
		return binding.Reply{}, 0, fmt.Errorf("reply has %d trailing bytes", len(b)-rd.o)
	}
	rep := binding.Reply{Status: status, Header: h, Final: true}
	if rep.Status == 0 {
		rep.Status = defStatus
	}
	switch {
	case !expectsBody:
		if a == engine.Respond && b[ansOffFlags]&ansFlagBody != 0 && len(body) > 0 {
			return binding.Reply{}, 0, errors.New("reply has a body, but a notification or a session end has no response")
		}
		if a == engine.Reject && status == 0 {
			rep.Status = http.StatusBadRequest
		}
		return rep, a, nil
	case a == engine.Reject:
		e, err := parseRPCError(body)
		if err != nil {
			return binding.Reply{}, 0, err
		}
		rep.Body = engine.ErrorResponse(req.ID, e)
	default:
		if b[ansOffFlags]&ansFlagBody == 0 || len(body) == 0 {
			return binding.Reply{}, 0, errors.New("respond without a body to a request")
		}
		p, err := engine.PeekMessage(body)
		if err != nil {
			return binding.Reply{}, 0, errors.New("reply body is not a single JSON object")
		}
		if !p.HasResult || p.Method != "" {
			return binding.Reply{}, 0, errors.New("reply body is not a JSON-RPC response")
		}
		if !bytes.Equal(bytes.TrimSpace(p.ID), bytes.TrimSpace(req.ID)) {
			return binding.Reply{}, 0, fmt.Errorf("reply answers id %s, not the request's %s", truncate(p.ID, 40), truncate(req.ID, 40))
		}
		rep.Body = bytes.Clone(body)
	}
	if rep.Header == nil {
		rep.Header = http.Header{}
	}
	if rep.Header.Get("Content-Type") == "" {
		ct := "application/json"
		if emitted > 0 {
			ct = engine.EventStream // the notifications came first: an SSE answer
		}
		rep.Header.Set("Content-Type", ct)
	}
	return rep, a, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// failureText says what a failure kind means, for the client's error message.
func failureText(kind string) string {
	switch kind {
	case kindTrap:
		return "trapped"
	case kindTimeout:
		return "did not answer within its call-timeout"
	case kindOOM:
		return "ran out of memory"
	case kindTooLarge:
		return "was sent a message larger than its max-message-size"
	case kindCircuitOpen:
		return "is not running: its circuit is open after repeated failures"
	}
	return "answered with a malformed reply"
}

// failureReply is the final reply for a call the plugin failed: a -32603
// JSON-RPC error naming the plugin for a request, a bare 500 otherwise.
func failureReply(req *binding.Request, plugin, kind string) *binding.Reply {
	if req.Kind != binding.KindJSONRPC || req.Notification {
		return &binding.Reply{Status: http.StatusInternalServerError, Final: true}
	}
	var data strings.Builder
	data.WriteString(`{"plugin":`)
	data.Write(jsonString(plugin))
	data.WriteString(`,"kind":`)
	data.Write(jsonString(kind))
	data.WriteString(`}`)
	body := engine.ErrorResponse(req.ID, &engine.RPCError{
		Code:    engine.CodeInternalError,
		Message: fmt.Sprintf("binding plugin %q %s", plugin, failureText(kind)),
		Data:    []byte(data.String()),
	})
	return &binding.Reply{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: body, Final: true}
}
