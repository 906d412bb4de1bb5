package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/sluicemcp/sluice/engine/binding"
	httpbinding "github.com/sluicemcp/sluice/engine/binding/http"
	"github.com/sluicemcp/sluice/engine/binding/stdio"
	"github.com/sluicemcp/sluice/host"
)

// BindingEntry is one mcp.bindings entry: a channel bound to an MCP server
// URL (Streamable HTTP, or the legacy HTTP+SSE transport), a command (stdio),
// or a Wasm binding plugin that is itself the MCP server. Exactly one of
// URL, Command and Wasm is set.
type BindingEntry struct {
	Channel string `koanf:"channel"`
	URL     string `koanf:"url"`
	// Transport of URL: "streamable-http" (the default) or "sse" (the
	// deprecated 2024-11-05 HTTP+SSE transport; URL is its GET endpoint).
	Transport string      `koanf:"transport"`
	Command   string      `koanf:"command"`
	Wasm      WasmBinding `koanf:"wasm"`
}

// WasmBinding is a binding plugin and what it may reach.
type WasmBinding struct {
	// Path is the .wasm module (relative paths: against the config file's
	// directory).
	Path string `koanf:"path"`
	// Name names the plugin in logs, metrics and errors, and keys its
	// key/value store (default: the module's file name without .wasm).
	Name     string           `koanf:"name"`
	SHA256   string           `koanf:"sha256"`
	Config   map[string]any   `koanf:"config"`
	HTTP     BindingHTTP      `koanf:"http"`
	Commands []BindingCommand `koanf:"commands"`
	Limits   BindingLimits    `koanf:"limits"`
	Breaker  PluginBreaker    `koanf:"breaker"`
}

// BindingHTTP is what the plugin may reach over HTTP (nothing by default).
type BindingHTTP struct {
	// AllowedHosts are origins: scheme://host[:port].
	AllowedHosts     []string        `koanf:"allowed-hosts"`
	Timeout          time.Duration   `koanf:"timeout"`
	MaxResponseBytes int             `koanf:"max-response-bytes"`
	Headers          []BindingHeader `koanf:"headers"`
}

// BindingHeader is a header the host adds to every request to Origin; its
// value is a secret reference, resolved by the host and never shown to the
// plugin.
type BindingHeader struct {
	Origin string `koanf:"origin"`
	Name   string `koanf:"name"`
	Value  Secret `koanf:"value"`
}

// BindingCommand is a program the plugin may exchange data with.
type BindingCommand struct {
	Name string `koanf:"name"`
	// Command is the argv, split like a shell (quotes), but no shell runs.
	Command        string        `koanf:"command"`
	Mode           string        `koanf:"mode"` // line (default) | run
	Timeout        time.Duration `koanf:"timeout"`
	MaxOutputBytes int           `koanf:"max-output-bytes"`
	Env            []string      `koanf:"env"`
	Dir            string        `koanf:"dir"`
	MergeStderr    bool          `koanf:"merge-stderr"`
}

// BindingLimits bound the plugin; zero means the host's default, and
// pool-size defaults to mcp.max-concurrent-requests.
type BindingLimits struct {
	MemoryPages    int           `koanf:"memory-pages"`
	CallTimeout    time.Duration `koanf:"call-timeout"`
	MaxMessageSize int           `koanf:"max-message-size"`
	PoolSize       int           `koanf:"pool-size"`
	Trusted        bool          `koanf:"trusted"`
	// MaxMemory bounds the memory of all the plugin's instances together,
	// in bytes (default: 256 MiB, or pool-size instances' worth if more).
	MaxMemory int64 `koanf:"max-memory"`
}

// Transports of a binding URL.
const (
	transportStreamable = "streamable-http"
	transportSSE        = "sse"
)

// isSet reports whether the entry configures a Wasm binding.
func (w *WasmBinding) isSet() bool { return !reflect.ValueOf(*w).IsZero() }

