package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicemcp/sluice/engine"
	"github.com/tetratelabs/wazero"
)

// RuntimeOptions configure a Runtime. The zero value is valid.
type RuntimeOptions struct {
	// CacheDir is the wazero compilation cache directory; "" means
	// $XDG_CACHE_HOME/sluice/wazero or ~/.cache/sluice/wazero.
	CacheDir string
	// Logger receives plugin logs and host events; nil discards.
	Logger *slog.Logger
	// Registerer receives the sluice_plugin_* metrics; nil = none.
	Registerer prometheus.Registerer
	// StateDir, when set, keeps each plugin's key/value store in a file
	// there across restarts (created 0700, locked by this runtime); ""
	// keeps the stores in memory only.
	StateDir string
	// StateFlushInterval is how often changed stores are written to
	// StateDir (default DefaultStateFlushInterval).
	StateFlushInterval time.Duration
}

// Runtime loads plugins. It owns the file-backed compilation cache shared by
// every stage it loads and the per-plugin key/value stores (keyed by plugin
// name, so state survives a reload, and with StateDir a restart). It is
// safe for concurrent use.
type Runtime struct {
	cache   wazero.CompilationCache
	log     *slog.Logger
	metrics *metrics

	mu     sync.Mutex
	kv     map[string]*kvStore
	stages map[*Stage]struct{}
	closed bool

	stateDir  string   // "" = stores in memory only
	stateLock *os.File // holds the directory's lock
	flushStop chan struct{}
	flushDone chan struct{}
}

// NewRuntime creates a Runtime with its compilation cache directory.
func NewRuntime(ctx context.Context, opts RuntimeOptions) (*Runtime, error) {
	dir := opts.CacheDir
	if dir == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, fmt.Errorf("host: compilation cache: %w", err)
			}
			base = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(base, "sluice", "wazero")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("host: compilation cache %s: %w", dir, err)
	}
	cache, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		return nil, fmt.Errorf("host: compilation cache %s: %w", dir, err)
	}
	l := opts.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	r := &Runtime{
		cache:   cache,
		log:     l,
		metrics: newMetrics(opts.Registerer),
		kv:      map[string]*kvStore{},
		stages:  map[*Stage]struct{}{},
	}
	if opts.StateDir != "" {
		lock, err := openStateDir(opts.StateDir)
		if err != nil {
			_ = cache.Close(ctx)
			return nil, err
		}
		every := opts.StateFlushInterval
		if every <= 0 {
			every = DefaultStateFlushInterval
		}
		r.stateDir, r.stateLock = opts.StateDir, lock
		r.flushStop, r.flushDone = make(chan struct{}), make(chan struct{})
		go r.flushLoop(every, r.flushStop, r.flushDone)
	}
	return r, nil
}

// Close closes every stage still open and the compilation cache.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	stages := make([]*Stage, 0, len(r.stages))
	for s := range r.stages {
		stages = append(stages, s)
	}
	r.mu.Unlock()
	var errs []error
	for _, s := range stages {
		errs = append(errs, s.Close())
	}
	if r.stateLock != nil {
		close(r.flushStop) // the loop writes what changed, then ends
		<-r.flushDone
		errs = append(errs, r.stateLock.Close())
	}
	errs = append(errs, r.cache.Close(ctx))
	return errors.Join(errs...)
}

func (r *Runtime) kvFor(name string) *kvStore {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.kv[name]
	if s == nil {
		s = newKVStore()
		if r.stateDir != "" {
			r.loadKV(s, name)
		}
		r.kv[name] = s
	}
	return s
}

// Load compiles a plugin module, checks it against its ABI, instantiates it
// once eagerly (so a broken guest fails here) and returns its Stage. Errors
// read `host: load plugin "NAME": reason`.
func (r *Runtime) Load(ctx context.Context, cfg PluginConfig) (*Stage, error) {
	s, err := r.load(ctx, cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("host: load plugin %q: %w", cfg.Name, firstLine(err))
	}
	return s, nil
}

