package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicemcp/sluice/engine/enginetest"
)

// TestLoggerThrottles: in both formats (tint text and JSON), the process
// logger writes a repeated warning once, then one count line at the end of
// log.repeat-window with the count as an attribute; info lines without a
// request id, reload lines and the audit trail on the log stream are never
// throttled; log.repeat-window 0 writes every line.
func TestLoggerThrottles(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var buf enginetest.SyncBuffer
				cfg := Log{Level: "info", Format: format, RepeatWindow: defaultRepeatWindow, Audit: "log"}
				log, throttle := newLogger(cfg, &buf, false)
				for i := range 1000 {
					log.Warn("plugin failed", "plugin", "trap", "phase", "request", "request_id", fmt.Sprint(i), "err", "wasm trap")
				}
				for range 3 {
					log.Info("ready")
					log.Error("reload failed: kept the old pipeline", "phase", "reload", "err", "bad module")
				}
				audit, _, err := newAuditLogger(cfg, &buf, false, log)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 100 {
					audit.Info("tool call", "request_id", fmt.Sprint(i), "tool", "echo")
				}
				time.Sleep(defaultRepeatWindow)
				synctest.Wait()
				_ = throttle.Close()
				out := buf.String()
				count := map[string]int{}
				for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
					for _, m := range []string{"plugin failed", "ready", "reload failed", "tool call"} {
						if strings.Contains(line, m) {
							count[m]++
						}
					}
				}
				want := map[string]int{"plugin failed": 2, "ready": 3, "reload failed": 3, "tool call": 100}
				if fmt.Sprint(count) != fmt.Sprint(want) {
					t.Fatalf("lines by message %v, want %v:\n%s", count, want, out)
				}
				countLine := map[string]string{"text": "suppressed=999", "json": `"suppressed":999`}[format]
				if !strings.Contains(out, "plugin failed … and 999 more in the last 10 s") || !strings.Contains(out, countLine) {
					t.Fatalf("no count line with %s:\n%s", countLine, out)
				}
			})
		})
	}
	t.Run("off", func(t *testing.T) {
		var buf bytes.Buffer
		log, throttle := newLogger(Log{Level: "info", Format: "json"}, &buf, false)
		if throttle != nil {
			t.Fatal("log.repeat-window 0 still throttles")
		}
		for range 50 {
			log.Warn("plugin failed", "plugin", "trap")
		}
		if n := strings.Count(buf.String(), "\n"); n != 50 {
			t.Fatalf("%d lines, want 50", n)
		}
	})
}

// TestAuditFileRotation: with log.audit a path, `sluice relay` appends one
// JSON line per tool call to a 0600 file; after the file is renamed (as
// logrotate does), a reload (SIGHUP) reopens the path and the next record
// goes to the new file; /metrics counts the records written and dropped.
func TestAuditFileRotation(t *testing.T) {
	dir := t.TempDir()
	auditPath := filepath.Join(dir, "audit.jsonl")
	cfgPath := filepath.Join(dir, "relay.yaml")
	addr, admin := freeAddr(t), freeAddr(t)
	replaceFile(t, cfgPath, "log:\n  audit: "+auditPath+"\nrelay:\n  listen-addr: "+addr+"\n  admin-listen-addr: "+admin+
		"\n  tunnels:\n    - id: "+testTunnel+"\n      runtime-key: env:RK\n      auth-mode: public\n")
	reload := make(chan struct{})
	var errb enginetest.SyncBuffer
	startCLI(t, &cli{stdout: &bytes.Buffer{}, stderr: &errb, env: envOf(map[string]string{"RK": "sk-rk-1", "RELAY_DATA_DIR": dir}), reload: reload},
		"relay", "--config", cfgPath, "--log.format", "json")
	enginetest.WaitFor(t, "relay listening", func() bool { return strings.Contains(errb.String(), "relay listening") })

	call := func(id string) {
		t.Helper()
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + id + `","arguments":{"secret":"s3cr3t"}}}`
		resp, err := http.Post("http://"+addr+"/v1/mcp/"+testTunnel, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	tools := func(path string) []string {
		b, _ := os.ReadFile(path)
		var out []string
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var rec map[string]any
			if line == "" || json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			if strings.Contains(line, "s3cr3t") {
				t.Fatalf("audit record holds the arguments: %s", line)
			}
			out = append(out, fmt.Sprint(rec["tool"]))
		}
		return out
	}
	call("before")
	enginetest.WaitFor(t, "the first record", func() bool { return len(tools(auditPath)) == 1 })
	if st, err := os.Stat(auditPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("audit file: %v, mode %v", err, st.Mode())
	}
	if err := os.Rename(auditPath, auditPath+".1"); err != nil {
		t.Fatal(err)
	}
	call("renamed") // not reopened yet: goes to the renamed file
	enginetest.WaitFor(t, "the record after the rename", func() bool { return len(tools(auditPath+".1")) == 2 })
	reload <- struct{}{}
	enginetest.WaitFor(t, "reload finished", func() bool { return strings.Contains(errb.String(), "reload finished") })
	call("after")
	enginetest.WaitFor(t, "the record after the reopen", func() bool { return len(tools(auditPath)) == 1 })
	if got := strings.Join(tools(auditPath+".1"), ",") + " | " + strings.Join(tools(auditPath), ","); got != "before,renamed | after" {
		t.Fatalf("records: %s", got)
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, m := range []string{"sluice_audit_records_written_total 3", `sluice_audit_records_dropped_total{reason="buffer_full"} 0`,
		`sluice_audit_records_dropped_total{reason="write_error"} 0`, "sluice_log_lines_suppressed_total "} {
		if !strings.Contains(string(b), m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
}

// TestAuditPathChecked: an audit file that cannot be created stops a start
// with exit code 2 and the same one-line error `sluice config check` gives.
func TestAuditPathChecked(t *testing.T) {
	dir := t.TempDir()
	for name, path := range map[string]string{
		"missing directory": filepath.Join(dir, "nope", "audit.jsonl"),
		"a directory":       dir,
		"under a file":      filepath.Join(writeFile(t, "plain", "x"), "audit.jsonl"),
	} {
		t.Run(name, func(t *testing.T) {
			cfg := writeFile(t, "c.yaml", "log:\n  audit: "+path+"\nrelay:\n  listen-addr: 127.0.0.1:0\n  admin-listen-addr: ''\n")
			code, out, checkErr := runCLI(t, nil, "config", "check", "--mode", "relay", "--config", cfg)
			if code != exitConfig || out != "" || !strings.Contains(checkErr, "config: log.audit: open "+path+": ") {
				t.Fatalf("config check: exit %d, stdout %q, stderr %q", code, out, checkErr)
			}
			code, _, startErr := runCLI(t, nil, "relay", "--config", cfg)
			if code != exitConfig || startErr != checkErr {
				t.Fatalf("sluice relay: exit %d, stderr %q; config check said %q", code, startErr, checkErr)
			}
		})
	}
}
