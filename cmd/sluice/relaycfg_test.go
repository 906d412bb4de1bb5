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
