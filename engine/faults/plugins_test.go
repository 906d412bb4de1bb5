package faults

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/faults/faultkit"
)

// hostileModule is the absolute path of a hostile test plugin of host/testdata.
func hostileModule(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "host", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// get returns the body of a GET of url ("" on error).
func get(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricLine returns the line of a Prometheus text body that starts with
// name{labels} ("" when there is none).
func metricLine(body, series string) string {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, series+" ") {
			return l
		}
	}
	return ""
}

// TestHostilePluginMemory: a plugin that grows its memory on every call
// until it runs out (64 MiB per instance, every page written) under 16
// concurrent clients for 20 s, its circuit breaker off so every call runs
// it, and a call timeout long enough for it to reach its limit (writing 64
// MiB of fresh pages takes about a second on a slow machine). The agent's resident memory stays under the stage's max-memory +
// 100 MiB: the pool never holds more instances than the budget, and each
// discarded instance's memory is returned at once.
func TestHostilePluginMemory(t *testing.T) {
	const maxMemory = 256 << 20
	s := startStandard(t, standardOptions{noWait: true, relay: relayOptions{responseTimeout: 60 * time.Second},
		agentConfig: fmt.Sprintf(`pipeline:
  - plugin: %s
    hooks: [request]
    limits: {memory-pages: 1024, max-memory: %d, call-timeout: 10s}
    breaker: {disabled: true}
`, hostileModule(t, "grow.wasm"), maxMemory)})
	a := s.agents[0]
	before := a.RSS()
	var sampled atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			sampled.Store(max(sampled.Load(), a.RSS()))
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	res := s.sound(faultkit.Load{Concurrency: 16, Duration: 20 * time.Second})
	close(stop)
	peak := a.PeakRSS()
	metrics := get(a.healthURL + "/metrics")
	ooms := metricLine(metrics, `sluice_plugin_failures_total{kind="oom",plugin="grow"}`)
	t.Logf("agent RSS %d MiB before, peak %d MiB (sampled %d MiB) with max-memory %d MiB; %s",
		before>>20, peak>>20, sampled.Load()>>20, maxMemory>>20, ooms)
	t.Logf("%s", metricLine(metrics, `sluice_plugin_memory_limit_bytes{plugin="grow"}`))
	if ooms == "" || strings.HasSuffix(ooms, " 0") {
		t.Fatal("the plugin never ran out of memory: the fault did not happen")
	}
	if peak > maxMemory+100<<20 {
		t.Errorf("agent peak RSS %d MiB, over max-memory %d MiB + 100 MiB", peak>>20, maxMemory>>20)
	}
	assertKinds(t, res, "the plugin failure -32603", func(k string) bool { return strings.Contains(k, "rpc_-32603") })
	if res.Count(faultkit.ClassOK) > 0 {
		t.Errorf("%d calls passed a fail_closed plugin that always fails", res.Count(faultkit.ClassOK))
	}
}

// TestLoopingPlugin: a plugin that loops on every call until its call
// timeout (1 s), under 16 concurrent clients for 9 s. Before the circuit
// breaker this serialized the tunnel (36 calls in 9 s, p50 3.98 s); now the
// pool grows to the concurrency, the circuit opens after 5 timeouts, and
// calls get the stage's failure policy at once: fail_open passes them to the
// MCP server, fail_closed answers -32603. /readyz lists the open circuit,
// which is logged once.
func TestLoopingPlugin(t *testing.T) {
	for _, policy := range []string{"fail_open", "fail_closed"} {
		t.Run(policy, func(t *testing.T) {
			s := startStandard(t, standardOptions{noWait: true, agentConfig: fmt.Sprintf(`pipeline:
  - plugin: %s
    name: loop
    hooks: [request]
    on-error: %s
`, hostileModule(t, "loop.wasm"), policy)})
			a := s.agents[0]
			var readyz atomic.Value
			readyz.Store("")
			after(4*time.Second, func() { readyz.Store(get(a.healthURL + "/readyz")) })
			res := s.sound(faultkit.Load{Concurrency: 16, Duration: 9 * time.Second})
			all := func(*faultkit.Call) bool { return true }
			p50 := res.Percentile(50, all)
			t.Logf("%d calls answered in 9 s at c=16 (before the breaker: 36), p50 %s, p99 %s",
				len(res.Calls), p50.Round(100*time.Microsecond), res.Percentile(99, all).Round(time.Millisecond))
			if len(res.Calls) < 10*36 {
				t.Errorf("only %d calls in 9 s: the looping plugin still serializes the tunnel", len(res.Calls))
			}
			if p50 >= time.Second {
				t.Errorf("p50 %s: the median call still waits for the plugin's call timeout", p50)
			}
			if body := readyz.Load().(string); !strings.Contains(body, "plugin loop: circuit open") {
				t.Errorf("/readyz while the circuit is open: %q", body)
			}
			if n := len(a.LogLines("plugin circuit opened")); n != 1 {
				t.Errorf("%d 'plugin circuit opened' log lines, want 1", n)
			}
			metrics := get(a.healthURL + "/metrics")
			for _, series := range []string{`sluice_plugin_breaker_trips_total{plugin="loop"}`, `sluice_plugin_breaker_rejected_total{plugin="loop"}`} {
				t.Logf("%s", metricLine(metrics, series))
				if l := metricLine(metrics, series); l == "" || strings.HasSuffix(l, " 0") {
					t.Errorf("%s not counted: %q", series, l)
				}
			}
			switch policy {
			case "fail_open":
				assertNoErrors(t, res, "through a fail_open stage")
			case "fail_closed":
				if res.Count(faultkit.ClassOK) > 0 {
					t.Errorf("%d calls passed a fail_closed stage that always fails", res.Count(faultkit.ClassOK))
				}
				assertKinds(t, res, "-32603", func(k string) bool { return strings.Contains(k, "rpc_-32603") })
			}
		})
	}
}
