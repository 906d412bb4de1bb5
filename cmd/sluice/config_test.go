package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

const testTunnel = "tunnel_0123456789abcdef0123456789abcdef"

// loadFor loads and validates a config as `sluice <mode> args…` would with
// the given environment and config file content ("" = no file).
func loadFor(t *testing.T, mode Mode, args []string, env map[string]string, file string) (*Config, error) {
	t.Helper()
	fs := newFlagSet(mode, &bytes.Buffer{})
	if file != "" {
		p := filepath.Join(t.TempDir(), "sluice.yaml")
		if err := os.WriteFile(p, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", p}, args...)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse flags: %v", err)
	}
	src := envOf(env)
	l := &loader{flags: fs, env: src, path: configPath(fs, src)}
	cfg, k, err := l.load()
	if err != nil {
		return nil, err
	}
	applyModeDefaults(cfg, mode, k)
	return cfg, cfg.validate(mode)
}

func envOf(m map[string]string) envSource {
	var kv []string
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	return func() []string { return kv }
}

// runEnv is the minimal environment `sluice run` needs.
func runEnv(extra map[string]string) map[string]string {
	m := map[string]string{
		"CONTROL_PLANE_TUNNEL_ID": testTunnel,
		"CONTROL_PLANE_API_KEY":   "sk-test-literal",
		"MCP_SERVER_URL":          "http://127.0.0.1:9/mcp",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func TestPrecedence(t *testing.T) {
	file := "control-plane:\n  max-inflight: 30\nlog:\n  level: warn\n"
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		file      string
		inflight  int
		level     string
		pollTimer time.Duration
	}{
		{name: "defaults", inflight: defaultMaxInflight, level: "info", pollTimer: defaultPollTimeout},
		{name: "file over defaults", file: file, inflight: 30, level: "warn", pollTimer: defaultPollTimeout},
		{name: "env over file", file: file, env: map[string]string{"CONTROL_PLANE_MAX_INFLIGHT_REQUESTS": "40", "CONTROL_PLANE_POLL_TIMEOUT": "7s"},
			inflight: 40, level: "warn", pollTimer: 7 * time.Second},
		{name: "flag over env over file", file: file, env: map[string]string{"CONTROL_PLANE_MAX_INFLIGHT_REQUESTS": "40", "LOG_LEVEL": "error"},
			args: []string{"--control-plane.max-inflight", "50"}, inflight: 50, level: "error", pollTimer: defaultPollTimeout},
		{name: "flag over file", file: file, args: []string{"--log.level=debug"}, inflight: 30, level: "debug", pollTimer: defaultPollTimeout},
		{name: "unset flag does not override", file: file, env: map[string]string{"CONTROL_PLANE_MAX_INFLIGHT_REQUESTS": "40"},
			args: []string{"--log.level=debug"}, inflight: 40, level: "debug", pollTimer: defaultPollTimeout},
		{name: "empty env is unset", file: file, env: map[string]string{"CONTROL_PLANE_MAX_INFLIGHT_REQUESTS": ""}, inflight: 30, level: "warn", pollTimer: defaultPollTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadFor(t, ModeRun, tc.args, runEnv(tc.env), tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ControlPlane.MaxInflight != tc.inflight {
				t.Errorf("max-inflight = %d, want %d", cfg.ControlPlane.MaxInflight, tc.inflight)
			}
			if cfg.Log.Level != tc.level {
				t.Errorf("log.level = %q, want %q", cfg.Log.Level, tc.level)
			}
			if cfg.ControlPlane.PollTimeout != tc.pollTimer {
				t.Errorf("poll-timeout = %s, want %s", cfg.ControlPlane.PollTimeout, tc.pollTimer)
			}
			if !cfg.ControlPlane.ResponseBatch {
				t.Error("response-batch is off by default")
			}
			if !cfg.ControlPlane.GetStream || cfg.MCP.MaxStreams != defaultMaxStreams {
				t.Errorf("get-stream %v, max-streams %d by default", cfg.ControlPlane.GetStream, cfg.MCP.MaxStreams)
			}
		})
	}
}

func TestEnvTable(t *testing.T) {
	env := map[string]string{
		"CONTROL_PLANE_TUNNEL_ID":       testTunnel,
		"CONTROL_PLANE_BASE_URL":        "http://127.0.0.1:8787",
		"CONTROL_PLANE_URL_PATH":        "/prefix",
		"CONTROL_PLANE_ORGANIZATION_ID": "org-1",
		"CONTROL_PLANE_EXTRA_HEADERS":   "X-A: 1\nX-B: 2",
		"OPENAI_API_KEY":                "sk-fallback",
		"MCP_SERVER_URL":                "channel=main,url=http://127.0.0.1:9/mcp?a=1,b=2",
		"MCP_MAX_CONCURRENT_REQUESTS":   "12",
		"MCP_STARTUP_WAIT_TIMEOUT":      "3s",
		"HEALTH_LISTEN_ADDR":            "127.0.0.1:0",
		"HEALTH_URL_FILE":               "/tmp/x",
		"LOG_FORMAT":                    "json",
		"LOG_HTTP_RAW_UNSAFE":           "true",
		"PID_FILE":                      "/tmp/p",
		"CONTROL_PLANE_RESPONSE_BATCH":  "false",
		"CONTROL_PLANE_GET_STREAM":      "false",
		"MCP_MAX_STREAMS":               "7",
		"LOG_REPEAT_WINDOW":             "0s",
		"LOG_AUDIT":                     "/var/log/sluice/audit.jsonl",
	}
	cfg, err := loadFor(t, ModeRun, nil, env, "")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"base-url", cfg.ControlPlane.BaseURL, "http://127.0.0.1:8787"},
		{"url-path", cfg.ControlPlane.URLPath, "/prefix"},
		{"organization-id", cfg.ControlPlane.OrganizationID, "org-1"},
		{"extra-headers", strings.Join(cfg.ControlPlane.ExtraHeaders, "|"), "X-A: 1|X-B: 2"},
		{"api-key fallback", cfg.ControlPlane.APIKey, Secret("env:OPENAI_API_KEY")},
		{"server-url keeps commas", strings.Join(cfg.MCP.ServerURL, "|"), "channel=main,url=http://127.0.0.1:9/mcp?a=1,b=2"},
		{"max-concurrent", cfg.MCP.MaxConcurrentRequests, 12},
		{"startup-wait", cfg.MCP.StartupWaitTimeout, 3 * time.Second},
		{"health addr", cfg.Health.ListenAddr, "127.0.0.1:0"},
		{"url file", cfg.Health.URLFile, "/tmp/x"},
		{"log format", cfg.Log.Format, "json"},
		{"raw unsafe", cfg.Log.HTTPRawUnsafe, true},
		{"pid", cfg.PID.File, "/tmp/p"},
		{"response-batch", cfg.ControlPlane.ResponseBatch, false},
		{"get-stream", cfg.ControlPlane.GetStream, false},
		{"max-streams", cfg.MCP.MaxStreams, 7},
		{"repeat-window off", cfg.Log.RepeatWindow, time.Duration(0)},
		{"audit file", cfg.Log.Audit, "/var/log/sluice/audit.jsonl"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}
	t.Run("primary key wins over fallback", func(t *testing.T) {
		cfg, err := loadFor(t, ModeRun, nil, runEnv(map[string]string{"OPENAI_API_KEY": "sk-other"}), "")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ControlPlane.APIKey != "env:CONTROL_PLANE_API_KEY" {
			t.Errorf("api-key = %q", cfg.ControlPlane.APIKey)
		}
	})
}

