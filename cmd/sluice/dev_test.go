package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sluicemcp/sluice/engine/enginetest"
)

// devStartTimeout bounds how long a test waits for `sluice dev` to be ready.
// It is long because the first start on a fresh machine compiles the redact
// plugin into an empty compilation cache, which takes over 20 s under -race.
const devStartTimeout = 3 * time.Minute

// startCLI runs `sluice args…` in process until the test ends.
func startCLI(t *testing.T, c *cli, args ...string) {
	t.Helper()
	startStoppable(t, c, args...)
}

// startStoppable runs `sluice args…` in process until stop is called (or
// the test ends); stop fails the test unless the command exits 0 within
// 30 s, with the command's log when c.stderr keeps it (a SyncBuffer).
func startStoppable(t *testing.T, c *cli, args ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- c.main(ctx, args) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				log := ""
				if b, ok := c.stderr.(*enginetest.SyncBuffer); ok {
					log = ":\n" + b.String()
				}
				t.Errorf("sluice %s exited %d%s", args[0], code, log)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("sluice %s did not stop", args[0])
		}
	})
	t.Cleanup(stop)
	return stop
}

func mcpClient(t *testing.T, url, key string) *client.Client {
	t.Helper()
	var opts []transport.StreamableHTTPCOption
	if key != "" {
		opts = append(opts, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + key}))
	}
	tr, err := transport.NewStreamableHTTP(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr, client.WithProtocolVersion("2025-11-25"))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func initialize(ctx context.Context, c *client.Client) error {
	_, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{
		ProtocolVersion: "2025-11-25",
		ClientInfo:      mcp.Implementation{Name: "sluice-cmd-test", Version: "1"},
	}})
	return err
}

func callEcho(t *testing.T, c *client.Client, msg string) string {
	t.Helper()
	return callTool(t, c, "echo", map[string]any{"message": msg})
}

func callTool(t *testing.T, c *client.Client, name string, args map[string]any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := initialize(ctx, c); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	r, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("tools/call %s: %v", name, err)
	}
	if r.IsError || len(r.Content) != 1 {
		t.Fatalf("tools/call %s: %+v", name, r)
	}
	tc, ok := r.Content[0].(mcp.TextContent)
	if !ok {
		t.Fatalf("content %T", r.Content[0])
	}
	return tc.Text
}