// load loads a chain stage (io nil) or a binding plugin's stage (io holds
// its capabilities).
func (r *Runtime) load(ctx context.Context, c PluginConfig, io *bindingIO) (_ *Stage, err error) {
	if c.Name == "" {
		return nil, errors.New("name is empty")
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	cfg := c.withDefaults()
	bin := cfg.Module
	if bin == nil {
		if cfg.Path == "" {
			return nil, errors.New("neither path nor module given")
		}
		b, err := readModule(cfg.Path)
		if err != nil {
			return nil, fmt.Errorf("read module: %w", err)
		}
		bin = b
	}
	if cfg.SHA256 != "" {
		sum := sha256.Sum256(bin)
		got := hex.EncodeToString(sum[:])
		want := strings.ToLower(strings.TrimPrefix(cfg.SHA256, "sha256:"))
		if got != want {
			return nil, fmt.Errorf("sha256 mismatch: module is %s, pinned %s", got, want)
		}
	}
	resolved, secrets, err := resolveConfig(cfg.Config, cfg.Secrets)
	if err != nil {
		return nil, err
	}
	cfg.Config = resolved
	scrub := newScrubber(secrets)
	defer func() { err = scrub.err(err) }() // instantiation runs guest code
	cfgJSON := []byte("{}")
	if cfg.Config != nil {
		b, err := json.Marshal(cfg.Config)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		cfgJSON = b
	}
	hooks, err := parseHooks(cfg.Hooks)
	if err != nil {
		return nil, err
	}

	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, errors.New("runtime is closed")
	}

	s := &Stage{
		name:    cfg.Name,
		cfg:     cfg,
		cfgJSON: cfgJSON,
		scrub:   scrub,
		log:     r.log,
		kv:      r.kvFor(cfg.Name),
		m:       r.metrics.forStage(cfg.Name),
		rt:      r,
		io:      io,
	}
	s.alloc = &memAllocator{used: s.m.memory}
	rc := wazero.NewRuntimeConfig().
		WithCompilationCache(r.cache).
		WithCloseOnContextDone(!cfg.Trusted).
		WithMemoryLimitPages(cfg.MemoryPages)
	wrt, compiled, interruptible, err := r.compile(ctx, cfg, rc, bin)
	if err != nil {
		return nil, err
	}
	var desc *description
	if importsModule(compiled, ModuleExtismEnv) {
		if io != nil {
			_ = wrt.Close(ctx)
			return nil, fmt.Errorf("an Extism module cannot be a binding plugin (bindings use the native ABI and export %s)", ExportOnCall)
		}
		eb, d, err := newExtismBackend(ctx, s, wrt, compiled, interruptible)
		if err != nil {
			_ = wrt.Close(ctx)
			return nil, err
		}
		s.backend, desc = eb, d
	} else {
		nb, d, err := newNativeBackend(ctx, s, wrt, compiled, interruptible)
		if err != nil {
			_ = wrt.Close(ctx)
			return nil, err
		}
		s.backend, desc = nb, d
	}
	if err := s.checkKind(desc); err != nil {
		_ = s.backend.close(ctx)
		return nil, err
	}
	if io == nil {
		if err := s.setWants(desc, hooks, cfg.Methods); err != nil {
			_ = s.backend.close(ctx)
			return nil, err
		}
	}
	if err := checkConfigKeys(desc, cfg.Config); err != nil {
		_ = s.backend.close(ctx)
		return nil, err
	}
	s.desc = desc
	budget, size, err := cfg.poolBudget(s.backend.instanceLimit())
	if err != nil {
		_ = s.backend.close(ctx)
		return nil, err
	}
	s.cfg.MaxMemory = budget
	s.m.memLimit.Set(float64(budget))
	s.brk = newBreaker(cfg.Breaker, cfg.Name, r.log, s.m)
	s.pool = newPool(size, s.newInstance, s.m.instances)
	// The eager instance becomes the pool's first idle instance.
	s.pool.seed(s.backend.takeEager())

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = s.Close()
		return nil, errors.New("runtime is closed")
	}
	r.stages[s] = struct{}{}
	r.mu.Unlock()
	return s, nil
}

// compile compiles bin on a new wazero runtime. A module that is not
// trusted is compiled with instrumentLoops' interrupt checks (and without
// wazero's far costlier ones) when the instrumenter understands it;
// otherwise rc's checks apply.
func (r *Runtime) compile(ctx context.Context, cfg PluginConfig, rc wazero.RuntimeConfig, bin []byte) (wazero.Runtime, wazero.CompiledModule, bool, error) {
	if !cfg.Trusted {
		ib, err := instrumentLoops(bin)
		if err == nil {
			wrt := wazero.NewRuntimeWithConfig(ctx, rc.WithCloseOnContextDone(false))
			compiled, cerr := wrt.CompileModule(ctx, ib)
			if cerr == nil {
				return wrt, compiled, true, nil
			}
			_ = wrt.Close(ctx)
			err = cerr
		}
		r.log.Debug("plugin: using wazero's loop checks", "plugin", cfg.Name, "reason", firstLine(err).Error())
	}
	wrt := wazero.NewRuntimeWithConfig(ctx, rc)
	compiled, err := wrt.CompileModule(ctx, bin)
	if err != nil {
		_ = wrt.Close(ctx)
		return nil, nil, false, fmt.Errorf("compile: %w", firstLine(err))
	}
	return wrt, compiled, false, nil
}

func (r *Runtime) forget(s *Stage) {
	r.mu.Lock()
	delete(r.stages, s)
	r.mu.Unlock()
}

func importsModule(c wazero.CompiledModule, module string) bool {
	for _, f := range c.ImportedFunctions() {
		if m, _, _ := f.Import(); m == module {
			return true
		}
	}
	return false
}

// description is a plugin's describe output.
type description struct {
	Name string `json:"name"`
	// Kind is "binding" for a binding plugin, "" (or "filter") for a stage.
	Kind    string   `json:"kind"`
	Version string   `json:"version"`
	Hooks   []string `json:"hooks"`
	Methods []string `json:"methods"`
	// Config lists the config keys the plugin accepts; nil = not declared
	// (any key is passed on).
	Config []string `json:"config"`
}

// checkConfigKeys refuses a config key the plugin's description does not
// list (when it lists them), naming the key and the accepted ones.
func checkConfigKeys(d *description, cfg map[string]any) error {
	if d == nil || d.Config == nil {
		return nil
	}
	var unknown []string
	for k := range cfg {
		if !slices.Contains(d.Config, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	accepts := "no config"
	if len(d.Config) > 0 {
		keys := slices.Clone(d.Config)
		slices.Sort(keys)
		accepts = strings.Join(keys, ", ")
	}
	return fmt.Errorf("unknown config key %q (the plugin accepts %s)", unknown[0], accepts)
}

func parseDescription(b []byte) (*description, error) {
	var d description
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("describe: %w", err)
	}
	return &d, nil
}

// parseHooks turns hook names into a bit set (1 << engine.Hook).
func parseHooks(names []string) (uint8, error) {
	var m uint8
	for _, n := range names {
		h, err := engine.ParseHook(n)
		if err != nil {
			return 0, err
		}
		m |= 1 << h
	}
	return m, nil
}
