package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluicemcp/sluice/engine/demo"
	"github.com/sluicemcp/sluice/engine/enginetest"
)

// headerRecorder is the demo MCP server behind a handler that remembers the
// last value of one request header.
type headerRecorder struct {
	name string
	mu   sync.Mutex
	seen []string
}

func (h *headerRecorder) values() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen...)
}

func startRecordingServer(t *testing.T, header string) (string, *headerRecorder) {
	t.Helper()
	rec := &headerRecorder{name: header}
	inner := demo.Handler(nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get(header); v != "" {
			rec.mu.Lock()
			rec.seen = append(rec.seen, v)
			rec.mu.Unlock()
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + demo.Path, rec
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestPluginSecretReference: the headers plugin's value is a file:
// reference; the host resolves it, the MCP server receives the secret, and
// the secret appears nowhere else: not in the logs, the dev banner or either
// /metrics.
func TestPluginSecretReference(t *testing.T) {
	const secret = "sk-upstream-3b1f0c2d9e8a7b6c"
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "upstream.key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serverURL, rec := startRecordingServer(t, "X-Upstream-Key")
	cfgPath := filepath.Join(dir, "dev.yaml")
	yaml := "mcp:\n  server-url: " + serverURL + "\npipeline:\n  - plugin: headers\n    config:\n      rules:\n" +
		"        - {hook: request, op: set, name: X-Upstream-Key, value: 'file:" + keyFile + "'}\n"
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	var out enginetest.SyncBuffer
	info, errb, reload := startDevWithConfigOut(t, cfgPath, &out)
	if got := callEcho(t, mcpClient(t, info.MCPURL, info.Key), "with a header"); got != "with a header" {
		t.Fatalf("echo = %q", got)
	}
	if seen := rec.values(); len(seen) == 0 || seen[len(seen)-1] != secret {
		t.Fatalf("the MCP server saw X-Upstream-Key %q, want the resolved secret", seen)
	}

	// A rotated secret file is read again at the next reload, though the
	// config itself did not change.
	const rotated = "sk-upstream-rotated-5e4d3c2b1a"
	if err := os.WriteFile(keyFile, []byte(rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	waitLong(t, "reloaded pipeline", func() bool { return strings.Contains(errb.String(), "reloaded pipeline") })
	callEcho(t, mcpClient(t, info.MCPURL, info.Key), "after rotation")
	if seen := rec.values(); seen[len(seen)-1] != rotated {
		t.Fatalf("after the reload the MCP server saw %q, want the rotated secret", seen[len(seen)-1])
	}
	places := map[string]string{
		"logs":          errb.String(),
		"banner":        out.String(),
		"agent metrics": httpGet(t, info.HealthURL+"/metrics"),
		"relay metrics": httpGet(t, info.AdminURL+"/metrics"),
	}
	for where, text := range places {
		if strings.Contains(text, secret) || strings.Contains(text, rotated) {
			t.Errorf("the resolved secret appears in the %s", where)
		}
	}
	if !strings.Contains(places["agent metrics"], `plugin="headers"`) {
		t.Errorf("agent metrics lack the headers plugin: the check above looked at the wrong page")
	}
}

// TestPluginSecretReferenceErrors: a reference that cannot be resolved
// stops the start with exit code 2 and one line naming the pipeline entry,
// the config path and the reference, never a value.
func TestPluginSecretReferenceErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, value string
		env         map[string]string
		want        string
	}{
		{name: "missing file", value: "file:" + filepath.Join(dir, "nope.key"),
			want: `config.rules[0].value: read secret file ` + filepath.Join(dir, "nope.key") + `: no such file or directory`},
		{name: "unset variable", value: "env:UPSTREAM_KEY",
			want: `config.rules[0].value: environment variable UPSTREAM_KEY (from env:UPSTREAM_KEY) is not set`},
		{name: "empty reference", value: "env:", want: `config.rules[0].value: env: reference without a variable name`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfgPath := filepath.Join(dir, "run.yaml")
			yaml := "pipeline:\n  - plugin: headers\n    config:\n      rules:\n" +
				"        - {hook: request, op: set, name: X-Upstream-Key, value: '" + tc.value + "'}\n"
			if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			c := &cli{stdout: &out, stderr: &errb, env: envOf(runEnv(map[string]string{"HEALTH_LISTEN_ADDR": "127.0.0.1:0"}))}
			if code := c.main(t.Context(), []string{"run", "--config", cfgPath}); code != exitConfig {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitConfig, errb.String())
			}
			want := `sluice: config: pipeline[0]: host: load plugin "headers": ` + tc.want + "\n"
			if errb.String() != want {
				t.Fatalf("stderr:\n%s\nwant:\n%s", errb.String(), want)
			}
		})
	}
}
