package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// benchAdminKey is the relay's admin key in every bench topology
// (relay.admin-key), for the admin API calls of -idle-tunnels.
const benchAdminKey = "sk_adm_sluicebenchadminkey0123456789"

// runIdleTunnels measures what many tunnels with idle agents cost a call on
// the relay that serves them. Two relays, each with its agent and both in
// front of the same echo server, run side by side: "single" serves the
// bench tunnel alone; "many" serves the bench tunnel and n more made through
// its admin API, each with an agent holding a long-poll (simulated by the
// idle-agents process, so its CPU shows apart). c=1 is measured on each in
// alternating windows, the order swapped every other round (single, many,
// many, single, ...), so both figures come from the same minutes of the
// same machine. While single is measured, many and the idle agents are
// stopped (-idle-pause), so that figure is a relay alone on the machine;
// after they resume, the next window waits until many has worked off the
// polls that expired meanwhile.
func (b *bench) runIdleTunnels(n int) error {
	var err error
	if b.tmp, err = mkTemp(); err != nil {
		return err
	}
	echoAddr := freeAddr()
	if err := b.startSelf("echo", echoAddr, "-serve-echo", echoAddr); err != nil {
		return err
	}
	echoURL := "http://" + echoAddr + "/mcp"
	// Both relays trace their GC cycles into their logs (gcDuring).
	b.relayEnv = []string{"GODEBUG=gctrace=1"}
	b.tunnelName = "single"
	singleURL, singleRelay, _, err := b.startTunnel(echoURL, "none")
	if err != nil {
		return err
	}
	b.tunnelName = "many"
	manyURL, manyRelay, _, err := b.startTunnel(echoURL, "none")
	if err != nil {
		return err
	}
	b.tunnelName, b.relayEnv = "", nil
	many := manyRelay.Process.Pid
	fmt.Printf("sluice-bench: %d idle tunnels, c=1 %d-byte tools/call, %d rounds of one %v window per relay after %v warm-up, %d CPUs\n",
		n, b.size, b.rounds, b.duration, b.warmup, runtime.NumCPU())
	rssOne := rssKiB(many)

	start := time.Now()
	keys, err := b.makeTunnels(n)
	if err != nil {
		return err
	}
	fmt.Printf("created %d tunnels and their runtime keys through the admin API in %v (%.0f/s)\n",
		n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
	keysFile := filepath.Join(b.tmp, "idle-keys.txt")
	var kb strings.Builder
	for _, k := range keys {
		kb.WriteString(k.tunnel + " " + k.key + "\n")
	}
	if err := os.WriteFile(keysFile, []byte(kb.String()), 0o600); err != nil {
		return err
	}
	start = time.Now()
	statusAddr := freeAddr()
	// One OS thread for its Go code: fewer thread wake-ups per poll, so
	// less of the machine goes to the load tool.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	agents, err := b.start("idle-agents", []string{"GOMAXPROCS=1"}, self, "-serve-idle-agents",
		statusAddr+","+strings.TrimPrefix(b.relayPublic, "http://")+","+keysFile)
	if err != nil {
		return err
	}
	if err := waitTCP(statusAddr, 30*time.Second); err != nil {
		return fmt.Errorf("idle agents: %w", err)
	}
	status := func() idleStatus { return fetchIdleStatus("http://" + statusAddr + "/status") }
	if err := b.waitConnected(n+1, 2*time.Minute); err != nil {
		return err
	}
	connected := time.Now()
	fmt.Printf("%d idle agents connected in %v\n", n, time.Since(start).Round(time.Millisecond))
	time.Sleep(3 * time.Second) // let the relay settle
	rssIdle := rssKiB(many)
	// What the idle agents cost the relay on their own (re-polls every
	// 25-30 s), and what they cost their own process.
	cpu0, agentCPU0, st0, t0 := cpuTime(many), cpuTime(agents.Process.Pid), status(), time.Now()
	time.Sleep(10 * time.Second)
	idleSpan := time.Since(t0)
	idleCPU := float64(cpuTime(many)-cpu0) / float64(idleSpan)
	agentCPU := float64(cpuTime(agents.Process.Pid)-agentCPU0) / float64(idleSpan)
	idlePolls := float64(status().Polls-st0.Polls) / idleSpan.Seconds()

	// Steady state first: right after the agents connected, the relay's
	// heap grows on pages it never touched, up to the GC goal set by the
	// first collection with the agents' live heap (about three times it),
	// and calls pay for that (page faults, cold memory). Both relays are
	// loaded (the windows are printed, not counted) until each finished two
	// GC cycles since then, so the rounds compare relays that recycle their
	// heaps, as a relay does minutes after its agents connected.
	warm := map[string][]result{}
	for _, x := range []struct {
		name, url string
		cmd       *exec.Cmd
	}{{"many", manyURL, manyRelay}, {"single", singleURL, singleRelay}} {
		rs, err := b.warmUntilGC(x.name, x.url, x.cmd, connected, 30)
		if err != nil {
			return err
		}
		warm[x.name] = rs
		fmt.Printf("         relay-%s: warmed up in %d windows\n", x.name, len(rs))
	}

	paused := false
	pause := func(on bool) {
		if on == paused || !b.idlePause {
			return
		}
		sig := syscall.SIGCONT
		if on {
			sig = syscall.SIGSTOP
		}
		for _, p := range []*exec.Cmd{manyRelay, agents} {
			_ = syscall.Kill(-p.Process.Pid, sig)
		}
		paused = on
	}
	defer pause(false)
	res := map[string][]result{}
	spans := map[string][][2]time.Time{}
	var ratios []float64
	for round := range b.rounds {
		order := []string{"single", "many"}
		if round%2 == 1 {
			order = []string{"many", "single"}
		}
		byName := map[string]result{}
		for _, which := range order {
			url, relay := singleURL, singleRelay
			if which == "many" {
				relay = manyRelay
				url = manyURL
				if paused {
					pause(false)
					b.settle(many, idleCPU)
				}
			} else {
				pause(true)
			}
			t0, flt0 := time.Now(), minorFaults(relay.Process.Pid)
			r, err := b.load(which, fmt.Sprintf("round %d", round+1), url, "", 1)
			if err != nil {
				return err
			}
			span := [2]time.Time{t0, time.Now()}
			spans[which] = append(spans[which], span)
			g := gcDuring(filepath.Join(b.tmp, "logs", "relay-"+which+".log"), procStart(relay.Process.Pid), [][2]time.Time{span})
			fmt.Printf("         relay-%s: %.1f page faults per call, RSS %.1f MiB, %d GC cycles (%.0f ms of marking)\n", which,
				float64(minorFaults(relay.Process.Pid)-flt0)/float64(max(r.Calls, 1)), float64(rssKiB(relay.Process.Pid))/1024, g.cycles, g.cpuMs)
			res[which] = append(res[which], r)
			byName[which] = r
		}
		ratios = append(ratios, byName["many"].P50ms/byName["single"].P50ms)
	}
	pause(false)
	rssAfter, hwm := rssKiB(many), hwmKiB(many)
	st := status()

	p50 := func(rs []result) []float64 {
		var v []float64
		for _, r := range rs {
			v = append(v, r.P50ms)
		}
		return v
	}
	cps := func(rs []result) []float64 {
		var v []float64
		for _, r := range rs {
			v = append(v, r.CallsPerSec)
		}
		return v
	}
	sP, mP := spread(p50(res["single"])), spread(p50(res["many"]))
	rs := spread(ratios)
	fmt.Printf("summary over %d rounds (c=1, p50 of each window: min / median / max):\n", b.rounds)
	fmt.Printf("  %-30s p50 %.3f / %.3f / %.3f ms, %.0f calls/s (median)\n", "relay with one tunnel:", sP.min, sP.med, sP.max, spread(cps(res["single"])).med)
	fmt.Printf("  %-30s p50 %.3f / %.3f / %.3f ms, %.0f calls/s (median)\n", fmt.Sprintf("relay with %d idle tunnels:", n), mP.min, mP.med, mP.max, spread(cps(res["many"])).med)
	fmt.Printf("  p50 ratio per round: %.2f× / %.2f× / %.2f×; ratio of the medians %.2f×\n", rs.min, rs.med, rs.max, mP.med/sP.med)
	wP := spread(p50(warm["many"]))
	fmt.Printf("  while the heap of the relay with %d idle tunnels grew to its GC goal (%d warm-up windows right after the agents connected): p50 %.3f / %.3f / %.3f ms\n",
		n, len(warm["many"]), wP.min, wP.med, wP.max)
	fmt.Printf("relay with %d idle tunnels: RSS %.1f MiB with one tunnel, %.1f MiB idle, %.1f MiB after the rounds (peak %.1f MiB)\n",
		n, float64(rssOne)/1024, float64(rssIdle)/1024, float64(rssAfter)/1024, float64(hwm)/1024)
	fmt.Printf("idle, no calls: that relay %.1f%% of one core, the idle agents' process %.1f%% (%.0f polls/s answered); %d polls answered, %d failed\n",
		100*idleCPU, 100*agentCPU, idlePolls, st.Polls, st.Failures)
	for _, x := range []struct {
		name string
		cmd  *exec.Cmd
	}{{"single", singleRelay}, {"many", manyRelay}} {
		g := gcDuring(filepath.Join(b.tmp, "logs", "relay-"+x.name+".log"), procStart(x.cmd.Process.Pid), spans[x.name])
		fmt.Printf("GC cycles started in the %s relay's round windows: %d, %.0f ms of marking (%.0f ms of it in assists); live heap after the last %d MB\n",
			x.name, g.cycles, g.cpuMs, g.assistMs, g.liveMB)
	}
	return nil
}

