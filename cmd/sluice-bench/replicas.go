package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// runReplicas measures the relay's queue on NATS against its in-process
// queue (-nats): one relay with the in-process queue, one relay on NATS
// (a nats-server with JetStream on loopback), and three relays on NATS
// serving the same tunnel, each with one agent (polling the first relay,
// or every relay through a round-robin balancer: -serve-balancer)
// and the built-in Go loader sending its calls round-robin to the relays,
// each connection to one relay (as a load balancer would).
func (b *bench) runReplicas(echoURL, natsBin string) error {
	wrk := b.wrk
	b.wrk = false // the loader must spread calls over several relays
	defer func() { b.wrk = wrk }()

	clientAddr, monAddr := freeAddr(), freeAddr()
	port := clientAddr[strings.LastIndex(clientAddr, ":")+1:]
	monPort := monAddr[strings.LastIndex(monAddr, ":")+1:]
	if _, err := b.start("nats-server", nil, natsBin, "-a", "127.0.0.1", "-p", port, "-m", monPort, "-js", "-sd", filepath.Join(b.tmp, "nats")); err != nil {
		return err
	}
	if err := waitTCP(clientAddr, 10*time.Second); err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	b.natsVarz = "http://" + monAddr + "/varz"
	defer func() { b.natsVarz = "" }()
	natsURL := "nats://" + clientAddr
	fmt.Printf("relay queue: in-process vs NATS JetStream (nats-server on loopback, %s), built-in Go loader\n", natsBin)
	type setup struct {
		name     string
		replicas int
		nats     string
		balanced bool
	}
	setups := []setup{{"in-process", 1, "", false}, {"nats-1", 1, natsURL, false}, {"nats-3", 3, natsURL, false},
		{"nats-1-lb", 1, natsURL, true}, {"nats-3-lb", 3, natsURL, true}}
	res := map[string]map[int]result{}
	for i, s := range setups {
		urls, procs, err := b.startReplicaSet(fmt.Sprintf("q%d", i), s.replicas, s.nats, echoURL, s.balanced)
		if err != nil {
			return err
		}
		res[s.name] = map[int]result{}
		for _, c := range b.levels {
			r, err := b.load(s.name, "none", strings.Join(urls, ","), "", c)
			if err != nil {
				return err
			}
			res[s.name][c] = r
		}
		b.stopLast(procs)
	}
	fmt.Println("queue ratios (same run):")
	ratio := func(c int, what, a, b string) {
		x, y := res[a][c], res[b][c]
		fmt.Printf("  c=%-3d %s calls/s %.2f (%.0f vs %.0f), p50 %.3f ms vs %.3f ms\n",
			c, what, x.CallsPerSec/y.CallsPerSec, x.CallsPerSec, y.CallsPerSec, x.P50ms, y.P50ms)
	}
	for _, c := range b.levels {
		ratio(c, "one relay on NATS / in-process", "nats-1", "in-process")
		ratio(c, "three relays / one relay on NATS, agent polling the first relay", "nats-3", "nats-1")
		ratio(c, "three relays / one relay on NATS, agent through a round-robin balancer", "nats-3-lb", "nats-1-lb")
	}
	return nil
}

// startReplicaSet starts n relays serving one public tunnel (sharing work
// through natsURL when set) and one agent polling the first, or with
// balanced all of them through a round-robin balancer (each poll and each
// POST to the next relay); it returns the relays' MCP URLs and the number
// of processes it started.
func (b *bench) startReplicaSet(name string, n int, natsURL, echoURL string, balanced bool) ([]string, int, error) {
	tunnel := "tunnel_" + strings.Repeat("0123456789abcdef", 2)
	env := append([]string{"BENCH_RUNTIME_KEY=sk-bench-runtime", "CONTROL_PLANE_API_KEY=sk-bench-runtime", "LOG_LEVEL=warn", "LOG_FORMAT=json"}, b.sluiceEnv...)
	var urls []string
	started := 0
	for i := range n {
		relayAddr, adminAddr := freeAddr(), freeAddr()
		var sb strings.Builder
		fmt.Fprintf(&sb, "relay:\n  listen-addr: %s\n  admin-listen-addr: %s\n", relayAddr, adminAddr)
		if natsURL != "" {
			fmt.Fprintf(&sb, "  nats:\n    url: %s\n    prefix: bench%s\n", natsURL, name)
		}
		fmt.Fprintf(&sb, "  tunnels:\n    - id: %s\n      name: bench\n      runtime-key: env:BENCH_RUNTIME_KEY\n      auth-mode: public\n", tunnel)
		cfg := filepath.Join(b.tmp, "relay-"+name+"-"+strconv.Itoa(i)+".yaml")
		if err := os.WriteFile(cfg, []byte(sb.String()), 0o600); err != nil {
			return nil, started, err
		}
		if _, err := b.start("relay-"+name+"-"+strconv.Itoa(i), env, b.bin, "relay", "--config", cfg); err != nil {
			return nil, started, err
		}
		started++
		if err := waitHTTP("http://"+adminAddr+"/healthz", func(s int) bool { return s == 200 }, 30*time.Second); err != nil {
			return nil, started, fmt.Errorf("relay %s-%d: %w (log in %s)", name, i, err, b.tmp)
		}
		urls = append(urls, "http://"+relayAddr+"/v1/mcp/"+tunnel)
	}
	healthAddr := freeAddr()
	base := strings.TrimSuffix(urls[0], "/v1/mcp/"+tunnel)
	if balanced {
		var bases []string
		for _, u := range urls {
			bases = append(bases, strings.TrimSuffix(u, "/v1/mcp/"+tunnel))
		}
		lbAddr := freeAddr()
		if err := b.startSelf("balancer-"+name, lbAddr, "-serve-balancer", lbAddr+"="+strings.Join(bases, ",")); err != nil {
			return nil, started, err
		}
		started++
		base = "http://" + lbAddr
	}
	agentCfg := filepath.Join(b.tmp, "agent-"+name+".yaml")
	if err := os.WriteFile(agentCfg, []byte("pipeline: []\n"), 0o600); err != nil {
		return nil, started, err
	}
	if _, err := b.start("agent-"+name, env, b.bin, "run", "--config", agentCfg,
		"--control-plane.base-url", base, "--control-plane.tunnel-id", tunnel,
		"--control-plane.max-inflight", "128", "--mcp.max-concurrent-requests", "64",
		"--mcp.server-url", echoURL, "--health.listen-addr", healthAddr); err != nil {
		return nil, started, err
	}
	started++
	if err := waitHTTP("http://"+healthAddr+"/readyz", func(s int) bool { return s == 200 }, 15*time.Second); err != nil {
		return nil, started, fmt.Errorf("agent %s: %w", name, err)
	}
	// Every relay must know the agent is connected before the load starts.
	for _, u := range urls {
		c := newClient(u, 1)
		deadline := time.Now().Add(10 * time.Second)
		for c.initialize() != nil {
			if time.Now().After(deadline) {
				return nil, started, fmt.Errorf("%s: relay %s never served", name, u)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return urls, started, nil
}
