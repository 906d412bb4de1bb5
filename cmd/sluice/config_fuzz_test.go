package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fuzzModes are the modes a fuzz input is checked for, by its first byte.
var fuzzModes = []Mode{ModeRun, ModeRelay, ModeDev}

// fuzzEnv is the environment of every fuzzed load: what `sluice run` needs
// besides the file and its main channel, and the variables the seeds'
// secret references name.
var fuzzEnv = map[string]string{
	"CONTROL_PLANE_TUNNEL_ID": testTunnel,
	"CONTROL_PLANE_API_KEY":   "sk-fuzz-runtime",
	"RK":                      "sk-fuzz-rk",
	"CK":                      "sk-fuzz-ck",
	"TOKEN":                   "Bearer fuzz",
}

// fuzzChecker runs inputs through what `sluice config check` does, sharing
// one Wasm runtime across inputs (a fuzz worker runs thousands).
type fuzzChecker struct {
	path string
	pl   *pipelines
	mu   sync.Mutex
}

func newFuzzChecker(f *testing.F) *fuzzChecker {
	dir := f.TempDir()
	fc := &fuzzChecker{path: filepath.Join(dir, "sluice.yaml")}
	fc.pl = &pipelines{log: slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry(), baseDir: dir, env: envOf(fuzzEnv)}
	f.Cleanup(func() { _ = fc.pl.close(context.Background()) })
	return fc
}

// check loads, validates and checks one input as `sluice config check
// --mode mode` would, then loads its Wasm bindings too, without their
// commands (a fuzzed command line must never run). The error, if any, is
// what the command would print.
func (fc *fuzzChecker) check(t *testing.T, mode Mode, data []byte) error {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if err := os.WriteFile(fc.path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	env := fuzzEnv
	if mode == ModeRun && !bytes.Contains(data, []byte("channel: main")) {
		// sluice run needs a main channel: give one, unless the input
		// binds main itself.
		env = maps.Clone(fuzzEnv)
		env["MCP_SERVER_URL"] = "http://127.0.0.1:9/mcp"
	}
	c := &cli{env: envOf(env)}
	l := &loader{env: c.env, path: fc.path}
	cfg, k, err := l.load()
	if err == nil {
		applyModeDefaults(cfg, mode, k)
		err = cfg.validate(mode)
	}
	if err != nil {
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("load/validate error %T is not a ConfigError: %v", err, err)
		}
		return err
	}
	// A valid configuration holds no number out of its range, wherever it
	// came from.
	if err := checkRanges(cfg); err != nil {
		t.Fatalf("validated, yet: %v", err)
	}
	ctx := context.Background()
	s := &session{cli: c, mode: mode, loader: l, cfg: cfg, known: k, log: slog.New(slog.DiscardHandler)}
	if _, err := s.checkWith(ctx, fc.pl); err != nil {
		return asConfigError(err)
	}
	if mode == ModeRelay {
		return nil
	}
	chans, err := cfg.channels()
	if err != nil {
		t.Fatalf("validated, yet channels: %v", err)
	}
	for _, ch := range chans {
		if ch.Wasm == nil {
			continue
		}
		bc, err := s.bindingConfig(ch, cfg.MCP.MaxConcurrentRequests)
		if err != nil {
			return asConfigError(err)
		}
		bc.Commands = nil
		rt, err := fc.pl.runtime(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, err := rt.LoadBinding(ctx, bc)
		if err != nil {
			return asConfigError(err)
		}
		_ = b.Close()
	}
	return nil
}

// fuzzHang is how long one input may take before it counts as a hang: far
// above a plugin build on a starved machine under -race, far below forever.
const fuzzHang = 5 * time.Minute

// run checks one input and fails the test on a hang or a malformed error.
func (fc *fuzzChecker) run(t *testing.T, mode Mode, data []byte) {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- fmt.Errorf("PANIC: %v", v)
			}
		}()
		done <- fc.check(t, mode, data)
	}()
	select {
	case err := <-done:
		if err != nil && strings.HasPrefix(err.Error(), "PANIC: ") {
			t.Fatalf("sluice config check --mode %s panicked: %v\n%s", mode, err, data)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error is not one line: %q", err)
		}
	case <-time.After(fuzzHang):
		t.Fatalf("sluice config check --mode %s still running after %s on:\n%s", mode, fuzzHang, data)
	}
}

