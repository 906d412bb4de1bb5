package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ChainStage is one Stage with the policy the chain applies around it.
type ChainStage struct {
	Stage   Stage
	OnError OnError
	// Shadow stages are called and their verdicts logged and counted, but not
	// applied: the way to roll out a new policy safely.
	Shadow bool
}

// Observer receives one event per stage call. Implementations must be cheap and
// safe for concurrent use; nil fields of ChainOptions mean none.
type Observer interface {
	StageCalled(stage string, h Hook, a Action, failed bool, shadow bool, d time.Duration)
}

// ChainOptions configure a Chain. The zero value is valid.
type ChainOptions struct {
	Logger   *slog.Logger // nil = discard
	Observer Observer     // nil = none
}

// Chain is an ordered list of stages, compiled once at load and shared by all
// exchanges. Direction rule: requests go down the configured order, responses
// come back up in reverse, once per response message. With stages [a, b]:
//
//	client ── request ──▶ a.Handle ──▶ b.Handle ──▶ binding (MCP server)
//	client ◀─ response ── a.Handle ◀── b.Handle ◀── each SSE event, then the final response
//
// If b answers the request itself (Respond), its response goes up through a
// only; if b rejects, the client gets the error and nothing further runs.
type Chain struct {
	stages []ChainStage
	log    *slog.Logger
	obs    Observer
}

// NewChain builds a chain over stages in request order.
func NewChain(stages []ChainStage, opts ChainOptions) *Chain {
	l := opts.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &Chain{stages: stages, log: l, obs: opts.Observer}
}

// Len returns the number of stages.
func (c *Chain) Len() int {
	if c == nil {
		return 0
	}
	return len(c.stages)
}

// Stages returns the stage names in request order.
func (c *Chain) Stages() []string {
	if c == nil {
		return nil
	}
	out := make([]string, len(c.stages))
	for i, s := range c.stages {
		out[i] = s.Stage.Name()
	}
	return out
}

// OpenCircuits returns the names of the stages whose circuit breaker is
// open (see CircuitBreaker), in request order; nil when there are none.
func (c *Chain) OpenCircuits() []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, s := range c.stages {
		if b, ok := s.Stage.(CircuitBreaker); ok && b.CircuitOpen() {
			out = append(out, s.Stage.Name())
		}
	}
	return out
}

// Close closes every stage.
func (c *Chain) Close() error {
	if c == nil {
		return nil
	}
	var errs []error
	for _, s := range c.stages {
		errs = append(errs, s.Stage.Close())
	}
	return errors.Join(errs...)
}

// Outcome is what the chain decided for one message.
type Outcome struct {
	// Action is Continue (forward Body/Header, possibly changed), Respond
	// (answer with Body, Status), Reject (answer with Body, an error response,
	// and Status) or Drop (discard the notification).
	Action Action
	Body   json.RawMessage
	Header http.Header
	Status int
	// Stage names the stage that decided a Respond, Reject or Drop, or whose
	// failure did.
	Stage string
	// Failed is true when the outcome comes from a plugin failure.
	Failed bool
	// Changed names the last stage that changed the message (replace) when
	// the outcome is Continue: what the audit names when no stage decided.
	Changed string
}

// Exchange runs one MCP exchange (one request and everything it produces)
// through a chain. It is used by one goroutine at a time.
type Exchange struct {
	c       *Chain
	ref     *chainRef
	filters []Filter
	opened  []bool
	reached int             // stages that saw the request; responses go back through these
	id      json.RawMessage // the request's JSON-RPC id, for synthesized errors
	method  string
}

// Begin starts an exchange on c. Close must be called when it ends.
func (c *Chain) Begin() *Exchange {
	x := &Exchange{c: c}
	if n := c.Len(); n > 0 {
		x.filters = make([]Filter, n)
		x.opened = make([]bool, n)
		x.reached = n
	}
	return x
}

// Method returns the JSON-RPC method of the exchange's request, once Request ran.
func (x *Exchange) Method() string { return x.method }

func (x *Exchange) filter(ctx context.Context, i int) (Filter, error) {
	if x.opened[i] {
		return x.filters[i], nil
	}
	f, err := x.c.stages[i].Stage.Open(ctx)
	if err != nil {
		return nil, err
	}
	x.filters[i], x.opened[i] = f, true
	return f, nil
}

func (x *Exchange) call(ctx context.Context, i int, m *Message) (Result, error) {
	s := x.c.stages[i]
	start := time.Now()
	f, err := x.filter(ctx, i)
	var r Result
	if err == nil {
		r, err = f.Handle(ctx, m)
	}
	if err == nil {
		err = checkResult(m, r)
	}
	if x.c.obs != nil {
		x.c.obs.StageCalled(s.Stage.Name(), m.Hook, r.Action, err != nil, s.Shadow, time.Since(start))
	}
	if err != nil {
		level := slog.LevelWarn
		if errors.Is(err, ErrCircuitOpen) {
			level = slog.LevelDebug // logged by the stage when its circuit opens
		}
		x.c.log.Log(ctx, level, "plugin failed", "plugin", s.Stage.Name(), "phase", m.Hook.String(),
			"request_id", m.RequestID, "method", m.Method, "err", err)
		return Result{}, err
	}
	if s.Shadow {
		if r.Action != Continue {
			x.c.log.Info("shadow verdict not applied", "plugin", s.Stage.Name(), "phase", m.Hook.String(),
				"request_id", m.RequestID, "method", m.Method, "action", r.Action.String())
		}
		return Result{}, nil
	}
	return r, nil
}

