package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/host"
)

// populated returns a value of t whose struct lists hold one element each,
// recursively, so that walking it visits every key of t.
func populated(t reflect.Type) reflect.Value {
	v := reflect.New(t).Elem()
	for i := 0; i < t.NumField(); i++ {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Struct:
			f.Set(populated(f.Type()))
		case reflect.Slice:
			if f.Type().Elem().Kind() == reflect.Struct {
				s := reflect.MakeSlice(f.Type(), 1, 1)
				s.Index(0).Set(populated(f.Type().Elem()))
				f.Set(s)
			}
		}
	}
	return v
}

// numericPatterns lists every numeric key of Config ([] for list indexes).
func numericPatterns() []string {
	var out []string
	_ = walkNumbers(populated(reflect.TypeFor[Config]()), "", "", func(_, pattern string, _ reflect.Value) error {
		out = append(out, pattern)
		return nil
	})
	slices.Sort(out)
	return out
}

// TestEveryNumericKeyHasARange: every numeric key of Config, in every
// section, list and binding, has a range in numRanges, and numRanges names
// no key that does not exist. A key added without a range fails here.
func TestEveryNumericKeyHasARange(t *testing.T) {
	keys := numericPatterns()
	if len(keys) < 20 {
		t.Fatalf("only %d numeric keys found: the walk is broken: %v", len(keys), keys)
	}
	for _, k := range keys {
		if _, ok := numRanges[k]; !ok {
			t.Errorf("numeric key %s has no range in numRanges", k)
		}
	}
	for k := range numRanges {
		if !slices.Contains(keys, k) {
			t.Errorf("numRanges names %s, which is not a numeric key of Config", k)
		}
	}
}

// TestDocsStateEveryRange: docs/configuration.md states each numeric key's
// range on the line that documents it.
func TestDocsStateEveryRange(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	durType := map[string]bool{}
	_ = walkNumbers(populated(reflect.TypeFor[Config]()), "", "", func(_, pattern string, v reflect.Value) error {
		durType[pattern] = v.Type() == durationType
		return nil
	})
	for pattern, r := range numRanges {
		leaf := pattern[strings.LastIndexByte(pattern, '.')+1:]
		want := r.describe(durType[pattern])
		want = strings.TrimSuffix(want, " (0 = default)")
		found := false
		for _, l := range lines {
			if strings.Contains(l, leaf) && strings.Contains(l, want) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("docs/configuration.md has no line naming %s with its range %s", pattern, want)
		}
	}
}

// binding is a valid mcp.bindings entry for a Wasm binding, with extra
// YAML under wasm:.
func bindingYAML(extra string) string {
	return "mcp:\n  bindings:\n    - channel: aux\n      wasm:\n        path: b.wasm\n" + extra
}

