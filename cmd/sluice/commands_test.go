package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runCLI runs `sluice args…` to completion and returns its exit code,
// stdout and stderr.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdout: &out, stderr: &errb, env: envOf(env)}
	code := c.main(t.Context(), args)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRemovedKeys: allow-remote-ui is gone; a config that still sets it, in
// a file, a flag or the environment, fails with a hint instead of being
// accepted and ignored. (relay.admin-key came back with the admin API.)
func TestRemovedKeys(t *testing.T) {
	uiHint := "(removed: Sluice serves no admin pages, and health.listen-addr and relay.admin-listen-addr decide who reaches /metrics and /readyz; delete it)"
	runFile := writeFile(t, "run.yaml", "allow-remote-ui: true\n")
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"allow-remote-ui in a file", runEnv(nil), []string{"run", "--config", runFile},
			"sluice: config: allow-remote-ui: unknown key in " + runFile + " " + uiHint},
		{"allow-remote-ui flag", runEnv(nil), []string{"run", "--allow-remote-ui"},
			"sluice run: unknown flag: --allow-remote-ui " + uiHint},
		{"allow-remote-ui environment", runEnv(map[string]string{"ALLOW_REMOTE_UI": "true"}), []string{"run"},
			"sluice: config: allow-remote-ui: set by ALLOW_REMOTE_UI in the environment: " + strings.Trim(uiHint, "()")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.env, tc.args...)
			if code != exitConfig || strings.TrimSpace(stderr) != tc.want {
				t.Fatalf("exit %d, stderr:\n%s\nwant:\n%s", code, stderr, tc.want)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"run", "run", 0},
		{"", "dev", 3},
		{"rnu", "run", 1}, // a swap of neighbours is one edit
		{"kitten", "sitting", 3},
		{"relay.pulic-url", "relay.public-url", 1},
		{"ca", "abc", 3},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := editDistance(tc.b, tc.a); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.b, tc.a, got, tc.want)
		}
	}
	if s, ok := nearest("rnu", commands); !ok || s != "run" {
		t.Errorf("nearest(rnu) = %q, %v", s, ok)
	}
	if s, ok := nearest("fly", commands); ok {
		t.Errorf("nearest(fly) = %q: too far to suggest", s)
	}
}

