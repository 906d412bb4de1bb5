// Command sluice-bench measures the tunnel end to end on loopback: calls/s and
// p50/p99 latency of 1 KiB tools/call requests sent directly to an MCP server
// and through `sluice relay` + `sluice run`, at several concurrencies, in one
// run, so the ratio between the two survives a noisy machine. It also reports
// the agent's and the relay's resident memory, idle and after load.
//
// It starts every process itself, on 127.0.0.1 only, and stops them by PID:
//
//	sluice-bench -sluice bin/sluice -duration 5s -concurrency 1,64
//
// The MCP server is a minimal mcp-go echo server that sluice-bench runs in a
// child process of its own (-serve-echo).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

func main() {
	var (
		serveEcho   = flag.String("serve-echo", "", "internal: serve the echo MCP server on this address")
		naiveRelay  = flag.String("serve-naive-relay", "", "internal: serve the naive reference relay on this address")
		naiveAgent  = flag.String("serve-naive-agent", "", "internal: run the naive reference agent: RELAY_URL,MCP_URL")
		naive       = flag.Bool("naive", false, "also load a naive reference tunnel (plain net/http, no features) in the same topology")
		sluiceBin   = flag.String("sluice", "bin/sluice", "path to the sluice binary")
		duration    = flag.Duration("duration", 5*time.Second, "measuring time per scenario")
		warmup      = flag.Duration("warmup", time.Second, "warm-up time per scenario (not measured)")
		size        = flag.Int("size", 1024, "bytes of tool argument per call")
		concurrency = flag.String("concurrency", "1,64", "comma-separated client concurrencies")
		pipeline    = flag.String("pipeline", "none", "agent chain: none, or a comma-separated list of built-in plugins (e.g. redact; toolguard runs with a 100-rule policy and 100 pins, the echo tool's from `sluice tools pin`)")
		compare     = flag.Bool("compare-chain", false, "also run the tunnel with -pipeline and report the cost against no chain")
		jsonOut     = flag.String("json", "", "also write the results as JSON to this file")
		inproc      = flag.Bool("inproc", false, "run relay and agent inside this process (for profiling; no RSS figures)")
		cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the loader (and, with -inproc, relay and agent)")
		pprofAddr   = flag.String("pprof", "", "serve net/http/pprof on this loopback address while running")
		timelineOn  = flag.Bool("timeline", false, "with -inproc: print the mean time between the hops of a call (use -concurrency 1)")
		loader      = flag.String("loader", "auto", "load generator: wrk (C, light on CPU), go (built in), or auto (wrk when on PATH)")
		startupOn   = flag.Bool("startup", true, "also measure startup to ready with the -pipeline chain, cold and warm compilation cache")
		payload     = flag.String("payload", "x", "tool argument text: x (one repeated letter) or text (prose with numbers, paths and capitals, which redact must inspect)")
		sluiceEnv   = flag.String("sluice-env", "", "extra environment for the relay and agent only, e.g. GOMAXPROCS=1 (comma-separated)")
		trusted     = flag.Bool("trusted", false, "run the -pipeline plugins with limits.trusted (no loop checks)")
		skipInit    = flag.Bool("skip-initialized", false, "do not send notifications/initialized (mcp-go serves such sessions faster)")
		bindingOn   = flag.Bool("binding", false, "also load the echo tool served by a Wasm binding plugin in the agent, and report it against the HTTP echo server through the tunnel")
		bindingWasm = flag.String("binding-wasm", "", "with -binding: the echo binding plugin (default: build "+echoBindingPkg+")")
		natsBin     = flag.String("nats", "", "also measure the relay's queue on NATS JetStream with this nats-server binary: one relay in-process, one on NATS, three on NATS")
		idleTunnels = flag.Int("idle-tunnels", 0, "instead of the usual scenarios: c=1 on a relay serving one tunnel and on a relay serving this many more, each with an idle agent holding a long-poll, measured in interleaved rounds; reports the p50 ratio and the relay's RSS")
		rounds      = flag.Int("rounds", 6, "with -idle-tunnels: interleaved rounds, each one -duration window per relay")
		idlePause   = flag.Bool("idle-pause", true, "with -idle-tunnels: stop (SIGSTOP) the many-tunnel relay and the idle agents while the single-tunnel relay is measured, so that figure is a relay alone on the machine")
		balancer    = flag.String("serve-balancer", "", "internal: serve a round-robin HTTP balancer: LISTEN=URL,URL,...")
		idleAgents  = flag.String("serve-idle-agents", "", "internal: run the idle agents of -idle-tunnels: STATUS_ADDR,RELAY_HOST,KEYS_FILE")
	)
	flag.Parse()
	skipInitialized = *skipInit
	if *naiveRelay != "" {
		fatalf("%v", runNaiveRelay(*naiveRelay))
	}
	if *naiveAgent != "" {
		relayURL, mcpURL, _ := strings.Cut(*naiveAgent, ",")
		fatalf("%v", runNaiveAgent(relayURL, mcpURL))
	}
	if *balancer != "" {
		fatalf("balancer: %v", runBalancer(*balancer))
	}
	if *idleAgents != "" {
		fatalf("idle agents: %v", runIdleAgents(*idleAgents))
	}
	if *serveEcho != "" {
		if err := runEcho(*serveEcho); err != nil {
			fmt.Fprintln(os.Stderr, "sluice-bench: echo server:", err)
			os.Exit(1)
		}
		return
	}
	var levels []int
	for _, s := range strings.Split(*concurrency, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatalf("bad -concurrency %q", *concurrency)
		}
		levels = append(levels, n)
	}
	b := &bench{bin: *sluiceBin, size: *size, duration: *duration, warmup: *warmup, levels: levels, inproc: *inproc}
	switch *loader {
	case "wrk":
		if !haveWrk() {
			fatalf("-loader wrk: wrk is not on PATH (Debian/Ubuntu: apt-get install wrk)")
		}
		b.wrk = true
	case "auto":
		b.wrk = haveWrk() && !*inproc
	case "go":
	default:
		fatalf("-loader must be wrk, go or auto")
	}
	b.payload = *payload
	b.trusted = *trusted
	if *sluiceEnv != "" {
		b.sluiceEnv = strings.Split(*sluiceEnv, ",")
	}
	b.startupOn = *startupOn
	b.naive = *naive
	b.binding, b.bindingWasmFlag = *bindingOn, *bindingWasm
	b.natsBin = *natsBin
	b.rounds, b.idlePause = *rounds, *idlePause
	if b.rounds < 1 {
		fatalf("-rounds must be at least 1")
	}
	if *timelineOn {
		b.tl = &timeline{}
	}
	if *pprofAddr != "" {
		runtime.SetBlockProfileRate(10000)
		runtime.SetMutexProfileFraction(10)
		go http.ListenAndServe(*pprofAddr, nil)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fatalf("%v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatalf("%v", err)
		}
		defer pprof.StopCPUProfile()
	}
	run := func() error { return b.run(*pipeline, *compare) }
	if *idleTunnels > 0 {
		run = func() error { return b.runIdleTunnels(*idleTunnels) }
	}
	if err := run(); err != nil {
		b.stopAll()
		pprof.StopCPUProfile()
		fatalf("%v", err)
	}
	b.stopAll()
	if *jsonOut != "" {
		out, _ := json.MarshalIndent(b.results, "", "  ")
		if err := os.WriteFile(*jsonOut, out, 0o644); err != nil {
			fatalf("%v", err)
		}
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "sluice-bench: "+format+"\n", a...)
	os.Exit(1)
}

