package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/enginetest"
)

// TestDefaultPipelineConfig: an absent `pipeline` is the default chain for
// run and dev, `pipeline: []` is none, a bare `pipeline:` is an error, and
// the relay has no default chain.
func TestDefaultPipelineConfig(t *testing.T) {
	tests := []struct {
		name    string
		mode    Mode
		file    string
		want    []PluginConfig
		wantErr string
	}{
		{name: "run, absent", mode: ModeRun, want: defaultPipeline()},
		{name: "run, absent from a file", mode: ModeRun, file: "log:\n  level: info\n", want: defaultPipeline()},
		{name: "dev, absent", mode: ModeDev, want: defaultPipeline()},
		{name: "run, empty list", mode: ModeRun, file: "pipeline: []\n", want: nil},
		{name: "dev, empty list", mode: ModeDev, file: "pipeline: []\n", want: nil},
		{name: "run, null", mode: ModeRun, file: "pipeline:\n", wantErr: "config: pipeline: empty value: write `pipeline: []` to run no plugins, or remove the key for the default chain"},
		{name: "relay, absent", mode: ModeRelay, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadFor(t, tc.mode, nil, runEnv(nil), tc.file)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(cfg.Pipeline), normalize(tc.want)) {
				t.Fatalf("pipeline = %+v, want %+v", cfg.Pipeline, tc.want)
			}
			if len(cfg.Relay.Pipeline) != 0 {
				t.Fatalf("relay.pipeline = %+v, want none", cfg.Relay.Pipeline)
			}
		})
	}
	d := defaultPipeline()[0]
	if d.Plugin != "redact" || !reflect.DeepEqual(d.Hooks, []string{"response"}) ||
		!reflect.DeepEqual(d.Config, map[string]any{"disable": []any{"email", "phone", "iban"}}) {
		t.Fatalf("the default chain is not DESIGN's: %+v", d)
	}
}

// TestPipelineLimitsReachHost: a pipeline entry's max-memory, pool-size and
// breaker keys reach the host's plugin config; absent, they are zero (the
// host's defaults).
func TestPipelineLimitsReachHost(t *testing.T) {
	cfg, err := loadFor(t, ModeRun, nil, runEnv(nil), `pipeline:
  - plugin: redact
    limits: {max-memory: 134217728, pool-size: 3}
    breaker: {failures: 2, backoff: 2s, max-backoff: 8s}
  - plugin: headers
    breaker: {disabled: true}
`)
	if err != nil {
		t.Fatal(err)
	}
	pl := &pipelines{}
	pc, err := pl.pluginConfig("pipeline[0]", cfg.Pipeline[0])
	if err != nil {
		t.Fatal(err)
	}
	if pc.MaxMemory != 128<<20 || pc.PoolSize != 3 || pc.Breaker.Failures != 2 || pc.Breaker.Backoff != 2*time.Second ||
		pc.Breaker.MaxBackoff != 8*time.Second || pc.Breaker.Disabled {
		t.Fatalf("host config %+v", pc)
	}
	pc, err = pl.pluginConfig("pipeline[1]", cfg.Pipeline[1])
	if err != nil {
		t.Fatal(err)
	}
	if pc.MaxMemory != 0 || pc.PoolSize != 0 || !pc.Breaker.Disabled || pc.Breaker.Failures != 0 {
		t.Fatalf("host config %+v", pc)
	}
}

