package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/host"
)

// pipelines builds plugin chains from config entries. It owns the one Wasm
// runtime of the process (compilation cache, key/value stores), created on
// the first non-empty pipeline.
type pipelines struct {
	log     *slog.Logger
	reg     prometheus.Registerer
	baseDir string    // relative .wasm paths are resolved against the config file's directory
	env     envSource // resolves env: references in plugin config (nil = the process environment)
	// stateDir keeps the plugins' key/value stores across restarts ("" =
	// in memory).
	stateDir string

	// loadStage loads one stage (nil = the runtime's Load); tests replace it.
	loadStage func(context.Context, *host.Runtime, host.PluginConfig) (*host.Stage, error)

	mu sync.Mutex
	rt *host.Runtime
}

func (p *pipelines) runtime(ctx context.Context) (*host.Runtime, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rt == nil {
		rt, err := host.NewRuntime(ctx, host.RuntimeOptions{Logger: p.log, Registerer: p.reg, StateDir: p.stateDir})
		if err != nil {
			return nil, err
		}
		p.rt = rt
	}
	return p.rt, nil
}

// build loads every entry of the pipeline at key and returns the chain. On
// error every stage loaded so far is closed; the error names the entry. A
// panic while loading is such an error too: at a reload the running chain
// stays, at startup it is a configuration error.
func (p *pipelines) build(ctx context.Context, key string, entries []PluginConfig) (*engine.Chain, error) {
	if len(entries) == 0 {
		return engine.NewChain(nil, engine.ChainOptions{Logger: p.log}), nil
	}
	rt, err := p.runtime(ctx)
	if err != nil {
		return nil, fmt.Errorf("plugin runtime: %w", err)
	}
	load := p.loadStage
	if load == nil {
		load = func(ctx context.Context, rt *host.Runtime, pc host.PluginConfig) (*host.Stage, error) {
			return rt.Load(ctx, pc)
		}
	}
	stages := make([]engine.ChainStage, 0, len(entries))
	var chain *engine.Chain
	err = recovered(p.log, key, func() error {
		for i, e := range entries {
			k := fmt.Sprintf("%s[%d]", key, i)
			pc, err := p.pluginConfig(k, e)
			if err != nil {
				return err
			}
			var st *host.Stage
			err = recovered(p.log, k, func() (err error) {
				st, err = load(ctx, rt, pc)
				return err
			})
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			stages = append(stages, st.ChainStage())
		}
		chain = engine.NewChain(stages, engine.ChainOptions{Logger: p.log})
		return nil
	})
	if err != nil {
		for _, s := range stages {
			_ = s.Stage.Close()
		}
		return nil, err
	}
	return chain, nil
}

func (p *pipelines) pluginConfig(key string, e PluginConfig) (host.PluginConfig, error) {
	// Checked by validate; checked again so that no value outside its range
	// reaches the host, however this is called.
	pattern := key
	if i := strings.LastIndexByte(key, '['); i >= 0 {
		pattern = key[:i] + "[]"
	}
	if err := checkRangesAt(&e, key, pattern); err != nil {
		return host.PluginConfig{}, err
	}
	pc := host.PluginConfig{
		Name:           e.stageName(),
		SHA256:         e.SHA256,
		Config:         e.Config,
		Secrets:        pluginSecrets(p.env),
		Hooks:          e.Hooks,
		Methods:        e.Methods,
		MemoryPages:    uint32(e.Limits.MemoryPages),
		CallTimeout:    e.Limits.CallTimeout,
		MaxMessageSize: e.Limits.MaxMessageSize,
		AllowedHosts:   e.Limits.AllowedHosts,
		Trusted:        e.Limits.Trusted,
		MaxMemory:      uint64(e.Limits.MaxMemory),
		PoolSize:       e.Limits.PoolSize,
		Breaker:        e.Breaker.hostConfig(),
		Shadow:         e.Shadow,
	}
	if e.OnError == "fail_open" {
		pc.OnError = engine.FailOpen
	}
	if isModulePath(e.Plugin) {
		path := e.Plugin
		if !filepath.IsAbs(path) && p.baseDir != "" {
			path = filepath.Join(p.baseDir, path)
		}
		pc.Path = path
		return pc, nil
	}
	mod, ok := lookupBuiltin(e.Plugin)
	if !ok {
		return pc, cfgErr(key+".plugin", "unknown built-in plugin %q (built-ins: %s; or give a path to a .wasm module)",
			e.Plugin, strings.Join(builtinNames(), ", "))
	}
	pc.Module = mod
	return pc, nil
}