func TestSecrets(t *testing.T) {
	const secret = "sk-very-secret-value-123"
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{"CONTROL_PLANE_TUNNEL_ID": testTunnel, "MCP_SERVER_URL": "http://127.0.0.1:9/"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		file    string
		want    string // resolved value; "" = expect an error
		errLike string
	}{
		{name: "env literal accepted", env: with("CONTROL_PLANE_API_KEY", secret), want: secret},
		{name: "env literal that looks like a reference stays literal", env: with("CONTROL_PLANE_API_KEY", "env:NOPE"), want: "env:NOPE"},
		{name: "env: reference in file", env: with("MY_KEY", secret), file: "control-plane:\n  api-key: env:MY_KEY\n", want: secret},
		{name: "file: reference in flag", env: base, args: []string{"--control-plane.api-key", "file:" + keyFile}, want: secret},
		{name: "literal in file rejected", env: base, file: "control-plane:\n  api-key: " + secret + "\n", errLike: "control-plane.api-key: a secret must be a reference"},
		{name: "literal in flag rejected", env: base, args: []string{"--control-plane.api-key=" + secret}, errLike: "control-plane.api-key: a secret must be a reference"},
		{name: "flag literal beats env but is rejected", env: with("CONTROL_PLANE_API_KEY", "sk-ok"), args: []string{"--control-plane.api-key=" + secret}, errLike: "use"},
		{name: "missing env reference", env: base, file: "control-plane:\n  api-key: env:SLUICE_TEST_UNSET\n", errLike: "SLUICE_TEST_UNSET"},
		{name: "missing file reference", env: base, args: []string{"--control-plane.api-key=file:" + filepath.Join(dir, "nope")}, errLike: "control-plane.api-key: read secret file"},
		{name: "relay tunnel literal rejected", env: base, file: "relay:\n  tunnels:\n    - id: " + testTunnel + "\n      runtime-key: " + secret + "\n      auth-mode: public\n",
			errLike: "relay.tunnels[0].runtime-key: a secret must be a reference"},
		{name: "client key literal rejected", env: base, file: "relay:\n  tunnels:\n    - id: " + testTunnel + "\n      runtime-key: env:X\n      client-keys:\n        - name: a\n          key: " + secret + "\n",
			errLike: "relay.tunnels[0].client-keys[0].key: a secret must be a reference"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mode := ModeRun
			if strings.Contains(tc.file, "relay:") {
				mode = ModeRelay
			}
			cfg, err := loadFor(t, mode, tc.args, tc.env, tc.file)
			var got string
			if err == nil && mode == ModeRun {
				got, err = cfg.ControlPlane.APIKey.resolve("control-plane.api-key", envOf(tc.env))
			}
			if tc.want != "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if got != tc.want {
					t.Fatalf("resolved secret mismatch")
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error leaks the secret: %v", err)
			}
			if !strings.Contains(err.Error(), tc.errLike) && !strings.Contains(err.Error(), "env:NAME or file:/path") {
				t.Fatalf("error %q does not mention %q", err, tc.errLike)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *ConfigError", err)
			}
		})
	}
}