// TestNumericEdges: each kind of numeric key at and beyond its edges, and
// the values weak decoding would have turned into another number. Each
// error is exact: it names the key and the allowed range.
func TestNumericEdges(t *testing.T) {
	mem := func(v string) string { return "pipeline:\n  - plugin: redact\n    limits: {memory-pages: " + v + "}\n" }
	relayMem := func(v string) string {
		return "relay:\n  pipeline:\n    - plugin: redact\n      limits: {memory-pages: " + v + "}\n"
	}
	tests := []struct {
		name string
		mode Mode
		env  map[string]string
		file string
		want string // "" = valid
	}{
		{"memory pages default", ModeRun, nil, mem("0"), ""},
		{"memory pages lowest", ModeRun, nil, mem("1"), ""},
		{"memory pages highest", ModeRun, nil, mem("65536"), ""},
		{"memory pages integral float", ModeRun, nil, mem("1024.0"), ""},
		{"memory pages one above", ModeRun, nil, mem("65537"), "config: pipeline[0].limits.memory-pages: 65537 is out of range 1..65536"},
		{"memory pages 70000", ModeRun, nil, mem("70000"), "config: pipeline[0].limits.memory-pages: 70000 is out of range 1..65536"},
		{"memory pages -1", ModeRun, nil, mem("-1"), "config: pipeline[0].limits.memory-pages: -1 is out of range 1..65536"},
		{"memory pages 2^32 (0 as a uint32)", ModeRun, nil, mem("4294967296"), "config: pipeline[0].limits.memory-pages: 4294967296 is out of range 1..65536"},
		{"memory pages 2^64-1", ModeRun, nil, mem("18446744073709551615"), "config: pipeline[0].limits.memory-pages: 18446744073709551615 does not fit in an integer"},
		{"memory pages huge", ModeRun, nil, mem("1e30"), "config: pipeline[0].limits.memory-pages: 1e+30 does not fit in an integer"},
		{"memory pages fraction", ModeRun, nil, mem("1.5"), "config: pipeline[0].limits.memory-pages: want an integer, not 1.5"},
		{"memory pages NaN", ModeRun, nil, mem(".nan"), "config: pipeline[0].limits.memory-pages: want an integer, not NaN"},
		{"memory pages bool", ModeRun, nil, mem("true"), "config: pipeline[0].limits.memory-pages: want an integer, not true"},
		{"memory pages string", ModeRun, nil, mem("lots"), "config: pipeline[0].limits.memory-pages: want an integer"},
		{"relay memory pages", ModeRelay, nil, relayMem("70000"), "config: relay.pipeline[0].limits.memory-pages: 70000 is out of range 1..65536"},
		{"relay memory pages -1", ModeRelay, nil, relayMem("-1"), "config: relay.pipeline[0].limits.memory-pages: -1 is out of range 1..65536"},
		{"relay memory pages in run mode too", ModeRun, nil, relayMem("70000"), "config: relay.pipeline[0].limits.memory-pages: 70000 is out of range 1..65536"},
		{"binding memory pages", ModeRun, nil, bindingYAML("        limits: {memory-pages: 70000}\n"), "config: mcp.bindings[0].wasm.limits.memory-pages: 70000 is out of range 1..65536"},
		{"binding pool size", ModeRun, nil, bindingYAML("        limits: {pool-size: 1025}\n"), "config: mcp.bindings[0].wasm.limits.pool-size: 1025 is out of range 1..1024"},
		{"binding negative pool size", ModeRun, nil, bindingYAML("        limits: {pool-size: -1}\n"), "config: mcp.bindings[0].wasm.limits.pool-size: -1 is out of range 1..1024"},
		{"binding http bytes", ModeRun, nil, bindingYAML("        http: {max-response-bytes: 2147483648}\n"), "config: mcp.bindings[0].wasm.http.max-response-bytes: 2147483648 is out of range 1..1073741824"},
		{"binding command timeout", ModeRun, nil, bindingYAML("        commands: [{name: c, command: cat, timeout: -1s}]\n"), "config: mcp.bindings[0].wasm.commands[0].timeout: -1s is out of range 1ms..1h"},
		{"call timeout bare number", ModeRun, nil, "pipeline:\n  - plugin: redact\n    limits: {call-timeout: 5}\n", "config: pipeline[0].limits.call-timeout: want a duration such as 30s or 2m (5 has no unit)"},
		{"call timeout zero", ModeRun, nil, "pipeline:\n  - plugin: redact\n    limits: {call-timeout: 0}\n", ""},
		{"call timeout too long", ModeRun, nil, "pipeline:\n  - plugin: redact\n    limits: {call-timeout: 2h}\n", "config: pipeline[0].limits.call-timeout: 2h is out of range 1ms..1h"},
		{"call timeout below 1ms", ModeRun, nil, "pipeline:\n  - plugin: redact\n    limits: {call-timeout: 500us}\n", "config: pipeline[0].limits.call-timeout: 500µs is out of range 1ms..1h"},
		{"pipeline pool size", ModeRun, nil, "pipeline:\n  - plugin: redact\n    limits: {pool-size: 1e9}\n", "config: pipeline[0].limits.pool-size: 1000000000 is out of range 1..1024"},
		{"memory budget", ModeRun, nil, "pipeline:\n  - plugin: redact\n    limits: {max-memory: 18446744073709551615}\n", "config: pipeline[0].limits.max-memory: 18446744073709551615 does not fit in an integer"},
		{"breaker back-off", ModeRelay, nil, "relay:\n  pipeline:\n    - plugin: redact\n      breaker: {backoff: 2562047h}\n", "config: relay.pipeline[0].breaker.backoff: 2562047h is out of range 1ms..1h"},
		{"max message size", ModeRun, nil, "pipeline:\n  - plugin: redact\n    limits: {max-message-size: 1073741825}\n", "config: pipeline[0].limits.max-message-size: 1073741825 is out of range 1..1073741824"},
		{"duration not a duration", ModeRun, nil, "control-plane:\n  poll-timeout: soon\n", "config: control-plane.poll-timeout: want a duration such as 30s or 2m"},
		{"duration a list", ModeRun, nil, "control-plane:\n  poll-timeout: [1s]\n", "config: control-plane.poll-timeout: want a duration such as 30s or 2m"},
		{"poll timeout zero", ModeRun, nil, "control-plane:\n  poll-timeout: 0s\n", "config: control-plane.poll-timeout: 0s is out of range 1ms..1h"},
		{"poll timeout huge", ModeRun, nil, "control-plane:\n  poll-timeout: 2000000h\n", "config: control-plane.poll-timeout: 2000000h is out of range 1ms..1h"},
		{"poll timeout overflows", ModeRun, nil, "control-plane:\n  poll-timeout: 3000000h\n", "config: control-plane.poll-timeout: want a duration such as 30s or 2m"},
		{"max concurrent huge", ModeRun, map[string]string{"MCP_MAX_CONCURRENT_REQUESTS": "100000000"}, "", "config: mcp.max-concurrent-requests: 100000000 is out of range 1..10000"},
		{"max concurrent overflows int64", ModeRun, map[string]string{"MCP_MAX_CONCURRENT_REQUESTS": "99999999999999999999"}, "", "config: mcp.max-concurrent-requests: want an integer"},
		{"drain timeout negative", ModeRun, map[string]string{"SLUICE_DRAIN_TIMEOUT": "-5s"}, "", "config: drain-timeout: -5s is out of range 0s..1h"},
		{"startup wait", ModeRun, map[string]string{"MCP_STARTUP_WAIT_TIMEOUT": "2h"}, "", "config: mcp.startup-wait-timeout: 2h is out of range 0s..1h"},
		{"relay body cap", ModeRelay, nil, "relay:\n  max-body-bytes: 9223372036854775807\n", "config: relay.max-body-bytes: 9223372036854775807 is out of range 1024..1073741824"},
		{"relay response timeout", ModeRelay, map[string]string{"RELAY_RESPONSE_TIMEOUT": "48h"}, "", "config: relay.response-timeout: 48h is out of range 1ms..24h"},
		{"tunnel response timeout", ModeRelay, map[string]string{"RK": "sk-a"}, "relay:\n  tunnels:\n    - id: " + testTunnel + "\n      runtime-key: env:RK\n      auth-mode: public\n      response-timeout: -1s\n", "config: relay.tunnels[0].response-timeout: -1s is out of range 1ms..24h"},
		{"tunnel response timeout default", ModeRelay, map[string]string{"RK": "sk-a"}, "relay:\n  tunnels:\n    - id: " + testTunnel + "\n      runtime-key: env:RK\n      auth-mode: public\n      response-timeout: 0s\n", ""},
		{"port out of range", ModeRun, map[string]string{"HEALTH_LISTEN_ADDR": "127.0.0.1:70000"}, "", "config: health.listen-addr: port 70000 is out of range 0..65535"},
		{"port by name", ModeRelay, map[string]string{"RELAY_LISTEN_ADDR": "127.0.0.1:http"}, "", `config: relay.listen-addr: port "http": want a number`},
		{"admin port", ModeRelay, map[string]string{"RELAY_ADMIN_LISTEN_ADDR": "127.0.0.1:-1"}, "", `config: relay.admin-listen-addr: port "-1": want a number`},
		{"port zero", ModeRun, map[string]string{"HEALTH_LISTEN_ADDR": "127.0.0.1:0"}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if tc.mode == ModeRun {
				env = runEnv(tc.env)
			}
			_, err := loadFor(t, tc.mode, nil, env, tc.file)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || err.Error() != tc.want {
				t.Fatalf("error %v (%T), want %q", err, err, tc.want)
			}
		})
	}
}

