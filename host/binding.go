package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// BindingConfig configures a binding plugin: a Wasm module (native ABI,
// exporting sluice_on_call) that is the MCP server of one channel. The zero
// value of every field but Plugin's name and module means its default.
type BindingConfig struct {
	// Plugin is the module, its pin, its config and its limits, as for a
	// chain stage (hooks, methods, on-error and shadow do not apply).
	// Plugin.PoolSize bounds the calls that run at once, since each holds an
	// instance for its whole length: set it to the agent's
	// mcp.max-concurrent-requests. Plugin.CallTimeout bounds the guest's own
	// compute per call; time spent waiting on HTTP, a command or the client
	// does not count against it.
	Plugin PluginConfig
	// Channel names the channel in logs.
	Channel string
	// HTTP is what http_request may reach (nothing by default).
	HTTP HTTPConfig
	// Commands are the programs process may exchange data with (none by
	// default).
	Commands []Command
}

// Binding is a loaded binding plugin. It implements binding.Binding, so the
// agent serves a channel from it like from any MCP server: each request
// checks an instance out of the plugin's pool for the length of the call.
// Reload swaps in a new module or config while calls on the old one finish.
// It is safe for concurrent use.
type Binding struct {
	rt      *Runtime
	channel string
	log     *slog.Logger

	cur    atomic.Pointer[bindingGen]
	mu     sync.Mutex // serializes Reload and Close
	closed bool
}

// Interface guard.
var _ binding.Binding = (*Binding)(nil)

// bindingGen is one loaded generation of a binding (its stage, with its
// capabilities), counted while calls use it so a reload can drain it.
type bindingGen struct {
	s        *Stage
	respond  prometheus.Counter
	reject   prometheus.Counter
	duration prometheus.Observer

	refs    atomic.Int64
	retired atomic.Bool
	once    sync.Once
	drained chan struct{}
}

func (g *bindingGen) release() {
	if g.refs.Add(-1) == 0 && g.retired.Load() {
		g.once.Do(func() { close(g.drained) })
	}
}

// LoadBinding compiles a binding plugin, checks it (it must export
// sluice_on_call), starts its line commands and instantiates it once, so a
// broken module fails here. Errors read `host: load binding plugin "NAME":
// reason`.
func (r *Runtime) LoadBinding(ctx context.Context, cfg BindingConfig) (*Binding, error) {
	g, err := r.loadBinding(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("host: load binding plugin %q: %w", cfg.Plugin.Name, firstLine(err))
	}
	b := &Binding{rt: r, channel: cfg.Channel, log: r.log}
	b.cur.Store(g)
	return b, nil
}

func (r *Runtime) loadBinding(ctx context.Context, cfg BindingConfig) (*bindingGen, error) {
	// Everything the config says is checked before anything is compiled or
	// started.
	if err := cfg.HTTP.validate(); err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	for i := range cfg.Commands {
		if err := cfg.Commands[i].validate(); err != nil {
			return nil, err
		}
	}
	io := &bindingIO{plugin: cfg.Plugin.Name, log: r.log.With("channel", cfg.Channel)}
	if len(cfg.HTTP.AllowedHosts) > 0 || len(cfg.HTTP.Headers) > 0 {
		a, err := newHTTPAccess(cfg.HTTP)
		if err != nil {
			return nil, fmt.Errorf("http: %w", err)
		}
		io.http = a
	}
	s, err := r.load(ctx, cfg.Plugin, io)
	if err != nil {
		return nil, err
	}
	io.procs = map[string]*commandRunner{}
	for _, c := range cfg.Commands {
		if _, dup := io.procs[c.Name]; dup {
			_ = s.Close()
			return nil, fmt.Errorf("command %s configured twice", c.Name)
		}
		cr, err := newCommandRunner(c, io.log.With("plugin", cfg.Plugin.Name))
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		io.procs[c.Name] = cr
	}
	name := s.name
	return &bindingGen{
		s:        s,
		respond:  r.metrics.calls.WithLabelValues(name, "call", engine.Respond.String()),
		reject:   r.metrics.calls.WithLabelValues(name, "call", engine.Reject.String()),
		duration: r.metrics.duration.WithLabelValues(name, "call"),
		drained:  make(chan struct{}),
	}, nil
}

// checkKind refuses a binding plugin loaded as a chain stage and a module
// that is not a binding plugin loaded as one. A binding says what it is
// with kind "binding" in its description, or (the Go SDK) by exporting
// sluice_on_call with a description that lists no hooks.
func (s *Stage) checkKind(d *description) error {
	nb, native := s.backend.(*nativeBackend)
	onCall := native && nb.hasOnCall
	isBinding := d != nil && (d.Kind == "binding" || (onCall && d.Hooks != nil && len(d.Hooks) == 0))
	if s.io == nil {
		if isBinding {
			return errors.New("a binding plugin (it exports " + ExportOnCall + " and wants no hooks): configure it under mcp.bindings, not in a pipeline")
		}
		return nil
	}
	if !onCall {
		return fmt.Errorf("missing export %s (not a binding plugin)", ExportOnCall)
	}
	if d != nil && !isBinding && (d.Kind != "" || len(d.Hooks) > 0) {
		return errors.New("not a binding plugin (its description asks for filter hooks)")
	}
	return nil
}