// runEcho serves a minimal mcp-go server with one echo tool.
func runEcho(addr string) error {
	s := server.NewMCPServer("bench-echo", "1.0.0")
	s.AddTool(mcp.NewTool("echo", mcp.WithString("message", mcp.Required())),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText(req.GetString("message", "")), nil
		})
	h := server.NewStreamableHTTPServer(s)
	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

type result struct {
	Target      string  `json:"target"`
	Pipeline    string  `json:"pipeline"`
	Concurrency int     `json:"concurrency"`
	Calls       int     `json:"calls"`
	Errors      int     `json:"errors"`
	CallsPerSec float64 `json:"calls_per_sec"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
}

type bench struct {
	bin       string
	size      int
	duration  time.Duration
	warmup    time.Duration
	levels    []int
	inproc    bool
	startupOn bool
	trusted   bool
	sluiceEnv []string
	tunnelEnv []string
	agentArgs func(echoURL string) []string
	payload   string
	wrk       bool
	tl        *timeline
	procs     []*exec.Cmd
	names     map[*exec.Cmd]string
	// agentMetrics and relayMetrics are the running tunnel's /metrics URLs;
	// relayAdmin and relayPublic its relay's base URLs.
	agentMetrics, relayMetrics string
	// natsVarz is the nats-server's /varz URL while one runs ("" if none).
	natsVarz                string
	relayAdmin, relayPublic string
	naive                   bool
	results                 []result
	tmp                     string
	// binding loads the echo binding plugin too (-binding); bindingWasm is
	// set while its tunnel starts.
	binding                      bool
	bindingWasmFlag, bindingWasm string
	// natsBin, when set, adds the queue comparison on NATS (-nats).
	natsBin string
	// tunnelName, when set, names the next startTunnel's files and
	// processes (otherwise its pipeline does); relayEnv is extra
	// environment for its relay alone.
	tunnelName string
	relayEnv   []string
	// rounds is the number of interleaved measurement rounds of
	// -idle-tunnels; idlePause stops the many-tunnel relay and the idle
	// agents while the single-tunnel relay is measured.
	rounds    int
	idlePause bool
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("%v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (b *bench) start(name string, env []string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	// Logs go to their own folder: the agent watches its config file's
	// folder, and every log write there would wake its watcher.
	if err := os.MkdirAll(filepath.Join(b.tmp, "logs"), 0o700); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(b.tmp, "logs", name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	b.procs = append(b.procs, cmd)
	if b.names == nil {
		b.names = map[*exec.Cmd]string{}
	}
	b.names[cmd] = name
	return cmd, nil
}

// startSelf starts this binary with args as process name and, when addr is
// not empty, waits until it accepts connections there.
func (b *bench) startSelf(name, addr string, args ...string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if _, err := b.start(name, nil, append([]string{self}, args...)...); err != nil {
		return err
	}
	if addr == "" {
		return nil
	}
	return waitTCP(addr, 10*time.Second)
}

// stopLast stops the n processes started last, newest first: SIGTERM to the
// process group, SIGKILL after 5 s.
func (b *bench) stopLast(n int) {
	for len(b.procs) > 0 && n > 0 {
		p := b.procs[len(b.procs)-1]
		b.procs, n = b.procs[:len(b.procs)-1], n-1
		if p.Process == nil {
			continue
		}
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

func (b *bench) stopAll() {
	b.stopLast(len(b.procs))
	if b.tmp != "" {
		os.RemoveAll(b.tmp)
	}
}

func waitTCP(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening within %v", addr, within)
}

var probeClient = &http.Client{Timeout: 2 * time.Second}

func waitHTTP(url string, okStatus func(int) bool, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		resp, err := probeClient.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if okStatus(resp.StatusCode) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %v", url, within)
}

func (b *bench) run(pipeline string, compare bool) error {
	var err error
	if b.tmp, err = os.MkdirTemp("", "sluice-bench-"); err != nil {
		return err
	}
	echoAddr := freeAddr()
	if err := b.startSelf("echo", echoAddr, "-serve-echo", echoAddr); err != nil {
		return err
	}
	echoURL := "http://" + echoAddr + "/mcp"

	gen := "built-in Go client"
	if b.wrk {
		gen = "wrk"
	}
	fmt.Printf("sluice-bench: %d-byte tools/call, %v per scenario after warm-up, load from %s, %d CPUs\n",
		b.size, b.duration, gen, runtime.NumCPU())
	fmt.Printf("%-8s %-10s %5s %10s %9s %9s %7s\n", "target", "pipeline", "conc", "calls/s", "p50 ms", "p99 ms", "errors")

	direct := map[int]result{}
	for _, c := range b.levels {
		r, err := b.load("direct", "-", echoURL, "", c)
		if err != nil {
			return err
		}
		direct[c] = r
	}

	pipes := []string{pipeline}
	if compare && pipeline != "none" {
		pipes = []string{"none", pipeline}
	}
	tunnelRes := map[string]map[int]result{}
	if b.inproc {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		mcpURL, err := startInproc(ctx, echoURL, b.tl)
		if err != nil {
			return err
		}
		for _, c := range b.levels {
			r, err := b.load("tunnel", "none", mcpURL, "", c)
			if err != nil {
				return err
			}
			fmt.Printf("  c=%-3d in-process tunnel/direct calls/s %.2f, p50 %.3f ms vs %.3f ms\n", c, r.CallsPerSec/direct[c].CallsPerSec, r.P50ms, direct[c].P50ms)
		}
		if b.tl != nil {
			b.tl.report()
		}
		return nil
	}
	for _, pl := range pipes {
		mcpURL, relayCmd, agentCmd, err := b.startTunnel(echoURL, pl)
		if err != nil {
			return err
		}
		idleRelay, idleAgent := rssKiB(relayCmd.Process.Pid), rssKiB(agentCmd.Process.Pid)
		tunnelRes[pl] = map[int]result{}
		for _, c := range b.levels {
			m0 := b.tunnelCounters()
			r, err := b.load("tunnel", pl, mcpURL, "", c)
			if err != nil {
				return err
			}
			m1 := b.tunnelCounters()
			b.batching(m0, m1)
			b.pluginTime(m0, m1)
			tunnelRes[pl][c] = r
		}
		fmt.Printf("memory (%s chain): relay RSS idle %.1f MiB, after load %.1f MiB (peak %.1f); agent RSS idle %.1f MiB, after load %.1f MiB (peak %.1f)\n",
			pl, float64(idleRelay)/1024, float64(rssKiB(relayCmd.Process.Pid))/1024, float64(hwmKiB(relayCmd.Process.Pid))/1024,
			float64(idleAgent)/1024, float64(rssKiB(agentCmd.Process.Pid))/1024, float64(hwmKiB(agentCmd.Process.Pid))/1024)
		b.stopLast(2) // this tunnel's relay and agent, before the next one
	}
	var bindingRes map[int]result
	if b.binding {
		if _, ok := tunnelRes["none"]; !ok {
			return fmt.Errorf("-binding compares against the HTTP echo server without a chain: use -pipeline none or -compare-chain")
		}
		if bindingRes, err = b.runBinding(b.bindingWasmFlag); err != nil {
			return err
		}
	}
	if b.natsBin != "" {
		if err := b.runReplicas(echoURL, b.natsBin); err != nil {
			return err
		}
	}
	naiveRes := map[int]result{}
	if b.naive {
		if err := b.runNaive(echoURL, naiveRes); err != nil {
			return err
		}
	}
	if b.startupOn && pipeline != "none" {
		if err := b.startup(echoURL, pipeline); err != nil {
			return err
		}
	}
	fmt.Println("ratios (same run):")
	for _, pl := range pipes {
		for _, c := range b.levels {
			d, t := direct[c], tunnelRes[pl][c]
			fmt.Printf("  c=%-3d %s chain: tunnel/direct calls/s %.2f (%.0f vs %.0f), p50 %.3f ms vs %.3f ms\n",
				c, pl, t.CallsPerSec/d.CallsPerSec, t.CallsPerSec, d.CallsPerSec, t.P50ms, d.P50ms)
		}
	}
	for _, c := range b.levels {
		if n, ok := naiveRes[c]; ok {
			t := tunnelRes["none"][c]
			if _, ok := tunnelRes["none"]; !ok {
				t = tunnelRes[pipes[0]][c]
			}
			fmt.Printf("  c=%-3d naive reference tunnel: %.0f calls/s, p50 %.3f ms (sluice tunnel %.2f× its calls/s, p50 %.3f ms)\n",
				c, n.CallsPerSec, n.P50ms, t.CallsPerSec/n.CallsPerSec, t.P50ms)
		}
	}
	for _, c := range b.levels {
		if r, ok := bindingRes[c]; ok {
			h := tunnelRes["none"][c]
			fmt.Printf("  c=%-3d binding plugin: %.0f calls/s, p50 %.3f ms; %.2f× the HTTP MCP server's through the tunnel (%.0f calls/s, p50 %.3f ms)\n",
				c, r.CallsPerSec, r.P50ms, r.CallsPerSec/h.CallsPerSec, h.CallsPerSec, h.P50ms)
		}
	}
	if len(pipes) == 2 {
		for _, c := range b.levels {
			a, p := tunnelRes["none"][c], tunnelRes[pipes[1]][c]
			fmt.Printf("  c=%-3d chain cost: %s keeps %.1f%% of no-chain calls/s (%.0f vs %.0f)\n",
				c, pipes[1], 100*p.CallsPerSec/a.CallsPerSec, p.CallsPerSec, a.CallsPerSec)
		}
	}
	return nil
}

func (b *bench) startTunnel(echoURL, pipeline string) (mcpURL string, relay, agent *exec.Cmd, err error) {
	tunnel := "tunnel_" + strings.Repeat("0123456789abcdef", 2)
	relayAddr, adminAddr := freeAddr(), freeAddr()
	name := strings.ReplaceAll(pipeline, ",", "_")
	if b.bindingWasm != "" {
		name = "binding-" + name
	}
	if b.tunnelName != "" {
		name = b.tunnelName
	}
	cfg := filepath.Join(b.tmp, "sluice-"+name+".yaml")
	var sb strings.Builder
	fmt.Fprintf(&sb, "relay:\n  listen-addr: %s\n  admin-listen-addr: %s\n  data-dir: %s\n  admin-key: env:BENCH_ADMIN_KEY\n  tunnels:\n",
		relayAddr, adminAddr, filepath.Join(b.tmp, "relay-data-"+name))
	fmt.Fprintf(&sb, "    - id: %s\n      name: bench\n      runtime-key: env:BENCH_RUNTIME_KEY\n      auth-mode: public\n", tunnel)
	sb.WriteString(b.bindingYAML())
	sb.WriteString("pipeline:")
	if pipeline == "none" || pipeline == "" {
		sb.WriteString(" []\n")
	} else {
		sb.WriteString("\n")
		for _, p := range strings.Split(pipeline, ",") {
			p = strings.TrimSpace(p)
			fmt.Fprintf(&sb, "  - plugin: %s\n", p)
			if p == "toolguard" {
				cfg, err := b.toolguardConfig(echoURL)
				if err != nil {
					return "", nil, nil, err
				}
				fmt.Fprintf(&sb, "    config: %s\n", cfg)
			}
			if b.trusted {
				sb.WriteString("    limits:\n      trusted: true\n")
			}
		}
	}
	if err := os.WriteFile(cfg, []byte(sb.String()), 0o600); err != nil {
		return "", nil, nil, err
	}
	env := append([]string{"BENCH_RUNTIME_KEY=sk-bench-runtime", "CONTROL_PLANE_API_KEY=sk-bench-runtime", "BENCH_ADMIN_KEY=" + benchAdminKey,
		"LOG_LEVEL=warn", "LOG_FORMAT=json"}, b.sluiceEnv...)
	b.tunnelEnv = env
	b.agentArgs = func(echoURL string) []string {
		args := []string{"--config", cfg,
			"--control-plane.base-url", "http://" + relayAddr,
			"--control-plane.tunnel-id", tunnel,
			"--control-plane.max-inflight", "128",
			"--mcp.max-concurrent-requests", "64"}
		if echoURL != "" {
			args = append(args, "--mcp.server-url", echoURL)
		}
		return args
	}
	relay, err = b.start("relay-"+name, append(slices.Clone(env), b.relayEnv...), b.bin, "relay", "--config", cfg)
	if err != nil {
		return "", nil, nil, err
	}
	if err := waitHTTP("http://"+adminAddr+"/healthz", func(s int) bool { return s == 200 }, 10*time.Second); err != nil {
		return "", nil, nil, fmt.Errorf("relay: %w (log in %s)", err, b.tmp)
	}
	healthAddr := freeAddr()
	b.agentMetrics, b.relayMetrics = "http://"+healthAddr+"/metrics", "http://"+adminAddr+"/metrics"
	b.relayAdmin, b.relayPublic = "http://"+adminAddr, "http://"+relayAddr
	agent, err = b.start("agent-"+name, env, append([]string{b.bin, "run"}, append(b.agentArgs(echoURL), "--health.listen-addr", healthAddr)...)...)
	if err != nil {
		return "", nil, nil, err
	}
	if err := waitHTTP("http://"+healthAddr+"/readyz", func(s int) bool { return s == 200 }, 15*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(b.tmp, "logs", "agent-"+name+".log"))
		return "", nil, nil, fmt.Errorf("agent: %w\n%s", err, log)
	}
	mcpURL = "http://" + relayAddr + "/v1/mcp/" + tunnel
	if slices.Contains(strings.Split(pipeline, ","), "toolguard") {
		if err := b.listTools(mcpURL); err != nil {
			return "", nil, nil, err
		}
	}
	return mcpURL, relay, agent, nil
}

// client is one MCP session over plain HTTP, the cheapest client there is, so
// the loader measures the server side and not a client library.
type client struct {
	hc      *http.Client
	url     string
	session string
	proto   string
}

func newClient(url string, conns int) *client {
	tr := &http.Transport{MaxIdleConns: conns * 2, MaxIdleConnsPerHost: conns * 2, IdleConnTimeout: time.Minute}
	return &client{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, url: url, proto: "2025-11-25"}
}

func (c *client) post(body []byte) (int, []byte, http.Header, error) {
	req, err := http.NewRequest(http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
		req.Header.Set("Mcp-Protocol-Version", c.proto)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

var skipInitialized bool

func (c *client) initialize() error {
	st, body, h, err := c.post([]byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"sluice-bench","version":"1"}}}`))
	if err != nil {
		return err
	}
	if st != 200 {
		return fmt.Errorf("initialize: HTTP %d: %s", st, trunc(body))
	}
	c.session = h.Get("Mcp-Session-Id")
	if skipInitialized {
		return nil
	}
	st, body, _, err = c.post([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	if err != nil {
		return err
	}
	if st != 202 && st != 200 {
		return fmt.Errorf("initialized: HTTP %d: %s", st, trunc(body))
	}
	return nil
}

func trunc(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

func (b *bench) load(target, pipeline, url, _ string, conc int) (result, error) {
	if b.wrk {
		return b.wrkLoad(target, pipeline, url, conc)
	}
	urls := strings.Split(url, ",") // several: round-robin, one per worker
	c := newClient(urls[0], conc)
	if err := c.initialize(); err != nil {
		return result{}, fmt.Errorf("%s: %w", target, err)
	}
	clients := []*client{c}
	for _, u := range urls[1:] {
		cu := *c
		cu.url = u
		clients = append(clients, &cu)
	}
	msg := b.message()
	var measuring atomic.Bool
	var calls, errs atomic.Int64
	lat := make([][]time.Duration, conc)
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			lat[w] = make([]time.Duration, 0, 1<<16)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := w*1_000_000_000 + i + 1
				body := []byte(`{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"tools/call","params":{"name":"echo","arguments":{"message":"` + msg + `"}}}`)
				t0 := time.Now()
				st, resp, h, err := clients[w%len(clients)].post(body)
				d := time.Since(t0)
				ok := err == nil && st == 200 && validResult(resp, h)
				if !measuring.Load() {
					continue
				}
				if !ok {
					errs.Add(1)
					if err == nil {
						err = fmt.Errorf("HTTP %d: %s", st, trunc(resp))
					}
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				calls.Add(1)
				lat[w] = append(lat[w], d)
			}
		}(w)
	}
	time.Sleep(b.warmup)
	cpu0, nats0 := b.cpuSnapshot(), b.natsCounts()
	measuring.Store(true)
	start := time.Now()
	time.Sleep(b.duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	cpu1, nats1 := b.cpuSnapshot(), b.natsCounts()
	close(stop)
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := result{Target: target, Pipeline: pipeline, Concurrency: conc, Calls: int(calls.Load()), Errors: int(errs.Load()),
		CallsPerSec: float64(calls.Load()) / elapsed.Seconds()}
	if n := len(all); n > 0 {
		r.P50ms = float64(all[n/2].Microseconds()) / 1000
		r.P99ms = float64(all[n*99/100].Microseconds()) / 1000
	}
	b.results = append(b.results, r)
	fmt.Printf("%-8s %-10s %5d %10.0f %9.3f %9.3f %7d\n", target, pipeline, conc, r.CallsPerSec, r.P50ms, r.P99ms, r.Errors)
	b.cpuPerCall(cpu0, cpu1, r.Calls, "")
	b.natsPerCall(nats0, nats1, r.Calls)
	if e := firstErr.Load(); e != nil {
		fmt.Printf("         first error: %s\n", e)
	}
	if r.Calls == 0 {
		return r, errors.New(target + ": no successful calls")
	}
	return r, nil
}

// validResult checks the reply is a JSON-RPC result (JSON or one SSE event).
func validResult(b []byte, h http.Header) bool {
	if strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
		return bytes.Contains(b, []byte(`"result"`))
	}
	return bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) && bytes.Contains(b, []byte(`"result"`))
}

func procStatus(pid int, key string) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, key+":") {
			fields := strings.Fields(line[len(key)+1:])
			if len(fields) > 0 {
				n, _ := strconv.ParseInt(fields[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

func rssKiB(pid int) int64 { return procStatus(pid, "VmRSS") }
func hwmKiB(pid int) int64 { return procStatus(pid, "VmHWM") }

// message returns the tool argument: b.size bytes of the chosen payload, safe
// to embed in a JSON string as is.
func (b *bench) message() string {
	if b.payload != "text" {
		return strings.Repeat("x", b.size)
	}
	const prose = "The deployment of api-gateway v2.14.3 finished at 2026-05-01T10:30:00Z on node-17; " +
		"see https://docs.example.com/runbooks/Gateway?tab=3 (ticket OPS-4412, 99.95% SLO, 3 retries). "
	var sb strings.Builder
	for sb.Len() < b.size {
		sb.WriteString(prose)
	}
	return sb.String()[:b.size]
}