// fuzzSeeds are real configurations: koanf.yaml, the examples', the
// Kubernetes one and every YAML block of docs/configuration.md, plus the
// host's test modules and edge values in the places numbers go.
func fuzzSeeds(t testing.TB) [][]byte {
	root := repoRoot(t)
	var out [][]byte
	for _, p := range []string{"koanf.yaml", "examples/cli-binding/sluice.yaml", "examples/rest-binding/sluice.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	if b, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "agent.yaml")); err == nil {
		_, rest, _ := strings.Cut(string(b), "sluice.yaml: |\n")
		body, _, _ := strings.Cut(rest, "---")
		var lines []string
		for _, l := range strings.Split(body, "\n") {
			lines = append(lines, strings.TrimPrefix(l, "    "))
		}
		out = append(out, []byte(strings.Join(lines, "\n")))
	}
	if b, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md")); err == nil {
		for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
			out = append(out, []byte(m[1]))
		}
	}
	good, binding := hostFixture(t, "good.wasm"), hostFixture(t, "binding.wasm")
	edges := []string{"-1", "0", "1", "1024", "65536", "65537", "70000", "4294967295", "4294967296",
		"9223372036854775807", "18446744073709551616", "1e30", "-1e30", "1.5", ".nan", ".inf", "true", "lots", "''", "[1]", "{a: 1}"}
	durations := []string{"0", "0s", "1ns", "1ms", "1s", "30", "-1s", "2h", "25h", "2562047h", "soon", "1.5"}
	for _, v := range edges {
		out = append(out,
			[]byte("pipeline:\n  - plugin: redact\n    limits: {memory-pages: "+v+", max-message-size: "+v+"}\n"),
			[]byte("relay:\n  pipeline:\n    - plugin: "+good+"\n      limits: {memory-pages: "+v+"}\n"),
			[]byte("mcp:\n  max-concurrent-requests: "+v+"\n  bindings:\n    - channel: main\n      wasm:\n        path: "+binding+"\n        limits: {memory-pages: "+v+", pool-size: "+v+"}\n"),
			[]byte("control-plane: {max-inflight: "+v+"}\nmcp: {max-streams: "+v+"}\nrelay: {max-body-bytes: "+v+", max-response-bytes: "+v+"}\n"),
			[]byte("health: {listen-addr: '127.0.0.1:"+v+"'}\n"),
		)
	}
	for _, d := range durations {
		out = append(out,
			[]byte("pipeline:\n  - plugin: "+good+"\n    limits: {call-timeout: "+d+"}\n"),
			[]byte("control-plane: {poll-timeout: "+d+"}\ndrain-timeout: "+d+"\nrelay: {response-timeout: "+d+"}\n"),
		)
	}
	out = append(out,
		[]byte("pipeline:\n  - plugin: headers\n  - plugin: oauthmeta\n  - plugin: redact\n    config: {secret: env:TOKEN}\n"),
		[]byte("relay:\n  tunnels:\n    - id: "+testTunnel+"\n      runtime-key: env:RK\n      client-keys: [{name: a, key: env:CK}]\n      response-timeout: 5s\n"),
		[]byte("control-plane:\n  api-key: file:/dev/zero\n"),
		[]byte("pipeline:\n  - plugin: /dev/zero\n"),
		[]byte("pipeline:\n"),
		[]byte("a: [\n"),
	)
	return out
}

// FuzzConfigLoad feeds arbitrary bytes, seeded with real configurations
// and edge values, through `sluice config check` (load, mode defaults,
// validate, every pipeline built with the real plugins) and the Wasm
// bindings' load, for each mode. No input may panic or hang; every error is
// a one-line ConfigError.
func FuzzConfigLoad(f *testing.F) {
	for i, s := range fuzzSeeds(f) {
		f.Add(uint8(i%len(fuzzModes)), s)
	}
	fc := newFuzzChecker(f)
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		fc.run(t, fuzzModes[int(mode)%len(fuzzModes)], data)
	})
}

