package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
)

// wrkLoad runs the same 1 KiB tools/call load with wrk (a C load generator
// that needs a fraction of the CPU a Go client does, so more of the two cores
// go to what is measured). The session is initialized by the Go client first.
func (b *bench) wrkLoad(target, pipeline, url string, conc int) (result, error) {
	c := newClient(url, 1)
	if err := c.initialize(); err != nil {
		return result{}, fmt.Errorf("%s: %w", target, err)
	}
	// One call through the Go client proves the path answers with a result.
	st, resp, h, err := c.post([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"probe"}}}`))
	if err != nil || st != 200 || !validResult(resp, h) {
		return result{}, fmt.Errorf("%s: probe call failed: %v HTTP %d %s", target, err, st, trunc(resp))
	}
	script := filepath.Join(b.tmp, "call.lua")
	lua := `
local n = 0
local msg = "` + b.message() + `"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Session-Id"] = "` + c.session + `"
wrk.headers["Mcp-Protocol-Version"] = "` + c.proto + `"
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"jsonrpc":"2.0","id":' .. n .. ',"method":"tools/call","params":{"name":"echo","arguments":{"message":"' .. msg .. '"}}}')
end
`
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		return result{}, err
	}
	threads := min(conc, 2)
	secs := int(b.duration.Seconds())
	if secs < 1 {
		secs = 1
	}
	// Warm-up, then the measured run.
	warm := max(int(b.warmup.Seconds()), 1)
	_ = exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conc), "-d", strconv.Itoa(warm)+"s", "-s", script, url).Run()
	cpu0 := b.cpuSnapshot()
	wrk := exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conc), "-d", strconv.Itoa(secs)+"s",
		"--latency", "-s", script, url)
	out, err := wrk.CombinedOutput()
	cpu1 := b.cpuSnapshot()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	r := result{Target: target, Pipeline: pipeline, Concurrency: conc}
	text := string(out)
	if m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindStringSubmatch(text); m != nil {
		r.CallsPerSec, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(text); m != nil {
		r.Calls, _ = strconv.Atoi(m[1])
	}
	r.P50ms = wrkPercentile(text, "50%")
	r.P99ms = wrkPercentile(text, "99%")
	if m := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`).FindStringSubmatch(text); m != nil {
		r.Errors, _ = strconv.Atoi(m[1])
	}
	if m := regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`).FindStringSubmatch(text); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.Errors += n
		}
	}
	b.results = append(b.results, r)
	fmt.Printf("%-8s %-10s %5d %10.0f %9.3f %9.3f %7d\n", target, pipeline, conc, r.CallsPerSec, r.P50ms, r.P99ms, r.Errors)
	wrkCPU := ""
	if ps := wrk.ProcessState; ps != nil && r.Calls > 0 {
		wrkCPU = fmt.Sprintf(", wrk %.0f µs", float64((ps.UserTime()+ps.SystemTime()).Microseconds())/float64(r.Calls))
	}
	b.cpuPerCall(cpu0, cpu1, r.Calls, wrkCPU)
	if r.Calls == 0 {
		return r, fmt.Errorf("%s: no calls: %s", target, text)
	}
	return r, nil
}

// wrkPercentile reads a latency percentile line ("50%    1.23ms") in ms.
func wrkPercentile(text, p string) float64 {
	m := regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(p) + `\s+([0-9.]+)(us|ms|s)\s*$`).FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	switch m[2] {
	case "us":
		return v / 1000
	case "s":
		return v * 1000
	}
	return v
}

// haveWrk reports whether wrk is on PATH.
func haveWrk() bool {
	_, err := exec.LookPath("wrk")
	return err == nil
}