// warmUntilGC loads url at c=1, one -duration window at a time (printed,
// not counted in the rounds), until relay finished two GC cycles since
// since, and returns the windows' results (at most limit).
func (b *bench) warmUntilGC(name, url string, relay *exec.Cmd, since time.Time, limit int) ([]result, error) {
	logPath := filepath.Join(b.tmp, "logs", "relay-"+name+".log")
	started := procStart(relay.Process.Pid)
	var rs []result
	for {
		r, err := b.load(name, "warm-up", url, "", 1)
		if err != nil {
			return rs, err
		}
		rs = append(rs, r)
		g := gcDuring(logPath, started, [][2]time.Time{{since, time.Now()}})
		if g.cycles >= 2 || len(rs) == limit {
			return rs, nil
		}
	}
}

// settle waits, after a process was resumed, until its CPU use falls back
// near its idle rate (work held back while it was stopped), for 1 to 15 s.
func (b *bench) settle(pid int, idleRate float64) {
	const step = 250 * time.Millisecond
	deadline := time.Now().Add(15 * time.Second)
	time.Sleep(time.Second)
	for time.Now().Before(deadline) {
		c0 := cpuTime(pid)
		time.Sleep(2 * step)
		if float64(cpuTime(pid)-c0)/float64(2*step) <= max(2*idleRate, 0.05) {
			return
		}
	}
}