func checkResult(m *Message, r Result) error {
	switch r.Action {
	case Continue, Replace:
	case Respond:
		if m.Hook != HookRequest && len(r.Body) == 0 {
			return errors.New("respond without a body")
		}
	case Reject:
	case Drop:
		if !m.Notification {
			return errors.New("drop is only valid for notifications")
		}
	default:
		return errors.New("unknown action " + r.Action.String())
	}
	return nil
}

// Request runs a request message down the chain. m is updated in place on
// Replace. The outcome's Body is the message to forward (Continue) or the
// answer to send back (Respond, Reject).
func (x *Exchange) Request(ctx context.Context, m *Message) Outcome {
	if x.c.Len() == 0 {
		return Outcome{Action: Continue, Body: m.Body, Header: m.Header}
	}
	if len(x.id) == 0 {
		if p, err := PeekMessage(m.Body); err == nil {
			x.id, x.method = p.ID, p.Method
		}
	}
	n := x.c.Len()
	changed := ""
	for i := 0; i < n; i++ {
		s := x.c.stages[i]
		if !s.Stage.Wants(m.Hook, m.Method) {
			continue
		}
		r, err := x.call(ctx, i, m)
		if err != nil {
			if s.OnError == FailOpen {
				continue
			}
			x.reached = i
			if m.Notification {
				return Outcome{Action: Drop, Stage: s.Stage.Name(), Failed: true}
			}
			return Outcome{Action: Reject, Stage: s.Stage.Name(), Failed: true, Status: http.StatusOK,
				Body: ErrorResponse(x.id, &RPCError{Code: CodeInternalError, Message: "request blocked: plugin " + s.Stage.Name() + " failed"})}
		}
		switch r.Action {
		case Replace:
			changed = s.Stage.Name()
			before, beforeHeader := m.Body, m.Header
			apply(m, r)
			if err := fixRoutingHeaders(m, before, beforeHeader); err != nil {
				x.reached = i
				return Outcome{Action: Reject, Stage: s.Stage.Name(), Status: http.StatusOK,
					Body: ErrorResponse(x.id, &RPCError{Code: CodeInternalError, Message: "request blocked: plugin " + s.Stage.Name() + " " + err.Error()})}
			}
		case Respond:
			x.reached = i
			st := r.Status
			if st == 0 {
				st = http.StatusOK
			}
			m.Body, m.Status = r.Body, st
			if r.Header != nil {
				m.Header = r.Header
			}
			return Outcome{Action: Respond, Body: r.Body, Header: r.Header, Status: st, Stage: s.Stage.Name()}
		case Reject:
			x.reached = i
			return x.reject(r, s.Stage.Name(), m)
		case Drop:
			x.reached = i
			return Outcome{Action: Drop, Stage: s.Stage.Name()}
		}
	}
	return Outcome{Action: Continue, Body: m.Body, Header: m.Header, Changed: changed}
}

func (x *Exchange) reject(r Result, stage string, m *Message) Outcome {
	st := r.Status
	if st == 0 {
		st = http.StatusOK
	}
	e := r.Error
	if e == nil {
		e = &RPCError{Code: CodeInvalidRequest, Message: "rejected by plugin " + stage}
	}
	if m.Notification && m.Hook == HookRequest {
		return Outcome{Action: Reject, Status: st, Stage: stage}
	}
	return Outcome{Action: Reject, Body: ErrorResponse(x.id, e), Status: st, Stage: stage}
}

// fixRoutingHeaders keeps a replaced request consistent with the routing
// headers of the 2026-07-28 protocol: Mcp-Method and Mcp-Name are recomputed
// from the new body; Mcp-Param-* headers mirror argument values the engine
// cannot map back to the schema, so a plugin that changed the body of such a
// request must have set them itself, or the request is refused (MCP.md).
func fixRoutingHeaders(m *Message, before json.RawMessage, beforeHeader http.Header) error {
	h := m.Header
	if h == nil || bytes.Equal(before, m.Body) {
		return nil
	}
	hasParams, paramsEdited := false, false
	for k, v := range h {
		if strings.HasPrefix(k, "Mcp-Param-") {
			hasParams = true
			if !slices.Equal(v, beforeHeader[k]) {
				paramsEdited = true
			}
		}
	}
	for k := range beforeHeader {
		if strings.HasPrefix(k, "Mcp-Param-") && h[k] == nil {
			paramsEdited = true
		}
	}
	if h.Get("Mcp-Method") == "" && h.Get("Mcp-Name") == "" && !hasParams {
		return nil // not 2026-07-28 traffic
	}
	var d struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
			URI  string `json:"uri"`
		} `json:"params"`
	}
	if err := json.Unmarshal(m.Body, &d); err != nil {
		return errors.New("returned a request that is not a JSON-RPC object")
	}
	if d.Method != "" && h.Get("Mcp-Method") != "" {
		h.Set("Mcp-Method", d.Method)
	}
	if h.Get("Mcp-Name") != "" {
		switch {
		case d.Params.Name != "":
			h.Set("Mcp-Name", d.Params.Name)
		case d.Params.URI != "":
			h.Set("Mcp-Name", d.Params.URI)
		}
	}
	if hasParams && !paramsEdited {
		return errors.New("changed a request whose arguments are mirrored in Mcp-Param-* headers without updating them")
	}
	return nil
}

