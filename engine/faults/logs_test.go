package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/faults/faultkit"
)

// trapModule is host/testdata/trap.wasm: a plugin that traps on every
// request.
func trapModule(t *testing.T) string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(self), "..", "..", "host", "testdata", "trap.wasm")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("host/testdata/trap.wasm: %v", err)
	}
	return p
}

// repeatWindow is the agent's log.repeat-window (the default).
const repeatWindow = 10 * time.Second

// TestFailingPluginLogs: a plugin that traps on every call sits on the
// agent's chain under load for 12 s, longer than the 10 s repeat window.
// Every call gets the plugin's -32603 and nothing hangs. The agent's log
// holds a couple of lines for the failures per window, not one per call:
// the first failure of each window, and "plugin failed … and N more in the
// last 10 s"; first lines and counts add up to the failed calls exactly.
// The audit trail goes to a file that is renamed mid-load and reopened by
// SIGHUP, as logrotate does: each call has one record, in the old file or
// the new one (or counted as dropped), and none holds the arguments.
func TestFailingPluginLogs(t *testing.T) {
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	// The circuit breaker is off: every call runs the plugin and fails, so
	// every call has a failure to log (with it on, the circuit opens after
	// five and the calls after that are not logged one by one at all).
	s := startStandard(t, standardOptions{noWait: true,
		agentConfig: fmt.Sprintf("log:\n  audit: %s\npipeline:\n  - plugin: %s\n    name: trap\n    methods: [tools/call]\n    breaker: {disabled: true}\n",
			audit, trapModule(t))})
	a := s.agents[0]
	const load = 12 * time.Second
	after(load/2, func() {
		if err := os.Rename(audit, audit+".1"); err != nil {
			t.Error(err)
		}
		if err := a.Signal(syscall.SIGHUP); err != nil {
			t.Error(err)
		}
	})
	res := s.sound(faultkit.Load{Concurrency: 16, Duration: load, PadBytes: 64})
	failed := res.Count(faultkit.ClassError)
	assertKinds(t, res, "the plugin's -32603", func(k string) bool { return k == "http_500/rpc_-32603" || k == "rpc_-32603" })
	if failed == 0 || failed != len(res.Calls) {
		t.Fatalf("%d of %d calls failed: the plugin did not fail every call", failed, len(res.Calls))
	}
	for _, c := range res.Calls {
		if !strings.Contains(c.Detail, "plugin trap failed") {
			t.Fatalf("call %s: %s %s, want the trap plugin's failure", c.ID, c.Kind, c.Detail)
		}
	}

	// Every call's audit record is written or dropped before the agent stops.
	var written, dropped float64
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := metrics(t, a.healthURL)
		written = m["sluice_audit_records_written_total"]
		dropped = m[`sluice_audit_records_dropped_total{reason="buffer_full"}`] + m[`sluice_audit_records_dropped_total{reason="write_error"}`]
		if int(written+dropped) >= failed || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	suppressed := metrics(t, a.healthURL)["sluice_log_lines_suppressed_total"]
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := a.Wait(30 * time.Second); err != nil {
		t.Fatalf("agent after SIGTERM: %v", err)
	}

	// The agent's log.
	st := scanLog(t, a.Log)
	t.Logf("%d failed calls in %s: agent log %d lines, %d bytes; %d \"plugin failed\" lines and %d count lines (%s); %d warnings or errors in all",
		failed, load, st.lines, st.bytes, st.first, len(st.counts), strings.Join(st.counts, "; "), st.warnPlus)
	windows := int(load/repeatWindow) + 1
	if st.first > windows+1 {
		t.Errorf("%d \"plugin failed\" lines for %d failures in %s: want about one per %s window (%d)", st.first, failed, load, repeatWindow, windows)
	}
	if st.first+int(st.suppressed) != failed {
		t.Errorf("%d first lines + %d counted = %d, want the %d failed calls", st.first, st.suppressed, st.first+int(st.suppressed), failed)
	}
	if !st.fullWindow {
		t.Errorf("no count line says \"… more in the last 10 s\": %v", st.counts)
	}
	if st.warnPlus > 4*windows+8 {
		t.Errorf("%d warnings and errors in the agent log for one failing plugin", st.warnPlus)
	}
	if suppressed < float64(failed-2*windows) {
		t.Errorf("sluice_log_lines_suppressed_total %v, want about %d", suppressed, failed)
	}

	// The audit trail, across the rotation.
	before, after := auditRecords(t, audit+".1"), auditRecords(t, audit)
	t.Logf("audit: %d records before the rotation, %d after, %v dropped", before, after, dropped)
	if before == 0 || after == 0 {
		t.Errorf("audit records: %d in the rotated file, %d in the new one: want both", before, after)
	}
	if float64(before+after) != written || int(written+dropped) != failed {
		t.Errorf("audit: %d records in the files, %v written and %v dropped by the metrics, for %d tool calls", before+after, written, dropped, failed)
	}
}

// logStats summarizes an agent's JSON log.
type logStats struct {
	lines, bytes int
	first        int      // "plugin failed" lines: the first failure of a window
	counts       []string // the count lines' messages
	suppressed   int64    // what the count lines stand for
	fullWindow   bool     // a count line covers a whole 10 s window
	warnPlus     int      // lines at WARN or ERROR
}

func scanLog(t *testing.T, path string) logStats {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st logStats
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		st.lines++
		st.bytes += len(sc.Bytes()) + 1
		var rec struct {
			Level, Msg, Plugin string
			Suppressed         int64
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		if rec.Level == "WARN" || rec.Level == "ERROR" {
			st.warnPlus++
		}
		switch {
		case rec.Msg == "plugin failed" && rec.Plugin == "trap":
			st.first++
		case strings.HasPrefix(rec.Msg, "plugin failed … and ") && rec.Plugin == "trap":
			st.counts = append(st.counts, strings.TrimPrefix(rec.Msg, "plugin failed "))
			st.suppressed += rec.Suppressed
			if strings.HasSuffix(rec.Msg, " more in the last 10 s") {
				st.fullWindow = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return st
}

// auditRecords counts the tool-call records of an audit file, failing on a
// line that is not a whole record or that holds the call's arguments.
func auditRecords(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["msg"] != "tool call" || rec["tool"] != faultkit.WorkTool {
			t.Fatalf("%s: not a tool-call record: %q", path, line)
		}
		if strings.Contains(line, strings.Repeat("x", 64)) || strings.Contains(line, "arguments") {
			t.Fatalf("%s: a record holds the arguments: %s", path, line)
		}
		n++
	}
	return n
}

// metrics reads the unlabelled and labelled samples of a /metrics page.
func metrics(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}
