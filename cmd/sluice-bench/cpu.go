package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuTime is a process's user+system CPU time so far (all its threads), from
// /proc/PID/stat; 0 when it cannot be read.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields start after its ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 { // utime and stime are fields 14 and 15 of the whole line
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// cpuSnap is the CPU time of each process the bench started, by name.
type cpuSnap map[string]time.Duration

func (b *bench) cpuSnapshot() cpuSnap {
	s := cpuSnap{}
	for _, p := range b.procs {
		if p.Process != nil {
			s[b.names[p]] = cpuTime(p.Process.Pid)
		}
	}
	return s
}

// cpuPerCall prints the CPU each process spent per call between two
// snapshots, in the order the processes were started, then extra.
func (b *bench) cpuPerCall(before, after cpuSnap, calls int, extra string) {
	if calls == 0 {
		return
	}
	var parts []string
	var total time.Duration
	for _, p := range b.procs {
		name := b.names[p]
		d := after[name] - before[name]
		total += d
		parts = append(parts, fmt.Sprintf("%s %.0f µs", name, float64(d.Microseconds())/float64(calls)))
	}
	fmt.Printf("         cpu per call: %s%s (processes above: %.0f µs)\n", strings.Join(parts, ", "), extra, float64(total.Microseconds())/float64(calls))
}

// counters are the tunnel's totals that show how much work each HTTP
// exchange between relay and agent carries, and the time the agent spent in
// plugin calls.
type counters struct {
	polls, commands, singles, batches, batched float64
	pluginSec, pluginCalls                     float64
}

func (b *bench) tunnelCounters() counters {
	a, r := scrape(b.agentMetrics), scrape(b.relayMetrics)
	return counters{
		polls:       r["sluice_relay_polls_total"],
		commands:    a["commands_polled_total"],
		singles:     a[`sluice_agent_response_posts_total{kind="single"}`],
		batches:     a[`sluice_agent_response_posts_total{kind="batch"}`],
		batched:     a["sluice_agent_batched_responses_total"],
		pluginSec:   sumPrefix(a, "sluice_plugin_call_duration_seconds_sum"),
		pluginCalls: sumPrefix(a, "sluice_plugin_call_duration_seconds_count"),
	}
}

// sumPrefix adds the samples whose name (labels included) starts with p.
func sumPrefix(m map[string]float64, p string) float64 {
	var n float64
	for k, v := range m {
		if strings.HasPrefix(k, p) {
			n += v
		}
	}
	return n
}

// pluginTime prints the mean wall time of the agent's plugin calls over the
// scenario (warm-up included; queueing for an instance excluded).
func (b *bench) pluginTime(c0, c1 counters) {
	n := c1.pluginCalls - c0.pluginCalls
	if n <= 0 {
		return
	}
	fmt.Printf("         agent plugins: %.0f guest calls, %.1f µs each (wall time, queueing for an instance excluded)\n",
		n, 1e6*(c1.pluginSec-c0.pluginSec)/n)
}

// batching prints commands per poll and final responses per POST.
func (b *bench) batching(c0, c1 counters) {
	polls, posts := c1.polls-c0.polls, c1.singles-c0.singles+c1.batches-c0.batches
	if polls <= 0 || posts <= 0 {
		return
	}
	resp := c1.singles - c0.singles + c1.batched - c0.batched
	fmt.Printf("         relay ⇄ agent: %.1f commands per poll, %.1f final responses per POST (%.0f%% of them in batches)\n",
		(c1.commands-c0.commands)/polls, resp/posts, 100*(c1.batched-c0.batched)/resp)
}

// scrape reads the samples of a Prometheus text page (name{labels} value);
// labels other than the first sample's are kept as written.
func scrape(url string) map[string]float64 {
	out := map[string]float64{}
	if url == "" {
		return out
	}
	resp, err := http.Get(url)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name := line[:i]
		if j := strings.Index(name, "{tunnel="); j >= 0 { // one tunnel in the bench
			name = name[:j]
		}
		out[name] = v
	}
	return out
}

// natsCounts are the nats-server's message and byte totals, in and out.
type natsCounts struct{ inMsgs, outMsgs, inBytes float64 }

func (b *bench) natsCounts() natsCounts {
	if b.natsVarz == "" {
		return natsCounts{}
	}
	resp, err := http.Get(b.natsVarz)
	if err != nil {
		return natsCounts{}
	}
	defer resp.Body.Close()
	var v struct {
		InMsgs  float64 `json:"in_msgs"`
		OutMsgs float64 `json:"out_msgs"`
		InBytes float64 `json:"in_bytes"`
	}
	if json.NewDecoder(resp.Body).Decode(&v) != nil {
		return natsCounts{}
	}
	return natsCounts{v.InMsgs, v.OutMsgs, v.InBytes}
}

// natsPerCall prints the NATS messages the scenario cost per call: how much
// coordination between replicas each call needed.
func (b *bench) natsPerCall(c0, c1 natsCounts, calls int) {
	if b.natsVarz == "" || calls == 0 {
		return
	}
	n := float64(calls)
	fmt.Printf("         nats per call: %.2f messages in, %.2f out, %.0f bytes in\n",
		(c1.inMsgs-c0.inMsgs)/n, (c1.outMsgs-c0.outMsgs)/n, (c1.inBytes-c0.inBytes)/n)
}