// Name returns the plugin's name.
func (b *Binding) Name() string { return b.cur.Load().s.name }

// Info describes the binding: the plugin's key/value store, and any session
// state it keeps there, lives in this process.
func (b *Binding) Info() binding.Info { return binding.Info{ProcAffinity: true} }

func (b *Binding) acquire() *bindingGen {
	for {
		g := b.cur.Load()
		g.refs.Add(1)
		if b.cur.Load() == g {
			return g
		}
		g.release()
	}
}

// Do hands req to the plugin (see binding.Binding): notifications it emits
// are passed to emit as they come, then its reply. A plugin failure (a trap,
// a timeout, running out of memory, a malformed reply, no reply, a second
// answer) is not an error of Do: it becomes a -32603 reply naming the plugin,
// is counted in sluice_plugin_failures_total, and the instance is discarded.
// Do returns an error only when ctx ended first or the binding is closed.
func (b *Binding) Do(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
	g := b.acquire()
	defer g.release()
	s := g.s
	var emitErr error
	reply := func(r *binding.Reply) error {
		emitErr = emit(r)
		return emitErr
	}
	m := &engine.Message{Hook: HookCall, Side: engine.SideAgent, Channel: b.channel,
		SessionID: req.Header.Get("Mcp-Session-Id"), Header: req.Header, Body: req.Body, Notification: req.Notification}
	if req.Kind == binding.KindJSONRPC {
		if p, err := engine.PeekMessage(req.Body); err == nil {
			m.Method, m.Tool = p.Method, p.Tool
		}
	}
	if len(req.Body) > s.cfg.MaxMessageSize {
		return b.failed(s, req, m, kindTooLarge, fmt.Errorf("message of %d bytes exceeds max-message-size %d", len(req.Body), s.cfg.MaxMessageSize), reply)
	}
	p, probe, err := s.checkout(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errCircuitOpen) {
			return reply(failureReply(req, s.name, kindCircuitOpen))
		}
		return &binding.Error{Source: wire.SourceClientInternal, Kind: "unknown", Err: fmt.Errorf("binding plugin %q: %w", s.name, err)}
	}
	ni, ok := p.inst.(*nativeInstance)
	if !ok { // LoadBinding accepts native modules only
		s.brk.done(probe, false, false)
		s.pool.put(p, true)
		return &binding.Error{Source: wire.SourceClientInternal, Kind: "unknown", Err: fmt.Errorf("binding plugin %q: not a native instance", s.name)}
	}
	notify := func(body []byte) error {
		return reply(&binding.Reply{Status: http.StatusOK, Header: http.Header{"Content-Type": {engine.EventStream}}, Body: body})
	}
	start := time.Now()
	rep, kind, err := ni.callBinding(ctx, m, req, notify)
	g.duration.Observe(time.Since(start).Seconds())
	p.calls++
	if err != nil {
		cancelled := kind == kindCancelled || ctx.Err() != nil
		s.brk.done(probe, !cancelled, breakerCounts(kind))
		s.pool.put(p, discardAfter(kind) || s.retire(p))
		if cancelled {
			return fmt.Errorf("binding plugin %q: %w", s.name, context.Cause(ctx))
		}
		if emitErr != nil {
			return emitErr
		}
		return b.failed(s, req, m, kind, err, reply)
	}
	s.brk.done(probe, true, false)
	s.pool.put(p, s.retire(p))
	if rep.action == engine.Reject {
		g.reject.Inc()
	} else {
		g.respond.Inc()
	}
	return reply(&rep.reply)
}

// failed counts and logs a plugin failure and answers the call with it.
func (b *Binding) failed(s *Stage, req *binding.Request, m *engine.Message, kind string, err error, reply func(*binding.Reply) error) error {
	s.m.failures[kind].Inc()
	b.log.Warn("binding plugin failed: answering the call with an error", "plugin", s.name, "channel", b.channel,
		"method", m.Method, "phase", "call", "kind", kind, "err", err)
	return reply(failureReply(req, s.name, kind))
}

// Reload loads cfg as the binding's new generation while the current one
// serves, swaps it in, waits up to drain for calls on the old one to finish,
// then closes it (its instances and commands). When the load fails the
// running generation stays and the error names the plugin.
func (b *Binding) Reload(ctx context.Context, cfg BindingConfig, drain time.Duration) error {
	g, err := b.rt.loadBinding(ctx, cfg)
	if err != nil {
		return fmt.Errorf("host: load binding plugin %q: %w", cfg.Plugin.Name, firstLine(err))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		_ = g.s.Close()
		return errors.New("host: binding is closed")
	}
	old := b.cur.Swap(g)
	old.retired.Store(true)
	if old.refs.Load() == 0 {
		old.once.Do(func() { close(old.drained) })
	}
	t := time.NewTimer(drain)
	defer t.Stop()
	select {
	case <-old.drained:
	case <-t.C:
		b.log.Warn("binding reload: calls still running on the old plugin after drain-timeout; closing it", "plugin", old.s.name, "channel", b.channel)
	}
	return old.s.Close()
}

// Close closes the plugin (its instances and commands). Calls still running
// fail.
func (b *Binding) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	return b.cur.Load().s.Close()
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}
