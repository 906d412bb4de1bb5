package main

import (
	"strings"
	"testing"
)

// runEnvNoURL is runEnv without a main server URL (bindings provide it).
func runEnvNoURL() map[string]string {
	m := runEnv(nil)
	delete(m, "MCP_SERVER_URL")
	return m
}

func TestBindingsConfig(t *testing.T) {
	const good = `
mcp:
  bindings:
    - channel: main
      wasm:
        path: ./rest.wasm
        sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        config: {base: "http://api.internal:8080"}
        http:
          allowed-hosts: ["http://api.internal:8080"]
          timeout: 5s
          headers:
            - {origin: "http://api.internal:8080", name: Authorization, value: "env:API_TOKEN"}
        commands:
          - {name: calc, command: "bc -lq", mode: line, timeout: 2s, env: ["BC_LINE_LENGTH=0"], merge-stderr: true}
        limits: {call-timeout: 2s, pool-size: 8}
    - channel: old
      url: http://127.0.0.1:3001/sse
      transport: sse
    - channel: tools
      command: "my-server --stdio"
`
	cfg, err := loadFor(t, ModeRun, nil, runEnvNoURL(), good)
	if err != nil {
		t.Fatalf("good config: %v", err)
	}
	chans, err := cfg.channels()
	if err != nil {
		t.Fatal(err)
	}
	if w := chans["main"].Wasm; w == nil || w.pluginName() != "rest" || len(w.Commands) != 1 || w.Limits.PoolSize != 8 {
		t.Fatalf("main: %+v", chans["main"])
	}
	if old := chans["old"]; old.Transport != transportSSE || old.URL != "http://127.0.0.1:3001/sse" {
		t.Fatalf("old: %+v", old)
	}
	if tools := chans["tools"]; strings.Join(tools.Command, " ") != "my-server --stdio" {
		t.Fatalf("tools: %+v", tools)
	}

	for _, tc := range []struct{ name, file, want string }{
		{"nothing set", "mcp:\n  bindings:\n    - channel: main\n", "mcp.bindings[0]: want exactly one of url, command and wasm"},
		{"two set", "mcp:\n  bindings:\n    - {channel: main, url: 'http://a:1/mcp', command: x}\n", "mcp.bindings[0]: want exactly one of"},
		{"bad channel", "mcp:\n  bindings:\n    - {channel: Main, url: 'http://a:1/mcp'}\n", "mcp.bindings[0].channel: want [a-z0-9_-]{1,64}"},
		{"channel twice", "mcp:\n  server-url: ['http://a:1/mcp']\n  bindings:\n    - {channel: main, url: 'http://a:1/mcp'}\n", "mcp.bindings[0].channel: channel main configured twice"},
		{"bad transport", "mcp:\n  bindings:\n    - {channel: main, url: 'http://a:1/sse', transport: websocket}\n", "mcp.bindings[0].transport: want streamable-http or sse"},
		{"wasm without path", "mcp:\n  bindings:\n    - channel: main\n      wasm: {sha256: abc}\n", "mcp.bindings[0].wasm.path: required"},
		{"bad pin", "mcp:\n  bindings:\n    - channel: main\n      wasm: {path: a.wasm, sha256: abc}\n", "mcp.bindings[0].wasm.sha256: want 64 lowercase hex digits"},
		{"bad allowed host", "mcp:\n  bindings:\n    - channel: main\n      wasm: {path: a.wasm, http: {allowed-hosts: ['http://a:1/path']}}\n",
			"mcp.bindings[0].wasm.http.allowed-hosts[0]: \"http://a:1/path\": want an origin"},
		{"literal secret", "mcp:\n  bindings:\n    - channel: main\n      wasm: {path: a.wasm, http: {allowed-hosts: ['http://a:1'], headers: [{origin: 'http://a:1', name: X-Key, value: sk-literal}]}}\n",
			"mcp.bindings[0].wasm.http.headers[0].value: a secret must be a reference"},
		{"header for a host not allowed", "mcp:\n  bindings:\n    - channel: main\n      wasm: {path: a.wasm, http: {allowed-hosts: ['http://a:1'], headers: [{origin: 'http://b:1', name: X-Key, value: 'env:K'}]}}\n",
			"mcp.bindings[0].wasm.http.headers[0].origin: http://b:1 is not in http.allowed-hosts"},
		{"command without argv", "mcp:\n  bindings:\n    - channel: main\n      wasm: {path: a.wasm, commands: [{name: c}]}\n", "mcp.bindings[0].wasm.commands[0].command: required"},
		{"bad mode", "mcp:\n  bindings:\n    - channel: main\n      wasm: {path: a.wasm, commands: [{name: c, command: bc, mode: stream}]}\n", "mcp.bindings[0].wasm.commands[0].mode: want line or run"},
		{"same plugin name twice", "mcp:\n  bindings:\n    - {channel: main, wasm: {path: a/x.wasm}}\n    - {channel: two, wasm: {path: b/x.wasm}}\n", "mcp.bindings[1].wasm.name: plugin name \"x\" is also mcp.bindings[0]'s"},
		{"unknown key", "mcp:\n  bindings:\n    - channel: main\n      wasm: {path: a.wasm, allow-host: [x]}\n", "mcp.bindings[0].wasm.allow-host: unknown key"},
		{"negative max-memory", "mcp:\n  bindings:\n    - channel: main\n      wasm: {path: a.wasm, limits: {max-memory: -5}}\n", "mcp.bindings[0].wasm.limits.max-memory: -5 is out of range 65536..1099511627776"},
		{"bad breaker", "mcp:\n  bindings:\n    - channel: main\n      wasm: {path: a.wasm, breaker: {failures: -1}}\n", "mcp.bindings[0].wasm.breaker.failures: -1 is out of range 1..1000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadFor(t, ModeRun, nil, runEnvNoURL(), tc.file)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestBindingLimitsReachHost: a binding's max-memory and breaker reach the
// host's plugin config.
func TestBindingLimitsReachHost(t *testing.T) {
	const file = "mcp:\n  bindings:\n    - channel: main\n      wasm: {path: /x/a.wasm, limits: {max-memory: 67108864}, breaker: {failures: 9, disabled: true}}\n"
	cfg, err := loadFor(t, ModeRun, nil, runEnvNoURL(), file)
	if err != nil {
		t.Fatal(err)
	}
	chans, _ := cfg.channels()
	s := &session{cli: &cli{env: envOf(nil)}, cfg: cfg, loader: &loader{}}
	bc, err := s.bindingConfig(chans["main"], 10)
	if err != nil || bc.Plugin.MaxMemory != 64<<20 || bc.Plugin.Breaker.Failures != 9 || !bc.Plugin.Breaker.Disabled {
		t.Fatalf("%+v %v", bc.Plugin, err)
	}
}

// TestBindingHeaderSecretResolved: a header secret is resolved from its
// reference when the binding is built, and a missing variable names the key.
func TestBindingHeaderSecretResolved(t *testing.T) {
	const file = "mcp:\n  bindings:\n    - channel: main\n      wasm: {path: /x/a.wasm, http: {allowed-hosts: ['http://a:1'], headers: [{origin: 'http://a:1', name: X-Key, value: 'env:API_TOKEN'}]}}\n"
	cfg, err := loadFor(t, ModeRun, nil, runEnvNoURL(), file)
	if err != nil {
		t.Fatal(err)
	}
	chans, _ := cfg.channels()
	s := &session{cli: &cli{env: envOf(map[string]string{"API_TOKEN": "s3cret"})}, cfg: cfg, loader: &loader{}}
	bc, err := s.bindingConfig(chans["main"], 10)
	if err != nil || len(bc.HTTP.Headers) != 1 || bc.HTTP.Headers[0].Value != "s3cret" || bc.Plugin.PoolSize != 10 {
		t.Fatalf("%+v %v", bc, err)
	}
	s.cli.env = envOf(nil)
	if _, err := s.bindingConfig(chans["main"], 10); err == nil || !strings.Contains(err.Error(), "mcp.bindings[0].wasm.http.headers[0].value: environment variable API_TOKEN") {
		t.Fatalf("missing variable: %v", err)
	}
}
