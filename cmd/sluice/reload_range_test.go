package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine/enginetest"
)

// TestReloadOutOfRangeKeepsRunning reloads a running `sluice dev` to a
// memory limit of 70000 pages and of -1, in the agent's pipeline, in the
// relay's and in a Wasm binding's limits (each once wazero panicked on,
// taking the process and every call with it). Each reload fails with the
// key and its range, logs that it kept the old chain, and the process goes
// on serving through all three: the relay's stage answers ping, the
// agent's stage answers probe, and the binding answers ok.
func TestReloadOutOfRangeKeepsRunning(t *testing.T) {
	good, bindingWasm := hostFixture(t, "good.wasm"), hostFixture(t, "binding.wasm")
	path := filepath.Join(t.TempDir(), "dev.yaml")
	// good.wasm answers a method starting with p itself ({"from":"wat"});
	// each stage is narrowed to one method, so the answer says which chain
	// is live. binding.wasm answers o… with {"ok":true}, p… with
	// {"denied":true}.
	write := func(agentPages, relayPages, bindingPages string) {
		replaceFile(t, path, fmt.Sprintf(`pipeline:
  - plugin: %[1]s
    name: agentstage
    hooks: [request]
    methods: [probe]
    limits: {memory-pages: %[3]s}
mcp:
  bindings:
    - channel: main
      wasm:
        path: %[2]s
        name: wat
        limits: {memory-pages: %[5]s}
relay:
  pipeline:
    - plugin: %[1]s
      name: relaystage
      hooks: [request]
      methods: [ping]
      limits: {memory-pages: %[4]s}
`, good, bindingWasm, agentPages, relayPages, bindingPages))
	}
	write("16", "16", "16")
	info, logs, reload := startDevWithConfig(t, path)
	rs := &rawSession{t: t, url: info.MCPURL, key: info.Key}
	serving := func(step string) {
		t.Helper()
		for method, want := range map[string]string{"ping": `"from":"wat"`, "probe": `"from":"wat"`, "ok": `"ok":true`} {
			st, m := rs.post(`{"jsonrpc":"2.0","id":1,"method":"` + method + `"}`)
			b, _ := json.Marshal(m)
			if st != 200 || !strings.Contains(string(b), want) {
				t.Fatalf("%s: %s got HTTP %d %s, want %s", step, method, st, b, want)
			}
		}
	}
	serving("before any reload")
	steps := []struct {
		name                   string
		agent, relay, bindings string
		kept, key              string
	}{
		{"agent pipeline 70000", "70000", "16", "16", "pipeline", "pipeline[0].limits.memory-pages: 70000 is out of range 1..65536"},
		{"agent pipeline -1", "-1", "16", "16", "pipeline", "pipeline[0].limits.memory-pages: -1 is out of range 1..65536"},
		{"relay pipeline 70000", "16", "70000", "16", "relay.pipeline", "relay.pipeline[0].limits.memory-pages: 70000 is out of range 1..65536"},
		{"relay pipeline -1", "16", "-1", "16", "relay.pipeline", "relay.pipeline[0].limits.memory-pages: -1 is out of range 1..65536"},
		{"binding 70000", "16", "16", "70000", "mcp.bindings", "mcp.bindings[0].wasm.limits.memory-pages: 70000 is out of range 1..65536"},
		{"binding -1", "16", "16", "-1", "mcp.bindings", "mcp.bindings[0].wasm.limits.memory-pages: -1 is out of range 1..65536"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			line := `"msg":"reload failed: kept the old ` + st.kept + `"`
			before := strings.Count(logs.String(), st.key)
			write(st.agent, st.relay, st.bindings)
			reload <- struct{}{}
			enginetest.WaitFor(t, st.key, func() bool { return strings.Count(logs.String(), st.key) > before })
			if !strings.Contains(logs.String(), line) {
				t.Fatalf("no %s line:\n%s", line, logs.String())
			}
			serving(st.name)
		})
	}
	if strings.Contains(logs.String(), "panic") {
		t.Fatalf("a reload panicked:\n%s", logs.String())
	}
}

// TestReloadRecoversFromAPanic: a reload whose apply panics (nothing a
// config holds should make one; this is the net at the reload boundary)
// fails like any other: the process stays, the log says what was kept.
func TestReloadRecoversFromAPanic(t *testing.T) {
	var logs enginetest.SyncBuffer
	l := &loader{env: envOf(runEnv(nil))}
	cfg, k, err := l.load()
	if err != nil {
		t.Fatal(err)
	}
	s := &session{cli: &cli{env: envOf(nil)}, mode: ModeRun, loader: l, cfg: cfg, known: k, log: slog.New(slog.NewJSONHandler(&logs, nil))}
	calls := 0
	live := []liveKey{{
		key:    "pipeline",
		apply:  func(context.Context, *Config) error { calls++; panic("memoryLimitPages invalid: 70000 > 65536") },
		value:  func(*Config) any { return calls },
		always: func(*Config) bool { return true },
	}}
	err = s.reloadOnce(context.Background(), live, map[string]any{"pipeline": -1})
	var pe *panicError
	if !errors.As(err, &pe) || calls != 1 {
		t.Fatalf("reload: %v after %d calls", err, calls)
	}
	for _, want := range []string{`"msg":"reload failed: kept the old pipeline"`, `reloading pipeline panicked: memoryLimitPages invalid`, `"stack":"goroutine`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
}

// TestKeptFor: a reload refused for an invalid value names the live key
// the value is under, else the configuration.
func TestKeptFor(t *testing.T) {
	live := []liveKey{{key: "pipeline"}, {key: "relay.pipeline"}, {key: "mcp.bindings"}}
	for key, want := range map[string]string{
		"pipeline[0].limits.memory-pages":          "pipeline",
		"relay.pipeline[3].plugin":                 "relay.pipeline",
		"mcp.bindings[0].wasm.limits.memory-pages": "mcp.bindings",
		"pipeline":                 "pipeline",
		"pipelines":                "configuration",
		"log.level":                "configuration",
		"relay.tunnels[0].id":      "configuration",
		"relay.pipeline-something": "configuration",
	} {
		if got := keptFor(cfgErr(key, "bad"), live); got != want {
			t.Errorf("%s: kept %s, want %s", key, got, want)
		}
	}
	if got := keptFor(errors.New("read: no such file"), live); got != "configuration" {
		t.Errorf("plain error: %s", got)
	}
}
