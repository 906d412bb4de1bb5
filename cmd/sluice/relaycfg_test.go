package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/relay"
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
		{name: "too small", file: "relay:\n  max-response-bytes: 100\n", error: "config: relay.max-response-bytes: 100 is out of range 1024..1073741824"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := loadRelayCase(t, tc.args, tc.env, tc.file, tc.error)
			if cfg == nil {
				return
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

// TestRelayLimitKeys: the limits for hostile clients are real keys, from
// file, environment and flag, validated, and mapped onto the relay's config
// (where 0 means the default and "no limit" is negative).
func TestRelayLimitKeys(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		file  string
		want  relay.Config
		error string
	}{
		{name: "default", want: relay.Config{BodyReadTimeout: 10 * time.Second, MaxConcurrentPerKey: 256, MaxConcurrentPerAddress: 1024}},
		{name: "file", file: "relay:\n  body-read-timeout: 3s\n  max-body-bytes-in-flight: 134217728\n  max-body-bytes-in-flight-per-key: 33554432\n  max-concurrent-per-key: 8\n  max-concurrent-per-address: 0\n",
			want: relay.Config{BodyReadTimeout: 3 * time.Second, MaxBodyBytesInFlight: 128 << 20, MaxBodyBytesInFlightPerKey: 32 << 20, MaxConcurrentPerKey: 8, MaxConcurrentPerAddress: -1}},
		{name: "environment", env: map[string]string{"RELAY_BODY_READ_TIMEOUT": "4s", "RELAY_MAX_CONCURRENT_PER_KEY": "0", "RELAY_MAX_CONCURRENT_PER_ADDRESS": "9",
			"RELAY_MAX_BODY_BYTES_IN_FLIGHT": "100000000", "RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_KEY": "20000000"},
			want: relay.Config{BodyReadTimeout: 4 * time.Second, MaxBodyBytesInFlight: 100000000, MaxBodyBytesInFlightPerKey: 20000000, MaxConcurrentPerKey: -1, MaxConcurrentPerAddress: 9}},
		{name: "flag", args: []string{"--relay.body-read-timeout", "5s", "--relay.max-concurrent-per-key", "7", "--relay.max-concurrent-per-address", "70",
			"--relay.max-body-bytes-in-flight-per-key", "16777216", "--relay.max-body-bytes-in-flight", "16777216"},
			want: relay.Config{BodyReadTimeout: 5 * time.Second, MaxBodyBytesInFlight: 16 << 20, MaxBodyBytesInFlightPerKey: 16 << 20, MaxConcurrentPerKey: 7, MaxConcurrentPerAddress: 70}},
		{name: "zero timeout", file: "relay:\n  body-read-timeout: 0s\n", error: "config: relay.body-read-timeout: 0s is out of range 1ms..1h"},
		{name: "per-key budget below a cap", file: "relay:\n  max-body-bytes-in-flight-per-key: 1048576\n",
			error: "config: relay.max-body-bytes-in-flight-per-key: want at least 16777216 (relay.max-body-bytes or relay.max-response-bytes, whichever is larger), or 0"},
		{name: "budget below per key", file: "relay:\n  max-response-bytes: 33554432\n  max-body-bytes-in-flight: 20000000\n",
			error: "config: relay.max-body-bytes-in-flight: want at least 33554432 (the per-key budget), or 0"},
		{name: "negative budget", args: []string{"--relay.max-body-bytes-in-flight", "-1"}, error: "config: relay.max-body-bytes-in-flight: -1 is out of range 1024..1099511627776"},
		{name: "negative concurrency", file: "relay:\n  max-concurrent-per-address: -5\n", error: "config: relay.max-concurrent-per-address: -5 is out of range 1..1000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := loadRelayCase(t, tc.args, tc.env, tc.file, tc.error)
			if cfg == nil {
				return
			}
			rc := relayConfig(cfg, "127.0.0.1:1", "http://127.0.0.1:1", nil)
			got := relay.Config{BodyReadTimeout: rc.BodyReadTimeout, MaxBodyBytesInFlight: rc.MaxBodyBytesInFlight,
				MaxBodyBytesInFlightPerKey: rc.MaxBodyBytesInFlightPerKey, MaxConcurrentPerKey: rc.MaxConcurrentPerKey, MaxConcurrentPerAddress: rc.MaxConcurrentPerAddress}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("relay config %+v, want %+v", got, tc.want)
			}
			if _, err := relay.New(rc, relay.Options{}); err != nil {
				t.Fatalf("the relay refuses what the config accepted: %v", err)
			}
		})
	}
}

// loadRelayCase loads a relay config from args, env and file and checks
// the error against wantErr ("": none). It returns nil when the expected
// error came.
func loadRelayCase(t *testing.T, args []string, env map[string]string, file, wantErr string) *Config {
	t.Helper()
	cfg, err := loadFor(t, ModeRelay, args, env, file)
	if wantErr != "" {
		if err == nil || err.Error() != wantErr {
			t.Fatalf("err = %v, want %q", err, wantErr)
		}
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