// TestSuggestions: unknown commands, config keys (file and flags) and help
// topics suggest the nearest valid one.
func TestSuggestions(t *testing.T) {
	typo := writeFile(t, "typo.yaml", "relay:\n  pulic-url: https://relay.example.com\n")
	misplaced := writeFile(t, "misplaced.yaml", "public-url: https://relay.example.com\n")
	entry := writeFile(t, "entry.yaml", "pipeline:\n  - plugin: redact\n    limits:\n      memory-page: 3\n")
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"command", nil, []string{"rnu"}, `sluice: unknown command "rnu" (did you mean run?)`},
		{"command too far", nil, []string{"fly"}, `sluice: unknown command "fly"` + "\n"},
		{"file key", nil, []string{"relay", "--config", typo},
			"sluice: config: relay.pulic-url: unknown key in " + typo + " (did you mean relay.public-url?)"},
		{"file key at the wrong level", nil, []string{"relay", "--config", misplaced},
			"sluice: config: public-url: unknown key in " + misplaced + " (did you mean relay.public-url?)"},
		{"file key in a list entry", runEnv(nil), []string{"run", "--config", entry},
			"sluice: config: pipeline[0].limits.memory-page: unknown key in " + entry + " (did you mean pipeline[0].limits.memory-pages?)"},
		{"flag", runEnv(nil), []string{"run", "--control-plane.tunel-id", "x"},
			"sluice run: unknown flag: --control-plane.tunel-id (did you mean --control-plane.tunnel-id?)"},
		{"flag of another command", runEnv(nil), []string{"run", "--relay.public-url", "x"},
			"sluice run: unknown flag: --relay.public-url (a flag of sluice relay and sluice dev)"},
		{"misspelt flag of another command", runEnv(nil), []string{"run", "--relay.pulic-url", "x"},
			"sluice run: unknown flag: --relay.pulic-url (did you mean --relay.public-url? It is a flag of sluice relay and sluice dev.)"},
		{"config key without a flag", nil, []string{"relay", "--pipeline", "x"},
			"sluice relay: unknown flag: --pipeline (pipeline has no flag for sluice relay: set it in the config file)"},
		{"help topic", nil, []string{"help", "quikstart"}, `sluice help: no command or topic "quikstart" (did you mean quickstart?)`},
		{"config subcommand", nil, []string{"config", "chek"}, `sluice config: unknown subcommand "chek" (did you mean check?)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.env, tc.args...)
			if code != exitConfig || !strings.HasPrefix(stderr, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant it to start with:\n%s", code, stderr, tc.want)
			}
		})
	}
}

// TestHelpTopics: each topic prints real text, and every doc it points at
// exists.
func TestHelpTopics(t *testing.T) {
	want := map[string][]string{
		"quickstart":      {"sluice dev", "inspector-cli@1.0.3", "--mcp.server-url", "sluice run", "sluice config check"},
		"plugins":         {"default chain", "pipeline: []", "env:", "file:", "sha256", "shadow", "relay.pipeline"},
		"openai":          {"CONTROL_PLANE_TUNNEL_ID", "CONTROL_PLANE_API_KEY", "https://api.openai.com", "readyz"},
		"troubleshooting": {"Exit codes", "relay unreachable", "runtime key rejected", "tunnel_client_not_connected", "relay.public-url", "sluice config check"},
	}
	if len(want) != len(helpTopics) {
		t.Errorf("topics %v, want %d", helpTopicNames(), len(want))
	}
	docRef := regexp.MustCompile(`docs/[a-z-]+\.md`)
	for topic, phrases := range want {
		t.Run(topic, func(t *testing.T) {
			code, out, _ := runCLI(t, nil, "help", topic)
			if code != exitOK {
				t.Fatalf("exit %d", code)
			}
			for _, p := range phrases {
				if !strings.Contains(out, p) {
					t.Errorf("sluice help %s lacks %q", topic, p)
				}
			}
			refs := docRef.FindAllString(out, -1)
			if len(refs) == 0 {
				t.Errorf("sluice help %s points at no doc", topic)
			}
			for _, ref := range refs {
				if _, err := os.Stat(filepath.Join(repoRoot(t), ref)); err != nil {
					t.Errorf("sluice help %s points at %s: %v", topic, ref, err)
				}
			}
		})
	}
	for _, args := range [][]string{{"help"}, {"help", "config"}, {"config", "--help"}} {
		if code, out, _ := runCLI(t, nil, args...); code != exitOK || !strings.Contains(out, "sluice config check") {
			t.Errorf("sluice %v: exit %d\n%s", args, code, out)
		}
	}
}

// TestConfigCheck: `sluice config check` validates a config and its plugins
// for a mode without starting anything, and fails with the very line a start
// would print.
func TestConfigCheck(t *testing.T) {
	const secret = "sk-upstream-check-0a1b2c3d"
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "upstream.key")
	if err := os.WriteFile(keyFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	headers := "pipeline:\n  - plugin: headers\n    config:\n      rules:\n        - {hook: request, op: set, name: X-Key, value: 'file:" + keyFile + "'}\n"
	// A port that is taken: a start of the relay could not bind it, a check
	// does not try.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	relayYAML := "relay:\n  listen-addr: " + busy.Addr().String() + "\n  tunnels:\n    - {id: " + testTunnel + ", runtime-key: 'env:RK', auth-mode: public}\n"
	good := map[string]string{
		"run":   writeFile(t, "run.yaml", headers),
		"relay": writeFile(t, "relay.yaml", relayYAML),
	}
	t.Run("valid", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			env  map[string]string
			want string
		}{
			{[]string{"--config", good["run"]}, runEnv(nil), "config ok for sluice run: pipeline headers\n"},
			{nil, runEnv(nil), "config ok for sluice run: pipeline redact\n"},
			{[]string{"--config", good["relay"]}, map[string]string{"RK": "sk-rk", "RELAY_DATA_DIR": dir}, "config ok for sluice relay: 1 tunnel(s); store in " + dir + "; relay.pipeline none\n"},
			{[]string{"--mode", "dev", "--config", good["run"]}, nil, "config ok for sluice dev: pipeline headers; relay.pipeline none\n"},
			{[]string{"--mode=relay"}, map[string]string{"HOME": "/home/op"}, "config ok for sluice relay: 0 tunnel(s); store in /home/op/.local/state/sluice/relay; relay.pipeline none\n"},
			{[]string{"--mode=relay"}, map[string]string{"HOME": "/home/op", "XDG_STATE_HOME": "/var/state"}, "config ok for sluice relay: 0 tunnel(s); store in /var/state/sluice/relay; relay.pipeline none\n"},
		} {
			code, out, stderr := runCLI(t, tc.env, append([]string{"config", "check"}, tc.args...)...)
			if code != exitOK || out != tc.want {
				t.Errorf("config check %v: exit %d, stdout %q, want %q; stderr:\n%s", tc.args, code, out, tc.want, stderr)
			}
			if strings.Contains(out+stderr, secret) {
				t.Errorf("config check %v printed the secret", tc.args)
			}
		}
	})

	bad := []struct {
		name, mode, yaml string
		env              map[string]string
	}{
		{"sha256 mismatch", "run", "pipeline:\n  - plugin: redact\n    sha256: '" + strings.Repeat("0", 64) + "'\n", runEnv(nil)},
		{"missing plugin secret", "run", strings.Replace(headers, keyFile, keyFile+".gone", 1), runEnv(nil)},
		{"unset api key", "run", "control-plane:\n  api-key: env:NOPE\n",
			map[string]string{"CONTROL_PLANE_TUNNEL_ID": testTunnel, "MCP_SERVER_URL": "http://127.0.0.1:9/mcp"}},
		{"invalid value", "run", "control-plane:\n  max-inflight: 0\n", runEnv(nil)},
		{"missing runtime key", "relay", relayYAML, nil},
		{"same key twice", "relay", relayYAML + "    - {id: tunnel_" + strings.Repeat("b", 32) + ", runtime-key: 'env:RK', auth-mode: public}\n",
			map[string]string{"RK": "sk-rk"}},
		{"unreadable CA bundle", "run", "ca-bundle: " + filepath.Join(dir, "nope.pem") + "\n", runEnv(nil)},
		{"no public URL for an open listener", "relay", "relay:\n  listen-addr: ':0'\n", nil},
		{"no data-dir", "relay", "relay:\n  listen-addr: 127.0.0.1:0\n", nil},
		{"admin key not set", "relay", "relay:\n  admin-key: env:NOPE\n", map[string]string{"RELAY_DATA_DIR": dir}},
		{"admin key literal", "relay", "relay:\n  admin-key: sk_adm_literal\n", map[string]string{"RELAY_DATA_DIR": dir}},
		{"nats url", "relay", "relay:\n  nats:\n    url: http://127.0.0.1:4222\n", nil},
		{"nats without url", "relay", "relay:\n  nats:\n    token: env:T\n", nil},
		{"nats token not set", "relay", "relay:\n  nats:\n    url: nats://127.0.0.1:4222\n    token: env:NOPE\n", nil},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeFile(t, "c.yaml", tc.yaml)
			code, out, checkErr := runCLI(t, tc.env, "config", "check", "--config", cfg)
			if code != exitConfig || out != "" {
				t.Fatalf("config check: exit %d, stdout %q", code, out)
			}
			startArgs := []string{tc.mode, "--config", cfg}
			if strings.Contains(tc.yaml, busy.Addr().String()) {
				// Bind a free port, so the start fails on the config, not on the busy one.
				startArgs = append(startArgs, "--relay.listen-addr", "127.0.0.1:0")
			}
			code, _, startErr := runCLI(t, tc.env, startArgs...)
			if code != exitConfig {
				t.Fatalf("sluice %s: exit %d; stderr:\n%s", tc.mode, code, startErr)
			}
			if checkErr != startErr || strings.Count(checkErr, "\n") != 1 {
				t.Fatalf("config check printed:\n%s\nsluice %s printed:\n%s", checkErr, tc.mode, startErr)
			}
		})
	}
	t.Run("unknown mode", func(t *testing.T) {
		code, _, stderr := runCLI(t, nil, "config", "check", "--mode", "rely")
		if code != exitConfig || stderr != "sluice config check: --mode \"rely\": want run, relay or dev (did you mean relay?)\n" {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
}

// TestRelayConfigErrorsBeforeBinding: what the relay's config names (its
// admin key, its TLS certificate) is resolved before it binds, so a config
// error is reported as one even when the port is taken.
func TestRelayConfigErrorsBeforeBinding(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	base := "relay:\n  listen-addr: " + busy.Addr().String() + "\n"
	for _, tc := range []struct{ name, yaml, key string }{
		{"admin key not set", base + "  admin-key: env:NOPE\n", "relay.admin-key"},
		{"certificate missing", base + "  tls-cert: " + filepath.Join(dir, "nope.pem") + "\n  tls-key: " + filepath.Join(dir, "nope.key") + "\n", "relay.tls-cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeFile(t, "c.yaml", tc.yaml)
			code, _, stderr := runCLI(t, map[string]string{"RELAY_DATA_DIR": dir}, "relay", "--config", cfg)
			if code != exitConfig || !strings.Contains(stderr, tc.key) || strings.Contains(stderr, "address already in use") {
				t.Fatalf("sluice relay: exit %d (want %d, a config error naming %s); stderr:\n%s", code, exitConfig, tc.key, stderr)
			}
		})
	}
}
