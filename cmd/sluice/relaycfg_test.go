package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRelayMaxResponseBytes: relay.max-response-bytes is a real key, from
// file, environment and flag, validated, and it reaches the relay: a tool
// result over the cap does not get through, one under it does.
func TestRelayMaxResponseBytes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		file  string
		want  int64
		error string
	}{
		{name: "default", want: defaultMaxResponseBytes},
		{name: "file", file: "relay:\n  max-response-bytes: 65536\n", want: 65536},
		{name: "environment", env: map[string]string{"RELAY_MAX_RESPONSE_BYTES": "32768"}, want: 32768},
		{name: "flag", args: []string{"--relay.max-response-bytes", "8192"}, want: 8192},
		{name: "too small", file: "relay:\n  max-response-bytes: 100\n", error: "config: relay.max-response-bytes: want at least 1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadFor(t, ModeRelay, tc.args, tc.env, tc.file)
			if tc.error != "" {
				if err == nil || err.Error() != tc.error {
					t.Fatalf("err = %v, want %q", err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Relay.MaxResponseBytes != tc.want {
				t.Fatalf("max-response-bytes = %d, want %d", cfg.Relay.MaxResponseBytes, tc.want)
			}
		})
	}

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "dev.yaml")
	if err := os.WriteFile(cfgPath, []byte("relay:\n  max-response-bytes: 4096\n  response-timeout: 2s\npipeline: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	info, errb, _ := startDevWithConfig(t, cfgPath)
	s := &rawSession{t: t, url: info.MCPURL, key: info.Key}
	s.initialize()
	if st, m := s.post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"large","arguments":{"kib":2}}}`); st != 200 || m["result"] == nil {
		t.Fatalf("a 2 KiB result under a 4 KiB cap: HTTP %d %.200s", st, toJSON(m))
	}
	if st, m := s.post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"large","arguments":{"kib":8}}}`); st == 200 || m["result"] != nil {
		t.Fatalf("an 8 KiB result over a 4 KiB cap got through: HTTP %d", st)
	}
	if !strings.Contains(errb.String(), "relay answered 413") {
		t.Fatalf("the agent did not see the relay refuse the response:\n%s", errb.String())
	}
}

// TestRelayTunnelOAuth: a tunnel's oauth settings reach the relay with
// their secret references resolved, and a missing secret is an error that
// names the key, never a value.
func TestRelayTunnelOAuth(t *testing.T) {
	file := "relay:\n  tunnels:\n    - id: " + testTunnel + "\n      runtime-key: env:RK\n      auth-mode: oauth-gateway\n" +
		"      oauth:\n        issuer: https://login.example.com\n        introspection-url: https://login.example.com/introspect\n" +
		"        introspection-client-id: relay\n        introspection-client-secret: env:INTRO\n        scopes: [mcp:tools, files:read]\n" +
		"        upstream-header: X-Sluice-Gateway\n        upstream-secret: env:GW\n"
	cfg, err := loadFor(t, ModeRelay, nil, nil, file)
	if err != nil {
		t.Fatal(err)
	}
	s := &session{cli: &cli{env: envOf(map[string]string{"RK": "rk-1", "INTRO": "intro-s3cret", "GW": "gw-s3cret"})}, cfg: cfg, loader: &loader{}}
	ts, err := s.resolveTunnels(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o := ts[0].OAuth
	if ts[0].AuthMode != "oauth-gateway" || o.Issuer != "https://login.example.com" || o.IntrospectionURL != "https://login.example.com/introspect" ||
		o.IntrospectionClientID != "relay" || o.IntrospectionClientSecret != "intro-s3cret" || o.UpstreamHeader != "X-Sluice-Gateway" ||
		o.UpstreamSecret != "gw-s3cret" || strings.Join(o.Scopes, " ") != "mcp:tools files:read" {
		t.Fatalf("resolved oauth settings: %+v", o)
	}
	s.cli.env = envOf(map[string]string{"RK": "rk-1", "INTRO": "intro-s3cret"})
	if _, err := s.resolveTunnels(cfg); err == nil || !strings.Contains(err.Error(), "relay.tunnels[0].oauth.upstream-secret") {
		t.Fatalf("missing secret: %v", err)
	}
}