// stats is the spread of a set of figures.
type stats struct{ min, med, max float64 }

func spread(v []float64) stats {
	if len(v) == 0 {
		return stats{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stats{s[0], med, s[len(s)-1]}
}

// gcStats sums the GC cycles (from GODEBUG=gctrace=1 lines) that started
// within some spans.
type gcStats struct {
	cycles          int
	cpuMs, assistMs float64
	liveMB          int
}

// gcDuring reads a Go process's gctrace lines from its log and sums the
// cycles that started within spans. A line reads:
//
//	gc 45 @65.481s 0%: 1.4+788+0.006 ms clock, 2.8+0/415/622+0.012 ms cpu, 271->272->198 MB, 505 MB goal, ...
//
// where the CPU part is sweep termination + assist/background/idle marking
// + mark termination; the sum leaves the idle marking out.
func gcDuring(logPath string, started time.Time, spans [][2]time.Time) gcStats {
	var g gcStats
	raw, err := os.ReadFile(logPath)
	if err != nil || started.IsZero() {
		return g
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 12 || f[0] != "gc" || !strings.HasPrefix(f[2], "@") {
			continue
		}
		at, err := strconv.ParseFloat(strings.TrimSuffix(f[2][1:], "s"), 64)
		if err != nil {
			continue
		}
		when := started.Add(time.Duration(at * float64(time.Second)))
		in := false
		for _, s := range spans {
			in = in || (!when.Before(s[0]) && when.Before(s[1]))
		}
		if !in {
			continue
		}
		_, rest, _ := strings.Cut(line, "clock, ")
		cpu, rest, _ := strings.Cut(rest, " ms cpu, ")
		parts := strings.FieldsFunc(cpu, func(r rune) bool { return r == '+' || r == '/' })
		for i, p := range parts {
			// The idle-worker figure (i == 3) is left out: it is the wall
			// time of workers on otherwise idle threads, and counts the
			// time the process was stopped (-idle-pause) as well.
			v, _ := strconv.ParseFloat(p, 64)
			if i != 3 {
				g.cpuMs += v
			}
			if i == 1 {
				g.assistMs += v
			}
		}
		heap, _, _ := strings.Cut(rest, " MB")
		if i := strings.LastIndex(heap, "->"); i >= 0 {
			g.liveMB, _ = strconv.Atoi(heap[i+2:])
		}
		g.cycles++
	}
	return g
}

// minorFaults is the number of minor page faults of a process so far
// (memory it touched for the first time, among others), from /proc.
func minorFaults(pid int) int64 {
	f := procStatFields(pid)
	if len(f) < 8 { // minflt is field 10 of the whole line
		return 0
	}
	n, _ := strconv.ParseInt(f[7], 10, 64)
	return n
}

// procStatFields are the fields of /proc/PID/stat after the command name
// (field 3 of the line is the first); nil when it cannot be read.
func procStatFields(pid int) []string {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	return strings.Fields(s)
}

// procStart is when a process started, from /proc (10 ms resolution); the
// zero time when it cannot be read.
func procStart(pid int) time.Time {
	f := procStatFields(pid)
	if len(f) < 20 { // starttime is field 22 of the whole line
		return time.Time{}
	}
	ticks, _ := strconv.ParseInt(f[19], 10, 64)
	boot, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(boot), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			bt, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			const clkTck = 100 // USER_HZ on Linux
			return time.Unix(bt, 0).Add(time.Duration(ticks) * time.Second / clkTck)
		}
	}
	return time.Time{}
}