func apply(m *Message, r Result) {
	if r.Body != nil {
		m.Body = r.Body
	}
	if r.Header != nil {
		m.Header = r.Header
	}
}

// Response runs one response message (a streamed notification, an SSE event or
// the final response) up the chain through the stages that saw the request, in
// reverse order. m is updated in place on Replace.
func (x *Exchange) Response(ctx context.Context, m *Message) Outcome {
	if x.reached == 0 {
		return Outcome{Action: Continue, Body: m.Body, Header: m.Header, Status: m.Status}
	}
	if m.Method == "" {
		m.Method = x.method
	}
	changed := ""
	for i := x.reached - 1; i >= 0; i-- {
		s := x.c.stages[i]
		if !s.Stage.Wants(m.Hook, m.Method) {
			continue
		}
		r, err := x.call(ctx, i, m)
		if err != nil {
			if s.OnError == FailOpen {
				continue
			}
			if m.Notification {
				return Outcome{Action: Drop, Stage: s.Stage.Name(), Failed: true}
			}
			body := ErrorResponse(x.id, &RPCError{Code: CodeInternalError, Message: "response blocked: plugin " + s.Stage.Name() + " failed"})
			if m.Hook == HookHTTPResponse {
				body = nil
			}
			return Outcome{Action: Reject, Body: body, Status: http.StatusOK, Stage: s.Stage.Name(), Failed: true}
		}
		switch r.Action {
		case Replace, Respond:
			changed = s.Stage.Name()
			apply(m, r)
			if r.Status != 0 {
				m.Status = r.Status
			}
		case Reject:
			if m.Notification {
				return Outcome{Action: Drop, Stage: s.Stage.Name()}
			}
			return x.reject(r, s.Stage.Name(), m)
		case Drop:
			return Outcome{Action: Drop, Stage: s.Stage.Name()}
		}
	}
	return Outcome{Action: Continue, Body: m.Body, Header: m.Header, Status: m.Status, Changed: changed}
}

// Close closes the filters the exchange opened and releases its hold on a
// retired chain.
func (x *Exchange) Close() {
	for i, ok := range x.opened {
		if ok {
			x.filters[i].Close()
		}
	}
	if x.ref != nil {
		x.ref.release()
		x.ref = nil
	}
}

// Pipeline holds the live chain and swaps it atomically on reload. Exchanges
// begun on the old chain finish on it; it is closed once they have drained.
type Pipeline struct {
	cur atomic.Pointer[chainRef]
	mu  sync.Mutex // serializes Swap
}

type chainRef struct {
	c       *Chain
	refs    atomic.Int64
	retired atomic.Bool
	once    sync.Once
	drained chan struct{}
}

func newRef(c *Chain) *chainRef { return &chainRef{c: c, drained: make(chan struct{})} }

func (r *chainRef) release() {
	if r.refs.Add(-1) == 0 && r.retired.Load() {
		r.once.Do(func() { close(r.drained) })
	}
}

// NewPipeline returns a pipeline serving c (nil = an empty chain).
func NewPipeline(c *Chain) *Pipeline {
	if c == nil {
		c = NewChain(nil, ChainOptions{})
	}
	p := &Pipeline{}
	p.cur.Store(newRef(c))
	return p
}

// Chain returns the live chain.
func (p *Pipeline) Chain() *Chain { return p.cur.Load().c }

// Begin starts an exchange on the live chain.
func (p *Pipeline) Begin() *Exchange {
	for {
		r := p.cur.Load()
		r.refs.Add(1)
		if p.cur.Load() == r {
			x := r.c.Begin()
			x.ref = r
			return x
		}
		r.release()
	}
}

// Swap makes c the live chain, waits up to drain for exchanges on the old
// chain to finish, then closes it. It returns once the old chain is closed.
func (p *Pipeline) Swap(c *Chain, drain time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.cur.Swap(newRef(c))
	old.retired.Store(true)
	if old.refs.Load() == 0 {
		old.once.Do(func() { close(old.drained) })
	}
	t := time.NewTimer(drain)
	defer t.Stop()
	select {
	case <-old.drained:
	case <-t.C:
	}
	return old.c.Close()
}

// Close closes the live chain.
func (p *Pipeline) Close() error { return p.cur.Load().c.Close() }