// valueTemplate is a configuration that sets every numeric key of Config:
// each {{key}} is replaced by a value. Paths are {{good}} and {{binding}}.
const valueTemplate = `control-plane: {max-inflight: {{control-plane.max-inflight}}, poll-timeout: {{control-plane.poll-timeout}}}
mcp:
  max-concurrent-requests: {{mcp.max-concurrent-requests}}
  startup-wait-timeout: {{mcp.startup-wait-timeout}}
  max-streams: {{mcp.max-streams}}
  bindings:
    - channel: main
      wasm:
        path: {{binding}}
        http: {timeout: {{mcp.bindings[].wasm.http.timeout}}, max-response-bytes: {{mcp.bindings[].wasm.http.max-response-bytes}}}
        commands: [{name: c, command: cat, timeout: {{mcp.bindings[].wasm.commands[].timeout}}, max-output-bytes: {{mcp.bindings[].wasm.commands[].max-output-bytes}}}]
        limits: {memory-pages: {{mcp.bindings[].wasm.limits.memory-pages}}, call-timeout: {{mcp.bindings[].wasm.limits.call-timeout}}, max-message-size: {{mcp.bindings[].wasm.limits.max-message-size}}, pool-size: {{mcp.bindings[].wasm.limits.pool-size}}, max-memory: {{mcp.bindings[].wasm.limits.max-memory}}}
        breaker: {failures: {{mcp.bindings[].wasm.breaker.failures}}, backoff: {{mcp.bindings[].wasm.breaker.backoff}}, max-backoff: {{mcp.bindings[].wasm.breaker.max-backoff}}}
drain-timeout: {{drain-timeout}}
log: {repeat-window: {{log.repeat-window}}}
pipeline:
  - plugin: {{good}}
    limits: {memory-pages: {{pipeline[].limits.memory-pages}}, call-timeout: {{pipeline[].limits.call-timeout}}, max-message-size: {{pipeline[].limits.max-message-size}}, pool-size: {{pipeline[].limits.pool-size}}, max-memory: {{pipeline[].limits.max-memory}}}
    breaker: {failures: {{pipeline[].breaker.failures}}, backoff: {{pipeline[].breaker.backoff}}, max-backoff: {{pipeline[].breaker.max-backoff}}}
relay:
  max-body-bytes: {{relay.max-body-bytes}}
  max-response-bytes: {{relay.max-response-bytes}}
  response-timeout: {{relay.response-timeout}}
  body-read-timeout: {{relay.body-read-timeout}}
  max-body-bytes-in-flight: {{relay.max-body-bytes-in-flight}}
  max-body-bytes-in-flight-per-key: {{relay.max-body-bytes-in-flight-per-key}}
  max-concurrent-per-key: {{relay.max-concurrent-per-key}}
  max-concurrent-per-address: {{relay.max-concurrent-per-address}}
  nats: {replicas: {{relay.nats.replicas}}}
  tunnels:
    - id: tunnel_0123456789abcdef0123456789abcdef
      runtime-key: env:RK
      auth-mode: public
      response-timeout: {{relay.tunnels[].response-timeout}}
  pipeline:
    - plugin: {{good}}
      limits: {memory-pages: {{relay.pipeline[].limits.memory-pages}}, call-timeout: {{relay.pipeline[].limits.call-timeout}}, max-message-size: {{relay.pipeline[].limits.max-message-size}}, pool-size: {{relay.pipeline[].limits.pool-size}}, max-memory: {{relay.pipeline[].limits.max-memory}}}
      breaker: {failures: {{relay.pipeline[].breaker.failures}}, backoff: {{relay.pipeline[].breaker.backoff}}, max-backoff: {{relay.pipeline[].breaker.max-backoff}}}
`

// FuzzConfigValue is the structured counterpart: a valid configuration
// that sets every numeric key (agent, relay, pipelines, a Wasm binding,
// breakers), with one of them, chosen by key, replaced by the fuzzed YAML
// scalar. It reaches the range checks and the plugin host with every value
// the fuzzer can think of, rather than with the few random bytes that parse
// as YAML.
func FuzzConfigValue(f *testing.F) {
	keys := numericPatterns()
	// The template sets every numeric key, each once: a key added to
	// Config must be added to it.
	for _, k := range keys {
		if n := strings.Count(valueTemplate, "{{"+k+"}}"); n != 1 {
			f.Fatalf("valueTemplate sets %s %d times, want once", k, n)
		}
	}
	if n := strings.Count(valueTemplate, "{{"); n != len(keys)+3 {
		f.Fatalf("valueTemplate has %d placeholders for %d keys and 3 paths", n, len(keys))
	}
	base := map[string]string{}
	for _, k := range keys {
		base[k] = "0"
	}
	for k, v := range map[string]string{
		"control-plane.max-inflight": "20", "control-plane.poll-timeout": "30s", "mcp.max-concurrent-requests": "10",
		"mcp.max-streams": "32", "relay.max-body-bytes": "4194304", "relay.max-response-bytes": "16777216",
		"relay.response-timeout": "120s", "drain-timeout": "1s", "mcp.startup-wait-timeout": "0s", "log.repeat-window": "10s",
		"relay.body-read-timeout": "10s",
	} {
		base[k] = v
	}
	good, binding := hostFixture(f, "good.wasm"), hostFixture(f, "binding.wasm")
	render := func(key int, value string) []byte {
		value, _, _ = strings.Cut(value, "\n")
		pairs := []string{"{{good}}", good, "{{binding}}", binding}
		for i, k := range keys {
			v := base[k]
			if i == key%len(keys) {
				v = value
			}
			pairs = append(pairs, "{{"+k+"}}", v)
		}
		return []byte(strings.NewReplacer(pairs...).Replace(valueTemplate))
	}
	// A few edges per key (FuzzConfigLoad's seeds have the rest): the
	// baseline must leave a short fuzz run time to mutate.
	values := []string{"-1", "0", "65537", "4294967296", "1.5", "2h"}
	for i := range keys {
		for _, v := range values {
			f.Add(uint16(i), v)
		}
	}
	fc := newFuzzChecker(f)
	f.Fuzz(func(t *testing.T, key uint16, value string) {
		data := render(int(key), value)
		for _, mode := range fuzzModes {
			fc.run(t, mode, data)
		}
	})
}