func mkTemp() (string, error) {
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return "", err
	}
	return dir, nil
}

// raiseNoFile raises this process's open-file limit to at least want (up
// to the hard limit): each idle agent holds a connection.
func raiseNoFile(want int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= uint64(want) {
		return nil
	}
	lim.Cur = min(lim.Max, uint64(want)*2)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < uint64(want) {
		return fmt.Errorf("RLIMIT_NOFILE hard limit %d is below the %d connections needed (ulimit -Hn)", lim.Max, want)
	}
	return nil
}

// adminPost makes one admin API call on the bench relay.
func (b *bench) adminPost(c *http.Client, path, body string, out any) error {
	req, _ := http.NewRequest("POST", b.relayAdmin+path, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+benchAdminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, raw)
	}
	return json.Unmarshal(raw, out)
}

// idleKey is one simulated agent's tunnel and runtime key.
type idleKey struct{ tunnel, key string }

// makeTunnels creates n tunnels, each with a runtime key, 8 at a time.
func (b *bench) makeTunnels(n int) ([]idleKey, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	keys := make([]idleKey, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				var t struct{ ID string }
				if err := b.adminPost(c, "/v1/tunnels", fmt.Sprintf(`{"name":"idle-%d","auth_mode":"public"}`, i), &t); err != nil {
					errc <- err
					return
				}
				var k struct{ Value string }
				if err := b.adminPost(c, "/v1/tunnels/"+t.ID+"/keys", `{"scope":"runtime","name":"idle"}`, &k); err != nil {
					errc <- err
					return
				}
				keys[i] = idleKey{t.ID, k.Value}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	return keys, nil
}

// idleStatus is what the idle-agents process reports at /status.
type idleStatus struct {
	Polls    int64 `json:"polls"`
	Failures int64 `json:"failures"`
}

func fetchIdleStatus(url string) idleStatus {
	var st idleStatus
	resp, err := probeClient.Get(url)
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st
}

// runIdleAgents is the idle-agents process of -idle-tunnels
// (spec STATUS_ADDR,RELAY_HOST,KEYS_FILE): one simulated agent per line
// ("tunnel key") of KEYS_FILE polling RELAY_HOST, and the count of polls
// answered and failed at http://STATUS_ADDR/status. It runs until killed.
func runIdleAgents(spec string) error {
	parts := strings.SplitN(spec, ",", 3)
	if len(parts) != 3 {
		return fmt.Errorf("want STATUS_ADDR,RELAY_HOST,KEYS_FILE, got %q", spec)
	}
	raw, err := os.ReadFile(parts[2])
	if err != nil {
		return err
	}
	var keys []idleKey
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		tunnel, key, ok := strings.Cut(line, " ")
		if !ok {
			return fmt.Errorf("%s: malformed line %q", parts[2], line)
		}
		keys = append(keys, idleKey{tunnel, key})
	}
	if err := raiseNoFile(len(keys) + 1024); err != nil {
		return err
	}
	// Listen before the agents take their 10,000 ephemeral ports.
	ln, err := net.Listen("tcp", parts[0])
	if err != nil {
		return err
	}
	var polls, failures atomic.Int64
	startIdleAgents(context.Background(), parts[1], keys, &polls, &failures)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(idleStatus{Polls: polls.Load(), Failures: failures.Load()})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// startIdleAgents runs one simulated agent per key: a loop of long-polls,
// each agent on a connection of its own, as real agents are. No command
// ever arrives for them. Each speaks just enough HTTP/1.1 over its own TCP
// connection (one goroutine, a 1 KiB buffer): a net/http client holding
// 10,000 connections would cost this machine more CPU and memory than the
// relay does, and blur what is measured. Each poll asks for 25-30 s (real
// agents ask for 30 s): the spread keeps re-polls from bunching after the
// process was stopped (-idle-pause), at 10% more re-polls.
func startIdleAgents(ctx context.Context, host string, keys []idleKey, polls, failures *atomic.Int64) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the first connections over a second, as agents do not
			// all start at once.
			select {
			case <-time.After(time.Duration(i%1000) * time.Millisecond):
			case <-ctx.Done():
				return
			}
			// The first poll waits a random part of 30 s, so the agents'
			// re-polls spread evenly from the start (333/s for 10,000), as
			// those of a fleet started at different times do.
			wait := 1 + rand.IntN(30000)
			inst := fmt.Sprintf("%032x", i)
			for ctx.Err() == nil {
				err := idlePolls(ctx, host, k, inst, &wait, polls)
				if ctx.Err() == nil && err != nil {
					failures.Add(1)
					time.Sleep(time.Second)
				}
			}
		}()
	}
	return &wg
}