// pluginName is the plugin's name.
func (w *WasmBinding) pluginName() string {
	if w.Name != "" {
		return w.Name
	}
	return strings.TrimSuffix(filepath.Base(w.Path), ".wasm")
}

// bindingChannels validates mcp.bindings and adds its channels to out.
func (c *Config) bindingChannels(out map[string]Channel) error {
	names := map[string]string{}
	for i, e := range c.MCP.Bindings {
		key := fmt.Sprintf("mcp.bindings[%d]", i)
		if !validChannel(e.Channel) {
			return cfgErr(key+".channel", "want [a-z0-9_-]{1,64}")
		}
		if _, dup := out[e.Channel]; dup {
			return cfgErr(key+".channel", "channel %s configured twice", e.Channel)
		}
		ch := Channel{Name: e.Channel, Key: key}
		set := 0
		if e.URL != "" {
			set++
			if _, err := host.NormalizeOrigin(e.URL, false); err != nil {
				return cfgErr(key+".url", "want an http:// or https:// URL")
			}
			ch.URL = e.URL
			switch e.Transport {
			case "", transportStreamable:
			case transportSSE:
				ch.Transport = transportSSE
			default:
				return cfgErr(key+".transport", "want %s or %s", transportStreamable, transportSSE)
			}
		} else if e.Transport != "" {
			return cfgErr(key+".transport", "only with url")
		}
		if e.Command != "" {
			set++
			argv, err := stdio.SplitCommand(e.Command)
			if err != nil || len(argv) == 0 {
				return cfgErr(key+".command", "cannot split the command line (quotes?)")
			}
			ch.Command = argv
		}
		if e.Wasm.isSet() {
			set++
			w := e.Wasm
			if err := validateWasmBinding(key+".wasm", &w); err != nil {
				return err
			}
			if other, dup := names[w.pluginName()]; dup {
				return cfgErr(key+".wasm.name", "plugin name %q is also %s's: give each a distinct name", w.pluginName(), other)
			}
			names[w.pluginName()] = key
			ch.Wasm = &w
		}
		if set != 1 {
			return cfgErr(key, "want exactly one of url, command and wasm")
		}
		out[e.Channel] = ch
	}
	return nil
}

func validateWasmBinding(key string, w *WasmBinding) error {
	if w.Path == "" {
		return cfgErr(key+".path", "required (a .wasm binding plugin)")
	}
	if w.SHA256 != "" && !isHex(w.SHA256, 64) {
		return cfgErr(key+".sha256", "want 64 lowercase hex digits")
	}
	for j, h := range w.HTTP.AllowedHosts {
		if _, err := host.NormalizeOrigin(h, true); err != nil {
			return cfgErr(fmt.Sprintf("%s.http.allowed-hosts[%d]", key, j), "%v", err)
		}
	}
	for j, h := range w.HTTP.Headers {
		hk := fmt.Sprintf("%s.http.headers[%d]", key, j)
		o, err := host.NormalizeOrigin(h.Origin, true)
		if err != nil {
			return cfgErr(hk+".origin", "%v", err)
		}
		allowed := false
		for _, a := range w.HTTP.AllowedHosts {
			if ao, _ := host.NormalizeOrigin(a, true); ao == o {
				allowed = true
			}
		}
		if !allowed {
			return cfgErr(hk+".origin", "%s is not in http.allowed-hosts", o)
		}
		if h.Name == "" || strings.ContainsAny(h.Name, " \t:") {
			return cfgErr(hk+".name", "want a header name")
		}
		if !h.Value.IsSet() {
			return cfgErr(hk+".value", "required (env:NAME or file:/path)")
		}
		if err := h.Value.check(hk + ".value"); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for j, c := range w.Commands {
		ck := fmt.Sprintf("%s.commands[%d]", key, j)
		if c.Name == "" {
			return cfgErr(ck+".name", "required (the name the plugin asks for)")
		}
		if seen[c.Name] {
			return cfgErr(ck+".name", "command %s listed twice", c.Name)
		}
		seen[c.Name] = true
		if argv, err := stdio.SplitCommand(c.Command); err != nil || len(argv) == 0 {
			return cfgErr(ck+".command", "required; split like a shell (quotes), no shell runs")
		}
		switch c.Mode {
		case "", host.CommandLine, host.CommandRun:
		default:
			return cfgErr(ck+".mode", "want %s or %s", host.CommandLine, host.CommandRun)
		}
		for _, kv := range c.Env {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				return cfgErr(ck+".env", "want KEY=VALUE entries")
			}
		}
	}
	return w.Breaker.validate(key + ".breaker")
}

