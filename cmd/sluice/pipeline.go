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

	mu sync.Mutex
	rt *host.Runtime
}

func (p *pipelines) runtime(ctx context.Context) (*host.Runtime, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rt == nil {
		rt, err := host.NewRuntime(ctx, host.RuntimeOptions{Logger: p.log, Registerer: p.reg})
		if err != nil {
			return nil, err
		}
		p.rt = rt
	}
	return p.rt, nil
}

// build loads every entry of the pipeline at key and returns the chain. On
// error every stage loaded so far is closed; the error names the entry.
func (p *pipelines) build(ctx context.Context, key string, entries []PluginConfig) (*engine.Chain, error) {
	if len(entries) == 0 {
		return engine.NewChain(nil, engine.ChainOptions{Logger: p.log}), nil
	}
	rt, err := p.runtime(ctx)
	if err != nil {
		return nil, fmt.Errorf("plugin runtime: %w", err)
	}
	stages := make([]engine.ChainStage, 0, len(entries))
	fail := func(err error) (*engine.Chain, error) {
		for _, s := range stages {
			_ = s.Stage.Close()
		}
		return nil, err
	}
	for i, e := range entries {
		k := fmt.Sprintf("%s[%d]", key, i)
		pc, err := p.pluginConfig(k, e)
		if err != nil {
			return fail(err)
		}
		st, err := rt.Load(ctx, pc)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", k, err))
		}
		stages = append(stages, st.ChainStage())
	}
	return engine.NewChain(stages, engine.ChainOptions{Logger: p.log}), nil
}

func (p *pipelines) pluginConfig(key string, e PluginConfig) (host.PluginConfig, error) {
	pc := host.PluginConfig{
		Name:           e.stageName(),
		SHA256:         e.SHA256,
		Config:         e.Config,
		Secrets:        pluginSecrets(p.env),
		Hooks:          e.Hooks,
		Methods:        e.Methods,
		MemoryPages:    e.Limits.MemoryPages,
		CallTimeout:    e.Limits.CallTimeout,
		MaxMessageSize: e.Limits.MaxMessageSize,
		AllowedHosts:   e.Limits.AllowedHosts,
		Trusted:        e.Limits.Trusted,
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

// newPipelines returns the session's pipeline builder.
func (s *session) newPipelines(reg prometheus.Registerer) *pipelines {
	return &pipelines{log: s.log, reg: reg, baseDir: s.configDir(), env: s.cli.env}
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