// hostConfig returns the breaker's host configuration.
func (b PluginBreaker) hostConfig() host.BreakerConfig {
	return host.BreakerConfig{Failures: b.Failures, Backoff: b.Backoff, MaxBackoff: b.MaxBackoff, Disabled: b.Disabled}
}

// newPipelines returns the session's pipeline builder.
func (s *session) newPipelines(reg prometheus.Registerer) *pipelines {
	return &pipelines{log: s.log, reg: reg, baseDir: s.configDir(), env: s.cli.env, stateDir: s.cfg.PluginStateDir}
}

// defaultPipeline is the agent's chain when the config has no `pipeline` key
// (`sluice run` and `sluice dev` alike; koanf.yaml and docs/plugins.md show
// it): redact on responses with the credential and card detectors, the
// personal-data detectors (email, phone, IBAN) off. `pipeline: []` turns the
// chain off.
func defaultPipeline() []PluginConfig {
	return []PluginConfig{{
		Plugin:  "redact",
		Hooks:   []string{"response"},
		Config:  map[string]any{"disable": []any{"email", "phone", "iban"}},
		OnError: "fail_closed",
	}}
}

// hasSecretRefs reports whether any entry's config holds a secret reference.
func hasSecretRefs(entries []PluginConfig) bool {
	for _, e := range entries {
		if host.HasSecretRefs(e.Config) {
			return true
		}
	}
	return false
}

// chainLine describes a chain in one line: its stages in request order, or
// "none".
func chainLine(c *engine.Chain) string {
	names := c.Stages()
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, " → ")
}

// sessionChain is one plugin chain a session runs, under its config key.
type sessionChain struct {
	key string // "pipeline" or "relay.pipeline"
	p   *engine.Pipeline
}

// chainAttrs are the session's active chains as log attributes, one per
// config key ("pipeline=redact").
func (s *session) chainAttrs() []any {
	out := make([]any, 0, 2*len(s.chains))
	for _, c := range s.chains {
		out = append(out, c.key, chainLine(c.p.Chain()))
	}
	return out
}

// pipelineKey registers one of the session's chains (for the active-chain
// log lines) and returns its live key: rebuilt when its entries change, and
// on every reload when they hold a secret reference (a rotated secret file
// is picked up).
func (s *session) pipelineKey(pl *pipelines, key string, p *engine.Pipeline, entries func(*Config) []PluginConfig) liveKey {
	s.chains = append(s.chains, sessionChain{key: key, p: p})
	return liveKey{
		key:    key,
		apply:  s.swapPipeline(pl, key, p, entries),
		value:  func(c *Config) any { return entries(c) },
		always: func(c *Config) bool { return hasSecretRefs(entries(c)) },
	}
}

// swapPipeline returns the reload function of a pipeline key: it builds the
// new chain while the old one serves, then swaps them.
func (s *session) swapPipeline(pl *pipelines, key string, p *engine.Pipeline, entries func(*Config) []PluginConfig) func(context.Context, *Config) error {
	return func(ctx context.Context, cfg *Config) error {
		c, err := pl.build(ctx, key, entries(cfg))
		if err != nil {
			return err
		}
		return p.Swap(c, cfg.DrainTimeout)
	}
}

func isModulePath(s string) bool {
	return strings.HasSuffix(s, ".wasm") || strings.ContainsRune(s, '/')
}

// close closes the runtime (and any stage still open).
func (p *pipelines) close(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rt == nil {
		return nil
	}
	err := p.rt.Close(ctx)
	p.rt = nil
	return err
}

// asConfigError marks a load failure of the first chain as a configuration
// problem (exit code 2), keeping its one-line message.
func asConfigError(err error) error {
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return err
	}
	return &ConfigError{Msg: oneLine(err)}
}