// describe says what serves the channel, for the dev banner.
func (ch Channel) describe() string {
	switch {
	case ch.Wasm != nil:
		return "wasm binding plugin " + ch.Wasm.Path
	case ch.URL != "" && ch.Transport == transportSSE:
		return ch.URL + " (HTTP+SSE)"
	case ch.URL != "":
		return ch.URL
	}
	return strings.Join(ch.Command, " ")
}

// bindingConfig builds the host config of a Wasm binding: paths resolved,
// header secrets resolved, commands split.
func (s *session) bindingConfig(ch Channel, maxConcurrent int) (host.BindingConfig, error) {
	w := ch.Wasm
	// Checked by validate; checked again so that no value outside its range
	// reaches the host, however this is called.
	if err := checkRangesAt(w, ch.Key+".wasm", "mcp.bindings[].wasm"); err != nil {
		return host.BindingConfig{}, err
	}
	path := w.Path
	if !filepath.IsAbs(path) && s.configDir() != "" {
		path = filepath.Join(s.configDir(), path)
	}
	pool := w.Limits.PoolSize
	if pool == 0 {
		pool = min(maxConcurrent, host.MaxPoolSize)
	}
	bc := host.BindingConfig{
		Channel: ch.Name,
		Plugin: host.PluginConfig{
			Name: w.pluginName(), Path: path, SHA256: w.SHA256, Config: w.Config,
			MemoryPages: uint32(w.Limits.MemoryPages), CallTimeout: w.Limits.CallTimeout,
			MaxMessageSize: w.Limits.MaxMessageSize, Trusted: w.Limits.Trusted, PoolSize: pool,
			MaxMemory: uint64(w.Limits.MaxMemory), Breaker: w.Breaker.hostConfig(),
		},
		HTTP: host.HTTPConfig{AllowedHosts: w.HTTP.AllowedHosts, Timeout: w.HTTP.Timeout, MaxResponseBytes: w.HTTP.MaxResponseBytes},
	}
	for j, h := range w.HTTP.Headers {
		v, err := h.Value.resolve(fmt.Sprintf("%s.wasm.http.headers[%d].value", ch.Key, j), s.cli.env)
		if err != nil {
			return bc, err
		}
		bc.HTTP.Headers = append(bc.HTTP.Headers, host.HTTPHeader{Origin: h.Origin, Name: h.Name, Value: v})
	}
	for _, c := range w.Commands {
		argv, _ := stdio.SplitCommand(c.Command) // validated
		dir := c.Dir
		if dir != "" && !filepath.IsAbs(dir) && s.configDir() != "" {
			dir = filepath.Join(s.configDir(), dir)
		}
		bc.Commands = append(bc.Commands, host.Command{Name: c.Name, Argv: argv, Mode: c.Mode, Timeout: c.Timeout,
			MaxOutputBytes: c.MaxOutputBytes, Env: c.Env, Dir: dir, MergeStderr: c.MergeStderr})
	}
	return bc, nil
}