// idlePolls polls on one connection until it fails or ctx ends.
func idlePolls(ctx context.Context, host string, k idleKey, inst string, wait *int, polls *atomic.Int64) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	br := bufio.NewReaderSize(conn, 1024)
	// The request, written without allocating: head, timeout, tail.
	head := "GET /v1/tunnels/" + k.tunnel + "/poll?limit=1&timeout_ms="
	tail := " HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + k.key + "\r\nX-Tunnel-Client-Instance-Id: " + inst + "\r\n\r\n"
	req := make([]byte, 0, len(head)+len(tail)+8)
	for ctx.Err() == nil {
		req = append(strconv.AppendInt(append(req[:0], head...), int64(*wait), 10), tail...)
		*wait = 25000 + rand.IntN(5001)
		if _, err := conn.Write(req); err != nil {
			return err
		}
		status, length, closing, err := readHead(br)
		if err != nil {
			return err
		}
		if _, err := br.Discard(length); err != nil {
			return err
		}
		if status != http.StatusNoContent && status != http.StatusOK {
			return fmt.Errorf("poll: status %d", status)
		}
		polls.Add(1)
		if closing {
			return nil
		}
	}
	return nil
}

// readHead reads an HTTP/1.1 response's status line and headers (without
// allocating): the status, Content-Length and whether the server closes
// the connection.
func readHead(br *bufio.Reader) (status, length int, closing bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, 0, false, err
	}
	if _, rest, ok := bytes.Cut(line, []byte(" ")); ok && len(rest) >= 3 {
		status = atoi(rest[:3])
	}
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, 0, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			return status, length, closing, nil
		}
		name, val, _ := bytes.Cut(h, []byte(":"))
		val = bytes.TrimSpace(val)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length = atoi(val)
		case bytes.EqualFold(name, []byte("Connection")):
			closing = bytes.EqualFold(val, []byte("close"))
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, 0, false, errors.New("chunked poll answer: not expected")
		}
	}
}

// atoi reads a decimal number (-1 when b is not one).
func atoi(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// waitConnected waits until the relay counts want tunnels with a connected
// agent.
func (b *bench) waitConnected(want int, within time.Duration) error {
	deadline := time.Now().Add(within)
	got := 0
	for time.Now().Before(deadline) {
		resp, err := http.Get(b.relayAdmin + "/readyz")
		if err == nil {
			var rd struct {
				Tunnels []struct {
					AgentConnected bool `json:"agent_connected"`
				} `json:"tunnels"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&rd)
			resp.Body.Close()
			got = 0
			for _, t := range rd.Tunnels {
				if t.AgentConnected {
					got++
				}
			}
			if got >= want {
				return nil
			}
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("only %d of %d tunnels had a connected agent within %v", got, want, within)
}
