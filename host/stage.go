package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/sluicemcp/sluice/engine"
)

// instance is one guest instance. It is used by one goroutine at a time.
type instance interface {
	// call runs one message through the guest. On failure it returns the
	// failure kind and an error; the instance must then be discarded.
	call(ctx context.Context, m *engine.Message) (engine.Result, string, error)
	// memSize is the guest's current linear memory in bytes.
	memSize() uint64
	// linear is the backing of the guest's linear memory (nil without one).
	linear() *linearMemory
	close(ctx context.Context)
}

// backend creates instances of one compiled module.
type backend interface {
	// newInstance instantiates the module (its errors do not name the
	// plugin: the caller does).
	newInstance(ctx context.Context) (instance, error)
	// takeEager hands over the instance created at load.
	takeEager() instance
	// instanceLimit is the most memory, in bytes, one instance can hold.
	instanceLimit() uint64
	// handlerName is the export that handles hook h; hasHandler whether it exists.
	handlerName(h engine.Hook) string
	hasHandler(h engine.Hook) bool
	close(ctx context.Context) error
}

// Stage is one loaded plugin. It implements engine.Stage and is safe for
// concurrent use; each guest call checks one instance out of its pool.
type Stage struct {
	name    string
	cfg     PluginConfig
	cfgJSON []byte
	scrub   scrubber // masks resolved secrets in what the host logs for the plugin
	log     *slog.Logger
	kv      *kvStore
	m       *stageMetrics
	rt      *Runtime
	backend backend
	pool    *pool
	alloc   *memAllocator // backs the instances' linear memory
	brk     *breaker
	io      *bindingIO // a binding plugin's capabilities (nil for a chain stage)

	hooks   uint8               // bit h set = hook h wanted
	methods map[string]struct{} // nil = every method
	desc    *description        // the plugin's description; nil without one

	// extismConfig is the config as Extism sees it (string values, and the
	// whole object under ExtismConfigKey); nil for native modules.
	extismConfig map[string]string
	// http is the client of Extism's http_request, made on first use.
	httpOnce sync.Once
	http     *http.Client

	closeOnce sync.Once
	closeErr  error
}

// Interface guards.
var (
	_ engine.Stage          = (*Stage)(nil)
	_ engine.CircuitBreaker = (*Stage)(nil)
	_ engine.Filter         = (*filter)(nil)
)

// newInstance is the pool's constructor: a new instance of the backend's
// module, its failure naming the plugin.
func (s *Stage) newInstance(ctx context.Context) (instance, error) {
	i, err := s.backend.newInstance(ctx)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %w", s.name, err)
	}
	return i, nil
}

// Name returns the stage name.
func (s *Stage) Name() string { return s.name }

// OnError returns the configured failure policy.
func (s *Stage) OnError() engine.OnError { return s.cfg.OnError }

// Shadow reports whether the stage runs in shadow mode.
func (s *Stage) Shadow() bool { return s.cfg.Shadow }

// ChainStage returns the stage wrapped with its policy, ready for engine.NewChain.
func (s *Stage) ChainStage() engine.ChainStage {
	return engine.ChainStage{Stage: s, OnError: s.cfg.OnError, Shadow: s.cfg.Shadow}
}

// Wants reports whether the plugin handles hook h for method. The method
// filter does not apply to http_response.
func (s *Stage) Wants(h engine.Hook, method string) bool {
	if h < engine.HookRequest || h > engine.HookHTTPResponse || s.hooks&(1<<h) == 0 {
		return false
	}
	if s.methods == nil || h == engine.HookHTTPResponse {
		return true
	}
	_, ok := s.methods[method]
	return ok
}

func (s *Stage) setWants(d *description, cfgHooks uint8, cfgMethods []string) error {
	var plugin uint8
	if d != nil && len(d.Hooks) > 0 {
		m, err := parseHooks(d.Hooks)
		if err != nil {
			return fmt.Errorf("describe: %w", err)
		}
		plugin = m
		for h := engine.HookRequest; h <= engine.HookHTTPResponse; h++ {
			if plugin&(1<<h) != 0 && !s.backend.hasHandler(h) {
				return fmt.Errorf("missing export %s", s.backend.handlerName(h))
			}
		}
	} else {
		// No description: every hook the module has a handler for.
		for h := engine.HookRequest; h <= engine.HookHTTPResponse; h++ {
			if s.backend.hasHandler(h) {
				plugin |= 1 << h
			}
		}
		if plugin == 0 {
			return fmt.Errorf("missing export %s", s.backend.handlerName(engine.HookRequest))
		}
	}
	s.hooks = plugin
	if cfgHooks != 0 {
		s.hooks &= cfgHooks
		for h := engine.HookRequest; h <= engine.HookHTTPResponse; h++ {
			if cfgHooks&(1<<h) != 0 && !s.backend.hasHandler(h) {
				return fmt.Errorf("hook %s configured but missing export %s", h, s.backend.handlerName(h))
			}
		}
	}
	if s.hooks == 0 {
		return errors.New("configured hooks and the plugin's hooks do not intersect")
	}
	var pm []string
	if d != nil {
		pm = d.Methods
	}
	switch {
	case len(pm) == 0 && len(cfgMethods) == 0:
		s.methods = nil
	case len(pm) == 0:
		s.methods = setOf(cfgMethods)
	case len(cfgMethods) == 0:
		s.methods = setOf(pm)
	default:
		own := setOf(pm)
		s.methods = map[string]struct{}{}
		for _, m := range cfgMethods {
			if _, ok := own[m]; ok {
				s.methods[m] = struct{}{}
			}
		}
		if len(s.methods) == 0 {
			return errors.New("configured methods and the plugin's methods do not intersect")
		}
	}
	return nil
}