// TestPluginConfigRechecksRanges: the pipeline builder checks the limits
// itself, so a value that skipped validate still never reaches the host.
func TestPluginConfigRechecksRanges(t *testing.T) {
	p := &pipelines{}
	for _, pages := range []int{-1, 70000, 1 << 32} {
		_, err := p.pluginConfig("relay.pipeline[2]", PluginConfig{Plugin: "redact", Limits: PluginLimits{MemoryPages: pages}})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != "relay.pipeline[2].limits.memory-pages" {
			t.Errorf("memory-pages %d: %v", pages, err)
		}
	}
	s := &session{cli: &cli{env: envOf(nil)}}
	_, err := s.bindingConfig(Channel{Name: "main", Key: "mcp.bindings[0]", Wasm: &WasmBinding{Path: "b.wasm", Limits: BindingLimits{MemoryPages: 70000}}}, 10)
	if err == nil || !strings.Contains(err.Error(), "mcp.bindings[0].wasm.limits.memory-pages: 70000 is out of range") {
		t.Errorf("binding: %v", err)
	}
}

// TestConfigFilesThatAreNotFiles: a secret reference, the config file, the
// CA bundle and the TLS files naming a device or a FIFO are refused at once
// (reading /dev/zero would never end; opening a FIFO would block).
func TestConfigFilesThatAreNotFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/dev/zero", fifo} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			checks := map[string]func() error{
				"secret": func() error {
					_, err := Secret("file:"+path).resolve("control-plane.api-key", envOf(nil))
					return err
				},
				"config file": func() error {
					_, _, err := (&loader{env: envOf(nil), path: path}).load()
					return err
				},
				"ca bundle": func() error {
					_, err := (&session{cfg: &Config{CABundle: path}}).controlPlaneClient()
					return err
				},
				"tls": func() error {
					_, err := relayCert(&Config{Relay: Relay{TLSCert: path, TLSKey: path}})
					return err
				},
				"nats tls": func() error {
					s := &session{cli: &cli{env: envOf(nil)}, cfg: &Config{Relay: Relay{NATS: RelayNATS{URL: "nats://127.0.0.1:4222", TLS: RelayNATSTLS{CAFile: path}}}}}
					_, err := s.resolveNATS()
					return err
				},
			}
			for name, f := range checks {
				done := make(chan error, 1)
				go func() { done <- f() }()
				select {
				case err := <-done:
					if err == nil || !strings.Contains(err.Error(), "is not a regular file") {
						t.Errorf("%s: %v", name, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s: still reading %s after 10 s", name, path)
				}
			}
		})
	}
	big := filepath.Join(t.TempDir(), "big.key")
	if err := os.WriteFile(big, make([]byte, maxSecretFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Secret("file:"+big).resolve("k", envOf(nil)); err == nil || !strings.Contains(err.Error(), "larger than 65536 bytes") {
		t.Errorf("oversized secret file: %v", err)
	}
}

// TestBuildRecoversFromAPanic: a panic while a stage loads (nothing a
// config holds should cause one; this is the net) is an error naming the
// entry, and the stages loaded before it are closed.
func TestBuildRecoversFromAPanic(t *testing.T) {
	good := hostFixture(t, "good.wasm")
	var logs enginetest.SyncBuffer
	p := &pipelines{log: slog.New(slog.NewJSONHandler(&logs, nil))}
	defer func() { _ = p.close(context.Background()) }()
	var loaded []*host.Stage
	p.loadStage = func(ctx context.Context, rt *host.Runtime, pc host.PluginConfig) (*host.Stage, error) {
		if pc.Name == "boom" {
			panic("memoryLimitPages invalid: 70000 > 65536")
		}
		st, err := rt.Load(ctx, pc)
		if err == nil {
			loaded = append(loaded, st)
		}
		return st, err
	}
	_, err := p.build(context.Background(), "pipeline", []PluginConfig{{Plugin: good, Name: "first"}, {Plugin: good, Name: "boom"}})
	var pe *panicError
	if !errors.As(err, &pe) || !strings.HasPrefix(err.Error(), "pipeline[1]: pipeline[1] panicked: memoryLimitPages invalid") {
		t.Fatalf("build: %v", err)
	}
	if len(loaded) != 1 {
		t.Fatalf("%d stages loaded before the panic, want 1", len(loaded))
	}
	if _, err := loaded[0].Open(context.Background()); err == nil {
		t.Error("the stage loaded before the panic is still open")
	}
	if !strings.Contains(logs.String(), "recovered from a panic") || !strings.Contains(logs.String(), "stack") {
		t.Errorf("the panic was not logged with its stack:\n%s", logs.String())
	}
}

// TestStartupOutOfRangeIsConfigError: `sluice run`, `sluice relay` and
// `sluice config check` with a memory limit wazero cannot take stop with
// the one-line error and exit code 2 (they panicked).
func TestStartupOutOfRangeIsConfigError(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		file string
		want string
	}{
		{[]string{"run", "--embedded-mcp-stub"}, "pipeline:\n  - plugin: redact\n    limits: {memory-pages: 70000}\n",
			"sluice: config: pipeline[0].limits.memory-pages: 70000 is out of range 1..65536\n"},
		{[]string{"relay"}, "relay:\n  pipeline:\n    - plugin: redact\n      limits: {memory-pages: -1}\n",
			"sluice: config: relay.pipeline[0].limits.memory-pages: -1 is out of range 1..65536\n"},
		{[]string{"config", "check", "--mode", "dev"}, "mcp:\n  bindings:\n    - channel: main\n      wasm: {path: b.wasm, limits: {memory-pages: 70000}}\n",
			"sluice: config: mcp.bindings[0].wasm.limits.memory-pages: 70000 is out of range 1..65536\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			path := filepath.Join(dir, tc.args[0]+".yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			c := &cli{stdout: &out, stderr: &errb, env: envOf(map[string]string{
				"CONTROL_PLANE_TUNNEL_ID": testTunnel, "CONTROL_PLANE_API_KEY": "sk-x", "HEALTH_LISTEN_ADDR": "127.0.0.1:0",
				"CONTROL_PLANE_BASE_URL": "http://127.0.0.1:9", "RELAY_LISTEN_ADDR": "127.0.0.1:0", "RELAY_ADMIN_LISTEN_ADDR": ""})}
			if code := c.main(t.Context(), append(tc.args, "--config", path)); code != exitConfig || errb.String() != tc.want {
				t.Fatalf("exit %d, stderr %q; want %d, %q", code, errb.String(), exitConfig, tc.want)
			}
		})
	}
}