func TestDevEndToEnd(t *testing.T) {
	tests := []struct {
		name   string
		public bool
	}{
		{name: "client key"},
		{name: "public", public: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb enginetest.SyncBuffer
			ready := make(chan devInfo, 1)
			c := &cli{stdout: &out, stderr: &errb, env: envOf(nil), devReady: func(i devInfo) { ready <- i }}
			args := []string{"dev", "--relay.listen-addr", "127.0.0.1:0", "--log.format", "json"}
			if tc.public {
				args = append(args, "--public")
			}
			startCLI(t, c, args...)
			var info devInfo
			select {
			case info = <-ready:
			case <-time.After(devStartTimeout):
				t.Fatalf("dev not ready; stderr:\n%s", errb.String())
			}
			if tc.public != (info.Key == "") {
				t.Fatalf("key %q with public=%v", info.Key, tc.public)
			}
			for _, want := range []string{info.MCPURL, `"mcpServers"`, inspectorCommand, "curl -s", "● ready"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("banner lacks %q:\n%s", want, out.String())
				}
			}
			if got := callEcho(t, mcpClient(t, info.MCPURL, info.Key), "through the tunnel"); got != "through the tunnel" {
				t.Fatalf("echo = %q", got)
			}
			if len(info.Agent) > 0 && info.Agent[0] == "redact" {
				// The default pipeline redacts the demo's fake secrets.
				text := callTool(t, mcpClient(t, info.MCPURL, info.Key), "fake_secrets", nil)
				if strings.Contains(text, "AKIAIOSFODNN7EXAMPLE") || !strings.Contains(text, "aws_access_key_id") {
					t.Fatalf("fake_secrets through the default pipeline:\n%s", text)
				}
			}
			if !tc.public {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := initialize(ctx, mcpClient(t, info.MCPURL, "sk-wrong")); err == nil {
					t.Fatal("a wrong client key was accepted")
				}
				if strings.Contains(errb.String(), info.Key) {
					t.Fatal("the client key appears in the logs")
				}
			}
		})
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestRunAgainstRelay runs `sluice relay` (tunnel from a config file, keys
// from env: and file: references) and `sluice run --embedded-mcp-stub`
// (runtime key literal in the environment) as two in-process commands.
func TestRunAgainstRelay(t *testing.T) {
	dir := t.TempDir()
	const runtimeKey = "sk-sluice-rt-test0123456789"
	const clientKey = "sk-sluice-client-test0123456789"
	keyFile := filepath.Join(dir, "client.key")
	if err := os.WriteFile(keyFile, []byte(clientKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	relayAddr := freeAddr(t)
	relayCfg := filepath.Join(dir, "relay.yaml")
	yaml := "relay:\n  listen-addr: " + relayAddr + "\n  admin-listen-addr: 127.0.0.1:0\n  tunnels:\n" +
		"    - id: " + testTunnel + "\n      name: test\n      runtime-key: env:TEST_RUNTIME_KEY\n" +
		"      client-keys:\n        - name: ci\n          key: file:" + keyFile + "\n"
	if err := os.WriteFile(relayCfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	relayErr := startRelayCLI(t, relayCfg, runtimeKey)

	urlFile := filepath.Join(dir, "health.url")
	var agentErr enginetest.SyncBuffer
	startCLI(t, &cli{stdout: &bytes.Buffer{}, stderr: &agentErr, env: envOf(map[string]string{
		"CONTROL_PLANE_BASE_URL":  "http://" + relayAddr,
		"CONTROL_PLANE_TUNNEL_ID": testTunnel,
		"CONTROL_PLANE_API_KEY":   runtimeKey,
		"HEALTH_LISTEN_ADDR":      "127.0.0.1:0",
		"HEALTH_URL_FILE":         urlFile,
	})}, "run", "--embedded-mcp-stub", "--log.format", "json")
	enginetest.WaitFor(t, "agent ready", func() bool { return strings.Contains(agentErr.String(), `"msg":"ready"`) })
	if b, err := os.ReadFile(urlFile); err != nil || !strings.HasPrefix(string(b), "http://127.0.0.1:") {
		t.Fatalf("health url file: %q, %v", b, err)
	}

	url := "http://" + relayAddr + "/v1/mcp/" + testTunnel
	if got := callEcho(t, mcpClient(t, url, clientKey), "hello relay"); got != "hello relay" {
		t.Fatalf("echo = %q", got)
	}
	for _, logs := range []string{relayErr.String(), agentErr.String()} {
		if strings.Contains(logs, runtimeKey) || strings.Contains(logs, clientKey) {
			t.Fatal("a key appears in the logs")
		}
	}
}

// startRelayCLI runs `sluice relay --config cfg` with TEST_RUNTIME_KEY set
// and waits until it listens; it returns its log.
func startRelayCLI(t *testing.T, cfg, runtimeKey string) *enginetest.SyncBuffer {
	t.Helper()
	var logs enginetest.SyncBuffer
	startCLI(t, &cli{stdout: &bytes.Buffer{}, stderr: &logs, env: envOf(map[string]string{"TEST_RUNTIME_KEY": runtimeKey, "RELAY_DATA_DIR": t.TempDir()})},
		"relay", "--config", cfg, "--log.format", "json")
	enginetest.WaitFor(t, "relay listening", func() bool { return strings.Contains(logs.String(), "relay listening") })
	return &logs
}

// TestReload changes a live key and a restart-only key of a running relay.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "relay.yaml")
	addr := freeAddr(t)
	write := func(level, tunnels string) {
		yaml := "log:\n  level: " + level + "\nrelay:\n  listen-addr: " + addr + "\n  admin-listen-addr: ''\n  tunnels:\n" + tunnels
		replaceFile(t, cfgPath, yaml)
	}
	tunnel := "    - id: " + testTunnel + "\n      runtime-key: env:RK\n      auth-mode: public\n"
	write("info", tunnel)
	reload := make(chan struct{})
	var errb enginetest.SyncBuffer
	startCLI(t, &cli{stdout: &bytes.Buffer{}, stderr: &errb, env: envOf(map[string]string{"RK": "sk-rk-1", "RK2": "sk-rk-2", "RELAY_DATA_DIR": dir}), reload: reload},
		"relay", "--config", cfgPath, "--log.format", "json")
	enginetest.WaitFor(t, "relay listening", func() bool { return strings.Contains(errb.String(), "relay listening") })

	second := "tunnel_" + strings.Repeat("b", 32)
	status := func(id string) int {
		resp, err := http.Post("http://"+addr+"/v1/mcp/"+id, "application/json",
			strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	unknown := status(second)
	both := tunnel + "    - id: " + second + "\n      runtime-key: env:RK2\n      auth-mode: public\n"
	steps := []struct {
		name    string
		level   string
		tunnels string
		want    string
	}{
		{name: "new tunnel served", level: "info", tunnels: both, want: "reloaded relay.tunnels"},
		{name: "restart-only key", level: "debug", tunnels: both, want: "restart required: log.level"},
		{name: "tunnels reload live", level: "debug", tunnels: tunnel + "    - id: tunnel_" + strings.Repeat("b", 32) + "\n      runtime-key: env:RK\n      auth-mode: public\n",
			want: "reload failed: kept the old relay.tunnels"}, // same runtime key twice: refused, old kept
		{name: "invalid file keeps running config", level: "loud", tunnels: tunnel, want: "config: log.level"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			write(st.level, st.tunnels)
			reload <- struct{}{}
			enginetest.WaitFor(t, st.want, func() bool { return strings.Contains(errb.String(), st.want) })
		})
	}
	// The second tunnel went live in the first step; the failed reloads after
	// it kept it. Live, with no agent, it answers 503; unknown, something else.
	if got := status(second); got != http.StatusServiceUnavailable || unknown == got {
		t.Fatalf("second tunnel: %d before the reload, %d after\n%s", unknown, got, errb.String())
	}
}

// replaceFile writes a config file and renames it into place, as config
// managers do, so neither the watcher nor an explicit reload sees a
// half-written file.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func hostFixture(t testing.TB, name string) string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(self), "..", "..", "host", "testdata", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("host fixture %s (committed with the host package): %v", name, err)
	}
	return p
}

// TestPipelineReload swaps the agent's chain of a running `sluice dev`: a
// good module goes live, a broken one is refused and the running chain stays.
func TestPipelineReload(t *testing.T) {
	good, bad := hostFixture(t, "good.wasm"), hostFixture(t, "noabi.wasm")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "dev.yaml")
	write := func(pipeline string) {
		replaceFile(t, cfgPath, "pipeline:"+pipeline+"\n")
	}
	write(" []")
	info, errb, reload := startDevWithConfig(t, cfgPath)
	steps := []struct {
		name, pipeline, want string
	}{
		{name: "good module swapped in", pipeline: "\n  - plugin: " + good, want: "reloaded pipeline"},
		{name: "broken module refused", pipeline: "\n  - plugin: " + good + "\n  - plugin: " + bad + "\n    name: broken", want: "reload failed: kept the old pipeline"},
		{name: "sha256 mismatch refused", pipeline: "\n  - plugin: " + good + "\n    name: pinned\n    sha256: '" + strings.Repeat("0", 64) + "'", want: `\"pinned\"`},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			write(st.pipeline)
			reload <- struct{}{}
			enginetest.WaitFor(t, st.want, func() bool { return strings.Contains(errb.String(), st.want) })
		})
	}
	if !strings.Contains(errb.String(), `"msg":"reload finished","phase":"reload"`) || !strings.Contains(errb.String(), `"pipeline":"good","relay.pipeline":"none"`) {
		t.Errorf("the good chain was not swapped in:\n%s", errb.String())
	}
	// dev binds main to its demo server itself: a reload that leaves the
	// file's channels alone must not ask for a restart.
	enginetest.WaitFor(t, "every reload to end", func() bool {
		l := errb.String()
		return strings.Count(l, `"msg":"reload finished"`)+strings.Count(l, `"msg":"reload failed`) >= 3
	})
	if strings.Contains(errb.String(), "restart required") {
		t.Errorf("a pipeline reload asked for a restart:\n%s", errb.String())
	}
	if got := callEcho(t, mcpClient(t, info.MCPURL, info.Key), "after reloads"); got != "after reloads" {
		t.Fatalf("echo = %q", got)
	}
}