func TestInvalidValues(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		file    string
		wantKey string
	}{
		{name: "unknown top-level key", file: "contol-plane:\n  tunnel-id: x\n", wantKey: "contol-plane: unknown key"},
		{name: "unknown nested key", file: "control-plane:\n  tunel-id: x\n", wantKey: "control-plane.tunel-id: unknown key"},
		{name: "unknown key in pipeline entry", file: "pipeline:\n  - plugin: redact\n    on_error: fail_open\n", wantKey: "pipeline[0].on_error: unknown key"},
		{name: "unknown key in limits", file: "pipeline:\n  - plugin: redact\n    limits: {memory: 1}\n", wantKey: "pipeline[0].limits.memory: unknown key"},
		{name: "bad integer in file", file: "control-plane:\n  max-inflight: lots\n", wantKey: "control-plane.max-inflight: want an integer"},
		{name: "bad duration in env", env: map[string]string{"CONTROL_PLANE_POLL_TIMEOUT": "soon"}, wantKey: "control-plane.poll-timeout"},
		{name: "inflight too large", env: map[string]string{"CONTROL_PLANE_MAX_INFLIGHT_REQUESTS": "10001"}, wantKey: "control-plane.max-inflight: 10001 is out of range 1..10000"},
		{name: "bad tunnel id", env: map[string]string{"CONTROL_PLANE_TUNNEL_ID": "tunnel_X"}, wantKey: "control-plane.tunnel-id"},
		{name: "bad log level", args: []string{"--log.level=loud"}, wantKey: "log.level"},
		{name: "bad log format", env: map[string]string{"LOG_FORMAT": "xml"}, wantKey: "log.format"},
		{name: "bad server url", args: []string{"--mcp.server-url=ftp://x"}, wantKey: "mcp.server-url"},
		{name: "bad channel", args: []string{"--mcp.server-url=channel=Main,url=http://x/"}, wantKey: "mcp.server-url"},
		{name: "duplicate channel", args: []string{"--mcp.server-url=http://a/", "--mcp.server-url=channel=main,url=http://b/"}, wantKey: "mcp.server-url: channel main configured twice"},
		{name: "bad on-error", file: "pipeline:\n  - plugin: x.wasm\n    on-error: maybe\n", wantKey: "pipeline[0].on-error"},
		{name: "redact fail_open", file: "pipeline:\n  - plugin: redact\n    on-error: fail_open\n", wantKey: "pipeline[0].on-error: redact is always fail_closed"},
		{name: "bad hook", file: "pipeline:\n  - plugin: x.wasm\n    hooks: [request, later]\n", wantKey: "pipeline[0].hooks"},
		{name: "bad sha", file: "pipeline:\n  - plugin: x.wasm\n    sha256: abc\n", wantKey: "pipeline[0].sha256"},
		{name: "missing plugin", file: "pipeline:\n  - name: x\n", wantKey: "pipeline[0].plugin"},
		{name: "protected extra header", args: []string{"--control-plane.extra-headers=Authorization: Bearer x"}, wantKey: "control-plane.extra-headers"},
		{name: "extension offer as extra header", args: []string{"--control-plane.extra-headers=X-Sluice-Extensions: get-stream"}, wantKey: "control-plane.extra-headers"},
		{name: "max-streams zero", args: []string{"--mcp.max-streams=0"}, wantKey: "mcp.max-streams: 0 is out of range 1..10000"},
		{name: "max-streams too large", env: map[string]string{"MCP_MAX_STREAMS": "10001"}, wantKey: "mcp.max-streams: 10001 is out of range 1..10000"},
		{name: "negative repeat window", args: []string{"--log.repeat-window=-1s"}, wantKey: "log.repeat-window: -1s is out of range 1s..1h"},
		{name: "repeat window too short", env: map[string]string{"LOG_REPEAT_WINDOW": "10ms"}, wantKey: "log.repeat-window: 10ms is out of range 1s..1h"},
		{name: "repeat window too long", file: "log:\n  repeat-window: 2h\n", wantKey: "log.repeat-window: 2h is out of range 1s..1h"},
		{name: "repeat window not a duration", file: "log:\n  repeat-window: often\n", wantKey: "log.repeat-window"},
		{name: "empty audit", file: "log:\n  audit: ''\n", wantKey: `log.audit: want "log", "off" or a file path`},
		{name: "bad yaml", file: "control-plane: [\n", wantKey: "config: read"},
		{name: "negative max-memory", file: "pipeline:\n  - plugin: x.wasm\n    limits: {max-memory: -1}\n", wantKey: "pipeline[0].limits.max-memory: -1 is out of range 65536..1099511627776"},
		{name: "negative pool-size", file: "pipeline:\n  - plugin: x.wasm\n    limits: {pool-size: -2}\n", wantKey: "pipeline[0].limits.pool-size: -2 is out of range 1..1024"},
		{name: "negative breaker failures", file: "pipeline:\n  - plugin: x.wasm\n    breaker: {failures: -1}\n", wantKey: "pipeline[0].breaker.failures: -1 is out of range 1..1000000"},
		{name: "negative breaker backoff", file: "pipeline:\n  - plugin: x.wasm\n    breaker: {backoff: -1s}\n", wantKey: "pipeline[0].breaker.backoff: -1s is out of range 1ms..1h"},
		{name: "max-backoff below backoff", file: "pipeline:\n  - plugin: x.wasm\n    breaker: {backoff: 10s, max-backoff: 5s}\n", wantKey: "pipeline[0].breaker.max-backoff: 5s is less than backoff 10s"},
		{name: "unknown breaker key", file: "pipeline:\n  - plugin: x.wasm\n    breaker: {threshold: 3}\n", wantKey: "pipeline[0].breaker.threshold: unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadFor(t, ModeRun, tc.args, runEnv(tc.env), tc.file)
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tc.wantKey) {
				t.Fatalf("error %q does not contain %q", err, tc.wantKey)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestRelayValidation(t *testing.T) {
	tunnel := "relay:\n  tunnels:\n    - id: " + testTunnel + "\n      runtime-key: env:RK\n"
	tests := []struct {
		name    string
		file    string
		wantErr string
	}{
		{name: "client-key mode needs keys", file: tunnel, wantErr: "relay.tunnels[0].client-keys"},
		{name: "public ok", file: tunnel + "      auth-mode: public\n"},
		{name: "bad auth mode", file: tunnel + "      auth-mode: open\n", wantErr: "relay.tunnels[0].auth-mode"},
		{name: "gateway needs an issuer", file: tunnel + "      auth-mode: oauth-gateway\n", wantErr: "relay.tunnels[0].oauth.issuer"},
		{name: "gateway ok", file: tunnel + "      auth-mode: oauth-gateway\n      oauth:\n        issuer: https://as.example\n        upstream-header: X-Gw\n        upstream-secret: env:GW\n"},
		{name: "gateway secret literal rejected", file: tunnel + "      auth-mode: oauth-gateway\n      oauth:\n        issuer: https://as.example\n        upstream-header: X-Gw\n        upstream-secret: hunter2\n",
			wantErr: "relay.tunnels[0].oauth.upstream-secret: a secret must be a reference"},
		{name: "introspection secret literal rejected", file: tunnel + "      auth-mode: oauth-gateway\n      oauth:\n        issuer: https://as.example\n        introspection-client-secret: hunter2\n",
			wantErr: "relay.tunnels[0].oauth.introspection-client-secret"},
		{name: "public url with path", file: "relay:\n  public-url: https://x.example/mcp\n", wantErr: "relay.public-url"},
		{name: "tls half", file: "relay:\n  tls-cert: /c.pem\n", wantErr: "relay.tls-key"},
		{name: "relay pipeline checked", file: "relay:\n  pipeline:\n    - plugin: ''\n", wantErr: "relay.pipeline[0].plugin"},
		{name: "relay breaker checked", file: "relay:\n  pipeline:\n    - plugin: x.wasm\n      breaker: {max-backoff: -1s}\n", wantErr: "relay.pipeline[0].breaker.max-backoff: -1s is out of range 1ms..1h"},
		{name: "nats ok", file: "relay:\n  nats:\n    url: nats://127.0.0.1:4222,tls://n2:4222\n    token: env:NATS_TOKEN\n    replicas: 3\n"},
		{name: "nats token literal", file: "relay:\n  nats:\n    url: nats://127.0.0.1:4222\n    token: hunter2\n", wantErr: "relay.nats.token: a secret must be a reference"},
		{name: "nats credentials literal", file: "relay:\n  nats:\n    url: nats://127.0.0.1:4222\n    credentials: abc\n", wantErr: "relay.nats.credentials: a secret must be a reference"},
		{name: "nats both", file: "relay:\n  nats:\n    url: nats://a:4222\n    token: env:T\n    credentials: file:/c\n", wantErr: "not both"},
		{name: "nats bad scheme", file: "relay:\n  nats:\n    url: http://a:4222\n", wantErr: "relay.nats.url"},
		{name: "nats token without url", file: "relay:\n  nats:\n    token: env:T\n", wantErr: "relay.nats.token: needs relay.nats.url"},
		{name: "nats replicas", file: "relay:\n  nats:\n    url: nats://a:4222\n    replicas: 7\n", wantErr: "relay.nats.replicas"},
		{name: "nats tls half", file: "relay:\n  nats:\n    url: nats://a:4222\n    tls:\n      cert-file: /c.pem\n", wantErr: "relay.nats.tls.key-file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadFor(t, ModeRelay, nil, nil, tc.file)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseChannelEntry(t *testing.T) {
	tests := []struct {
		in, name, url string
		bad           bool
	}{
		{in: "http://127.0.0.1:3000/mcp", name: "main", url: "http://127.0.0.1:3000/mcp"},
		{in: "channel=docs,url=https://docs.internal/mcp", name: "docs", url: "https://docs.internal/mcp"},
		{in: "url=https://x/mcp?a=1,b=2,channel=y", name: "main", url: "https://x/mcp?a=1,b=2,channel=y"},
		{in: "channel=docs", bad: true},
		{in: "channel=a,color=red,url=http://x/", bad: true},
		{in: "not a url", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			c, err := parseChannelEntry("mcp.server-url", "url", tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("want an error, got %+v", c)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Name != tc.name || c.URL != tc.url {
				t.Fatalf("got %+v", c)
			}
		})
	}
}

func TestKoanfYAMLLoads(t *testing.T) {
	_, self, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(self), "..", "..", "koanf.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("koanf.yaml: %v", err)
	}
	for _, mode := range []Mode{ModeRun, ModeRelay, ModeDev} {
		t.Run(string(mode), func(t *testing.T) {
			cfg, err := loadFor(t, mode, nil, runEnv(nil), string(b))
			if err != nil {
				t.Fatal(err)
			}
			want := defaults()
			if cfg.ControlPlane.BaseURL != want.ControlPlane.BaseURL || cfg.Relay.ListenAddr != want.Relay.ListenAddr {
				t.Errorf("koanf.yaml does not hold the documented defaults")
			}
			if mode != ModeRelay && !reflect.DeepEqual(cfg.Pipeline, defaultPipeline()) {
				t.Errorf("pipeline = %+v, want the default chain %+v", cfg.Pipeline, defaultPipeline())
			}
			if cfg.MCP.MaxStreams != want.MCP.MaxStreams || cfg.ControlPlane.GetStream != want.ControlPlane.GetStream {
				t.Errorf("koanf.yaml: mcp.max-streams %d, control-plane.get-stream %v", cfg.MCP.MaxStreams, cfg.ControlPlane.GetStream)
			}
			if cfg.Log.RepeatWindow != want.Log.RepeatWindow || cfg.Log.Audit != want.Log.Audit {
				t.Errorf("koanf.yaml: log.repeat-window %s, log.audit %q", cfg.Log.RepeatWindow, cfg.Log.Audit)
			}
			if mode != ModeDev && cfg.MCP.MaxConcurrentRequests != want.MCP.MaxConcurrentRequests {
				t.Errorf("mcp.max-concurrent-requests = %d", cfg.MCP.MaxConcurrentRequests)
			}
		})
	}
}

// TestRelayAdminListenerLoopbackByDefault: the admin API (and health and
// metrics) listen on loopback unless an operator says otherwise, in the
// built-in defaults and in the documented koanf.yaml.
func TestRelayAdminListenerLoopbackByDefault(t *testing.T) {
	_, self, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "..", "koanf.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, file := range map[string]string{"no config": "", "koanf.yaml": string(b)} {
		cfg, err := loadFor(t, ModeRelay, nil, runEnv(nil), file)
		if err != nil {
			t.Fatal(err)
		}
		h, _, err := net.SplitHostPort(cfg.Relay.AdminListenAddr)
		if err != nil || !isLoopbackHost(h) {
			t.Errorf("%s: relay.admin-listen-addr = %q, want a loopback address", name, cfg.Relay.AdminListenAddr)
		}
	}
}

func TestDevDefaults(t *testing.T) {
	cfg, err := loadFor(t, ModeDev, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ControlPlane.MaxInflight < devMinConcurrency || cfg.MCP.MaxConcurrentRequests < devMinConcurrency {
		t.Errorf("dev concurrency too low: %d/%d", cfg.ControlPlane.MaxInflight, cfg.MCP.MaxConcurrentRequests)
	}
	if cfg.Health.ListenAddr != "127.0.0.1:0" {
		t.Errorf("dev health addr = %q", cfg.Health.ListenAddr)
	}
	if cfg.Relay.ListenAddr != defaultRelayAddr {
		t.Errorf("dev relay addr = %q", cfg.Relay.ListenAddr)
	}
}

func TestCLI(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		code     int
		stdout   []string
		stderr   []string
		noStderr string
	}{
		{name: "version", args: []string{"version"}, code: exitOK, stdout: []string{"sluice ", "commit ", runtime.Version()}},
		{name: "help", args: []string{"help"}, code: exitOK, stdout: []string{"sluice run", "sluice relay", "sluice dev"}},
		{name: "help run lists flags", args: []string{"help", "run"}, code: exitOK, stdout: []string{"--control-plane.tunnel-id", "--mcp.server-url", "--embedded-mcp-stub"}},
		{name: "no args", code: exitConfig, stderr: []string{"Usage:"}},
		{name: "unknown command", args: []string{"fly"}, code: exitConfig, stderr: []string{`unknown command "fly"`}},
		{name: "unknown flag", args: []string{"run", "--nope"}, code: exitConfig, stderr: []string{"nope"}},
		{name: "config error exit 2", args: []string{"run"}, code: exitConfig, stderr: []string{"config: control-plane.tunnel-id: required"}},
		{name: "literal secret flag", args: []string{"run", "--control-plane.api-key", "sk-hidden-1"},
			env: map[string]string{"CONTROL_PLANE_TUNNEL_ID": testTunnel}, code: exitConfig,
			stderr: []string{"control-plane.api-key", "env:NAME or file:/path"}, noStderr: "sk-hidden-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			c := &cli{stdout: &out, stderr: &errb, env: envOf(tc.env)}
			code := c.main(t.Context(), tc.args)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, errb.String())
			}
			for _, s := range tc.stdout {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errb.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errb.String())
				}
			}
			if tc.noStderr != "" && strings.Contains(errb.String(), tc.noStderr) {
				t.Errorf("stderr leaks %q", tc.noStderr)
			}
		})
	}
}

func TestParseCommandEntry(t *testing.T) {
	c, err := parseChannelEntry("mcp.command", "command", `channel=fs,command=npx -y "@modelcontextprotocol/server-filesystem" '/srv/my docs'`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv/my docs"}
	if c.Name != "fs" || strings.Join(c.Command, "|") != strings.Join(want, "|") {
		t.Fatalf("got %+v", c)
	}
	if _, err := parseChannelEntry("mcp.command", "command", `command=node "unterminated`); err == nil {
		t.Fatal("an unterminated quote was accepted")
	}
}

func FuzzParseChannelEntry(f *testing.F) {
	for _, s := range []string{"http://a/", "channel=x,url=http://a/b?c,d", "url=", "channel=,url=x", "=,="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseChannelEntry("mcp.server-url", "url", s)
		if err == nil && (!validChannel(c.Name) || c.URL == "") {
			t.Fatalf("accepted %q as %+v", s, c)
		}
	})
}