func setOf(l []string) map[string]struct{} {
	m := make(map[string]struct{}, len(l))
	for _, s := range l {
		m[s] = struct{}{}
	}
	return m
}

// Open returns the exchange's filter; it holds no instance (each Handle
// checks one out for its guest call).
func (s *Stage) Open(ctx context.Context) (engine.Filter, error) {
	if s.pool.isClosed() {
		return nil, fmt.Errorf("plugin %q: %w", s.name, errPoolClosed)
	}
	return &filter{s: s}, nil
}

// Close closes every pooled instance and the compiled module. Instances
// still checked out are closed when their filter closes.
func (s *Stage) Close() error {
	s.closeOnce.Do(func() {
		s.pool.close()
		s.closeErr = s.backend.close(context.Background())
		if s.io != nil {
			s.io.close()
		}
		s.rt.forget(s)
	})
	return s.closeErr
}

// filter is one exchange's view of a stage. It holds no instance: each
// Handle checks one out of the pool for the length of the guest call only, so
// an exchange that waits seconds for a slow tool between its request and its
// response holds nothing, and a pool of about two instances per core serves
// any number of concurrent exchanges (see RATIONALE.md).
type filter struct {
	s *Stage
}

// Handle runs m through a pooled instance.
func (f *filter) Handle(ctx context.Context, m *engine.Message) (engine.Result, error) {
	s := f.s
	if !s.Wants(m.Hook, m.Method) {
		return engine.Result{}, nil // not for this plugin: continue, no guest call
	}
	if len(m.Body) > s.cfg.MaxMessageSize {
		s.m.failures[kindTooLarge].Inc()
		return engine.Result{}, fmt.Errorf("plugin %q: message of %d bytes exceeds max-message-size %d: %w",
			s.name, len(m.Body), s.cfg.MaxMessageSize, engine.ErrPluginFailure)
	}
	p, probe, err := s.checkout(ctx)
	if errors.Is(err, errCircuitOpen) {
		return engine.Result{}, s.brk.errOpen()
	}
	if err != nil {
		return engine.Result{}, fmt.Errorf("plugin %q: %w: %w", s.name, engine.ErrPluginFailure, err)
	}
	start := time.Now()
	r, kind, err := p.inst.call(ctx, m)
	s.m.duration[m.Hook].Observe(time.Since(start).Seconds())
	p.calls++
	if err != nil {
		s.m.failures[kind].Inc()
		// A call whose caller went away is not the plugin's fault.
		s.brk.done(probe, ctx.Err() == nil, breakerCounts(kind))
		s.pool.put(p, discardAfter(kind) || s.retire(p))
		return engine.Result{}, fmt.Errorf("plugin %q %s: %w: %w", s.name, kind, engine.ErrPluginFailure, s.scrub.err(err))
	}
	s.brk.done(probe, true, false)
	s.m.calls[m.Hook][r.Action].Inc()
	s.pool.put(p, s.retire(p))
	return r, nil
}

// checkout asks the circuit breaker, then checks an instance out of the
// pool; probe says whether the call is the breaker's half-open probe (pass
// it to s.brk.done with the outcome). errCircuitOpen means the circuit is
// open, or opened while the call waited: the plugin must not run (counted
// as rejected). On any error nothing needs releasing.
func (s *Stage) checkout(ctx context.Context) (p *pooled, probe bool, err error) {
	probe, ok := s.brk.allow()
	if !ok {
		return nil, false, errCircuitOpen
	}
	p, err = s.pool.get(ctx, s.brk.openCh())
	if err == nil && !probe && s.brk.isOpen() {
		// The circuit opened while this call waited for its slot.
		s.pool.put(p, false)
		err = errCircuitOpen
	}
	if err != nil {
		s.brk.done(probe, false, false)
		if errors.Is(err, errCircuitOpen) {
			s.brk.rejected.Inc()
		}
		return nil, false, err
	}
	return p, probe, nil
}

// discardAfter reports whether an instance must be closed after a failure
// of this kind. After a trap, timeout or out-of-memory failure the guest
// stopped mid-call and its memory may be half-written; after a malformed or
// too large answer it returned normally and is as sound as after any call,
// so it goes back to the pool (a plugin that answers garbage does not cost
// an instantiation per call).
func discardAfter(kind string) bool {
	return kind != kindMalformed && kind != kindTooLarge
}

// retire reports whether a healthy instance is due for replacement: after
// RecycleAfter calls, or above the memory high-water mark.
func (s *Stage) retire(p *pooled) bool {
	return p.calls >= s.cfg.RecycleAfter || p.inst.memSize() > s.highWater()
}

// CircuitOpen reports whether the stage's circuit breaker is open (or
// half-open, probing): calls get its failure policy without running it. It
// implements engine.CircuitBreaker.
func (s *Stage) CircuitOpen() bool { return s.brk.isOpen() }

// MaxMemory returns the stage's effective memory budget in bytes (its
// configured max-memory or the default).
func (s *Stage) MaxMemory() uint64 { return s.cfg.MaxMemory }

// InstanceMemory returns the memory, in bytes, of the largest idle instance:
// its linear memory and, for an Extism module, its kernel memory. 0 when no
// instance is idle.
func (s *Stage) InstanceMemory() uint64 {
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	var n uint64
	for _, x := range s.pool.idle {
		n = max(n, x.inst.memSize())
	}
	return n
}

// highWater is the memory size above which an instance is recycled at the
// end of its exchange: half the page limit.
func (s *Stage) highWater() uint64 { return uint64(s.cfg.MemoryPages) * 65536 / 2 }

// Close ends the exchange; the filter holds nothing.
func (f *filter) Close() {}