// TestRunDefaultChain runs `sluice relay` and `sluice run` (demo server in
// process) as a user would move from `sluice dev`: with no pipeline the
// agent redacts credentials and card numbers in responses and leaves
// personal data; `pipeline: []` turns that off. Both commands print their
// active chain at start and at every reload.
func TestRunDefaultChain(t *testing.T) {
	dir := t.TempDir()
	const runtimeKey = "sk-sluice-rt-chain0123456789"
	relayAddr := freeAddr(t)
	relayCfg := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(relayCfg, []byte("relay:\n  listen-addr: "+relayAddr+"\n  admin-listen-addr: ''\n  tunnels:\n"+
		"    - {id: "+testTunnel+", runtime-key: 'env:TEST_RUNTIME_KEY', auth-mode: public}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	relayLogs := startRelayCLI(t, relayCfg, runtimeKey)
	if !strings.Contains(relayLogs.String(), `"msg":"active chain","relay.pipeline":"none"`) {
		t.Errorf("the relay did not print its chain:\n%s", relayLogs.String())
	}

	runCfg := filepath.Join(dir, "run.yaml")
	write := func(yaml string) { replaceFile(t, runCfg, yaml) }
	write("log:\n  level: info\n") // no pipeline key
	reload := make(chan struct{})
	var logs enginetest.SyncBuffer
	startCLI(t, &cli{stdout: &bytes.Buffer{}, stderr: &logs, reload: reload, env: envOf(map[string]string{
		"CONTROL_PLANE_BASE_URL":  "http://" + relayAddr,
		"CONTROL_PLANE_TUNNEL_ID": testTunnel,
		"CONTROL_PLANE_API_KEY":   runtimeKey,
		"HEALTH_LISTEN_ADDR":      "127.0.0.1:0",
	})}, "run", "--config", runCfg, "--embedded-mcp-stub", "--log.format", "json")
	waitLong(t, "agent ready", func() bool { return strings.Contains(logs.String(), `"msg":"ready"`) }, &logs)
	if !strings.Contains(logs.String(), `"msg":"active chain","pipeline":"redact"`) {
		t.Fatalf("sluice run did not print its default chain:\n%s", logs.String())
	}
	url := "http://" + relayAddr + "/v1/mcp/" + testTunnel
	text := callTool(t, mcpClient(t, url, ""), "fake_secrets", nil)
	for _, secret := range []string{"AKIAIOSFODNN7EXAMPLE", "ghp_FAKE0123456789", "4242 4242 4242 4242", "S3cr3t-Fake-Passw0rd"} {
		if strings.Contains(text, secret) {
			t.Errorf("the default chain let %q through:\n%s", secret, text)
		}
	}
	for _, personal := range []string{"jane.doe@example.com", "+1 415 555 0142", "GB82 WEST 1234 5698 7654 32"} {
		if !strings.Contains(text, personal) {
			t.Errorf("the default chain redacted personal data %q (off by default):\n%s", personal, text)
		}
	}

	// pipeline: [] turns the chain off, live; removing the key restores it.
	steps := []struct {
		yaml, chain string
		redacted    bool
	}{
		{yaml: "log:\n  level: info\npipeline: []\n", chain: "none", redacted: false},
		{yaml: "log:\n  level: info\n", chain: "redact", redacted: true},
	}
	for i, st := range steps {
		// The file watcher may reload too: look for a reload that ends with
		// the new chain, after the write.
		from := len(logs.String())
		write(st.yaml)
		reload <- struct{}{}
		var last string
		waitLong(t, "reload finished with pipeline "+st.chain, func() bool {
			for _, l := range strings.Split(logs.String()[from:], "\n") {
				if strings.Contains(l, `"msg":"reload finished","phase":"reload"`) && strings.Contains(l, `"pipeline":"`+st.chain+`"`) {
					last = l
					return true
				}
			}
			return false
		}, &logs)
		if !strings.Contains(last, `"took_ms":`) {
			t.Fatalf("step %d: reload line %s lacks the time it took", i, last)
		}
		text := callTool(t, mcpClient(t, url, ""), "fake_secrets", nil)
		if got := !strings.Contains(text, "AKIAIOSFODNN7EXAMPLE"); got != st.redacted {
			t.Fatalf("step %d (pipeline %s): redacted = %v:\n%s", i, st.chain, got, text)
		}
	}
	if !strings.Contains(logs.String(), `"msg":"reload started"`) {
		t.Error("no reload started line")
	}
}

// waitLong waits for cond up to devStartTimeout: for waits that load a
// plugin, which can take long under -race on a busy machine.
func waitLong(t *testing.T, what string, cond func() bool, logs ...*enginetest.SyncBuffer) {
	t.Helper()
	deadline := time.Now().Add(devStartTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			for _, l := range logs {
				t.Log(l.String())
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