func TestPipelineLoadFailureIsConfigError(t *testing.T) {
	bad := hostFixture(t, "noabi.wasm")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(cfgPath, []byte("pipeline:\n  - plugin: "+bad+"\n    name: broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	c := &cli{stdout: &out, stderr: &errb, env: envOf(map[string]string{
		"CONTROL_PLANE_TUNNEL_ID": testTunnel, "CONTROL_PLANE_API_KEY": "sk-x", "HEALTH_LISTEN_ADDR": "127.0.0.1:0",
		"CONTROL_PLANE_BASE_URL": "http://127.0.0.1:9"})}
	code := c.main(t.Context(), []string{"run", "--config", cfgPath, "--embedded-mcp-stub"})
	if code != exitConfig {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitConfig, errb.String())
	}
	if !strings.Contains(errb.String(), `config: pipeline[0]: `) || !strings.Contains(errb.String(), `"broken"`) {
		t.Fatalf("stderr does not name the plugin:\n%s", errb.String())
	}
}

// startDevWithConfig runs `sluice dev --config cfgPath` in process on a free
// port until the test ends, waits until it is ready, and returns what it
// printed for clients, its log, and the channel that triggers a reload.
func startDevWithConfig(t *testing.T, cfgPath string) (devInfo, *enginetest.SyncBuffer, chan<- struct{}) {
	t.Helper()
	return startDev(t, cfgPath, nil, &enginetest.SyncBuffer{})
}