// newChannelBinding builds the binding of a channel that mcp.server-url and
// mcp.command cannot express: a Wasm binding plugin or a legacy HTTP+SSE
// server. ok is false for the other kinds.
func (s *session) newChannelBinding(ctx context.Context, ch Channel, pl *pipelines, extra http.Header) (b binding.Binding, ok bool, err error) {
	switch {
	case ch.Wasm != nil:
		bc, err := s.bindingConfig(ch, s.cfg.MCP.MaxConcurrentRequests)
		if err != nil {
			return nil, true, err
		}
		rt, err := pl.runtime(ctx)
		if err != nil {
			return nil, true, fmt.Errorf("plugin runtime: %w", err)
		}
		var hb *host.Binding
		err = recovered(s.log, ch.Key+".wasm", func() (err error) {
			hb, err = rt.LoadBinding(ctx, bc)
			return err
		})
		if err != nil {
			return nil, true, cfgErr(ch.Key+".wasm", "%s", oneLine(err))
		}
		return hb, true, nil
	case ch.URL != "" && ch.Transport == transportSSE:
		lb, err := httpbinding.NewLegacySSE(httpbinding.LegacyConfig{URL: ch.URL, ExtraHeaders: extra},
			httpbinding.Options{Logger: s.log.With("channel", ch.Name)})
		if err != nil {
			return nil, true, cfgErr(ch.Key+".url", "%s", oneLine(err))
		}
		return lb, true, nil
	}
	return nil, false, nil
}

// wasmFingerprint identifies what a Wasm binding was loaded from: its entry
// and its module's bytes (so a rebuilt module at the same path reloads too).
func (s *session) wasmFingerprint(ch Channel) string {
	h := sha256.New()
	cfg, _ := json.Marshal(ch.Wasm)
	h.Write(cfg)
	path := ch.Wasm.Path
	if !filepath.IsAbs(path) && s.configDir() != "" {
		path = filepath.Join(s.configDir(), path)
	}
	if mod, err := readFileLimited(path, host.MaxModuleSize); err == nil {
		h.Write(mod)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// wasmBindings are the running Wasm bindings of the agent, by channel, with
// the fingerprint each was loaded from.
type wasmBindings struct {
	b    map[string]*host.Binding
	from map[string]string
	// shape is the channel → kind map at start: a change of it needs a
	// restart.
	shape map[string]string
}

// channelKinds maps each channel to what serves it.
func channelKinds(chans map[string]Channel) map[string]string {
	out := make(map[string]string, len(chans))
	for n, ch := range chans {
		switch {
		case ch.Wasm != nil:
			out[n] = "wasm"
		case ch.URL != "":
			out[n] = "url " + ch.URL + " " + ch.Transport
		default:
			out[n] = "command " + strings.Join(ch.Command, "\x00")
		}
	}
	return out
}

// reloadBindings is the live key of mcp.bindings: a Wasm binding whose entry
// or module changed is reloaded (built while the old one serves, swapped,
// the old one drained). Adding, removing or re-kinding a channel needs a
// restart.
func (s *session) reloadBindings(w *wasmBindings) liveKey {
	return liveKey{key: "mcp.bindings", value: func(c *Config) any { return c.MCP.Bindings }, always: func(*Config) bool { return true }, apply: func(ctx context.Context, cfg *Config) error {
		chans, err := cfg.channels()
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(channelKinds(chans), w.shape) {
			s.log.Warn("restart required: mcp.bindings (channels added, removed or bound differently)", "phase", "reload")
		}
		var firstErr error
		for name, hb := range w.b {
			ch, ok := chans[name]
			if !ok || ch.Wasm == nil {
				continue
			}
			fp := s.wasmFingerprint(ch)
			if fp == w.from[name] {
				continue
			}
			bc, err := s.bindingConfig(ch, cfg.MCP.MaxConcurrentRequests)
			if err == nil {
				err = hb.Reload(ctx, bc, cfg.DrainTimeout)
			}
			if err != nil {
				if firstErr == nil {
					firstErr = cfgErr(ch.Key+".wasm", "%s", oneLine(err))
				}
				continue
			}
			w.from[name] = fp
			s.log.Info("reloaded binding plugin", "phase", "reload", "channel", name, "plugin", bc.Plugin.Name)
		}
		return firstErr
	}}
}
