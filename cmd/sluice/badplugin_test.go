package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rawSession is a bare MCP client over HTTP, for messages a client library
// would not send.
type rawSession struct {
	t       *testing.T
	url     string
	key     string
	session string
}

func (s *rawSession) post(body string) (int, map[string]any) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if s.key != "" {
		req.Header.Set("Authorization", "Bearer "+s.key)
	}
	if s.session != "" {
		req.Header.Set("Mcp-Session-Id", s.session)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatalf("POST %s: %v", body, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
		s.session = sid
	}
	var m map[string]any
	if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			s.t.Fatalf("POST %s: HTTP %d, body not JSON: %s", body, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, m
}

func (s *rawSession) initialize() {
	s.t.Helper()
	if st, _ := s.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`); st != 200 {
		s.t.Fatalf("initialize: HTTP %d", st)
	}
	s.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
}

func errorOf(m map[string]any) (code float64, msg string) {
	e, _ := m["error"].(map[string]any)
	code, _ = e["code"].(float64)
	msg, _ = e["message"].(string)
	return code, msg
}

// TestMisbehavingPluginThroughTunnel puts host/testdata/bad.wasm on the
// agent's chain and sends it messages that make it trap, loop forever, blow
// its memory and answer garbage. With fail_closed the MCP client gets a clear
// JSON-RPC error for each, in time, and the tunnel keeps serving; with
// fail_open the same messages reach the MCP server untouched.
func TestMisbehavingPluginThroughTunnel(t *testing.T) {
	bad := hostFixture(t, "bad.wasm")
	// bad.wasm acts on the first letter of the method: u trap, l loop,
	// m memory blow-up, o answer out of bounds.
	methods := []string{"unreachable/x", "loop/x", "memory/x", "outofbounds/x"}
	for _, policy := range []string{"fail_closed", "fail_open"} {
		t.Run(policy, func(t *testing.T) {
			cfgPath := filepath.Join(t.TempDir(), "dev.yaml")
			cfg := "pipeline:\n  - plugin: " + bad + "\n    name: bad\n    methods: [" + strings.Join(methods, ", ") + "]\n" +
				"    limits: {call-timeout: 200ms, memory-pages: 64}\n    on-error: " + policy + "\n"
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			info, errb, _ := startDevWithConfig(t, cfgPath)
			s := &rawSession{t: t, url: info.MCPURL, key: info.Key}
			s.initialize()
			for round := 0; round < 2; round++ { // failed instances are replaced: the second round fails the same way
				for i, method := range methods {
					start := time.Now()
					st, m := s.post(`{"jsonrpc":"2.0","id":` + string(rune('1'+i)) + `,"method":"` + method + `"}`)
					code, msg := errorOf(m)
					switch policy {
					case "fail_closed":
						if st != 200 || code != -32603 || !strings.Contains(msg, `plugin bad failed`) {
							t.Fatalf("%s: HTTP %d, error %v %q; want -32603 naming the plugin", method, st, code, msg)
						}
					case "fail_open":
						if code != -32601 { // the demo server's "method not found": the message passed
							t.Fatalf("%s: HTTP %d, error %v %q; want the server's -32601", method, st, code, msg)
						}
					}
					if d := time.Since(start); d > 10*time.Second {
						t.Fatalf("%s took %v", method, d)
					}
				}
			}
			// The tunnel still serves ordinary calls.
			st, m := s.post(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"message":"still here"}}}`)
			if st != 200 || !strings.Contains(toJSON(m), "still here") {
				t.Fatalf("echo after plugin failures: HTTP %d %v", st, m)
			}
			if policy == "fail_closed" && !strings.Contains(errb.String(), `"plugin":"bad"`) {
				t.Errorf("plugin failures were not logged with the plugin's name:\n%s", errb.String())
			}
		})
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAuditFile: with log.audit set to a file, each tool call through the
// tunnel leaves one JSON record there per side (`sluice dev` runs both the
// relay and the agent), and none of its arguments.
func TestAuditFile(t *testing.T) {
	dir := t.TempDir()
	auditPath := filepath.Join(dir, "audit.jsonl")
	cfgPath := filepath.Join(dir, "dev.yaml")
	if err := os.WriteFile(cfgPath, []byte("log:\n  audit: "+auditPath+"\npipeline: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	info, _, _ := startDevWithConfig(t, cfgPath)
	s := &rawSession{t: t, url: info.MCPURL, key: info.Key}
	s.initialize()
	if st, m := s.post(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"message":"private words"}}}`); st != 200 || !strings.Contains(toJSON(m), "private words") {
		t.Fatalf("echo: HTTP %d %v", st, m)
	}
	recs := map[string]map[string]any{}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && len(recs) < 2 {
		b, _ := os.ReadFile(auditPath)
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line == "" {
				continue
			}
			if strings.Contains(line, "private words") {
				t.Fatalf("audit record holds the arguments: %s", line)
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("audit line not JSON: %s", line)
			}
			side, _ := rec["side"].(string)
			recs[side] = rec
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, side := range []string{"agent", "relay"} {
		rec := recs[side]
		if rec["tool"] != "echo" || rec["outcome"] != "ok" || rec["status"] != float64(200) || rec["msg"] != "tool call" {
			t.Errorf("%s audit record: %v", side, rec)
		}
	}
	if recs["relay"]["caller"] != "dev" || recs["relay"]["verdict"] != "continue" {
		t.Errorf("relay audit record lacks the caller or verdict: %v", recs["relay"])
	}
	if b, _ := os.ReadFile(auditPath); strings.Count(strings.TrimSpace(string(b)), "\n") != 1 {
		t.Fatalf("want exactly one record per side:\n%s", b)
	}
}