// startDevWithConfigOut is startDevWithConfig with dev's stdout (the banner)
// written to out, which must be safe for concurrent use.
func startDevWithConfigOut(t *testing.T, cfgPath string, out io.Writer) (devInfo, *enginetest.SyncBuffer, chan<- struct{}) {
	t.Helper()
	return startDev(t, cfgPath, nil, out)
}

// startDevEnv is startDevWithConfig with the environment env.
func startDevEnv(t *testing.T, cfgPath string, env map[string]string) (devInfo, *enginetest.SyncBuffer, chan<- struct{}) {
	t.Helper()
	return startDev(t, cfgPath, env, &enginetest.SyncBuffer{})
}

// startDev runs dev with the environment env and its stdout written to out.
func startDev(t *testing.T, cfgPath string, env map[string]string, out io.Writer) (devInfo, *enginetest.SyncBuffer, chan<- struct{}) {
	t.Helper()
	errb := &enginetest.SyncBuffer{}
	ready := make(chan devInfo, 1)
	reload := make(chan struct{})
	startCLI(t, &cli{stdout: out, stderr: errb, env: envOf(env), reload: reload, devReady: func(i devInfo) { ready <- i }},
		"dev", "--config", cfgPath, "--relay.listen-addr", "127.0.0.1:0", "--log.format", "json")
	select {
	case info := <-ready:
		return info, errb, reload
	case <-time.After(devStartTimeout):
		t.Fatalf("dev not ready; stderr:\n%s", errb.String())
	}
	return devInfo{}, nil, nil
}
