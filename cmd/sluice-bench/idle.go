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
	"runtime"
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

// runIdleTunnels measures what many tunnels with idle agents cost the
// relay: c=1 on the bench tunnel alone, then n more tunnels made through
// the admin API, each with an agent (simulated here) holding a long-poll,
// then c=1 again on the bench tunnel, and the relay's RSS.
func (b *bench) runIdleTunnels(n int) error {
	var err error
	if b.tmp, err = mkTemp(); err != nil {
		return err
	}
	if err := raiseNoFile(n + 1024); err != nil {
		return err
	}
	echoAddr := freeAddr()
	if err := b.startSelf("echo", echoAddr, "-serve-echo", echoAddr); err != nil {
		return err
	}
	mcpURL, relayCmd, _, err := b.startTunnel("http://"+echoAddr+"/mcp", "none")
	if err != nil {
		return err
	}
	pid := relayCmd.Process.Pid
	fmt.Printf("sluice-bench: %d idle tunnels, c=1 %d-byte tools/call for %v after warm-up, %d CPUs\n", n, b.size, b.duration, runtime.NumCPU())
	alone, err := b.load("tunnel", "none", mcpURL, "", 1)
	if err != nil {
		return err
	}
	rssAlone := rssKiB(pid)

	start := time.Now()
	keys, err := b.makeTunnels(n)
	if err != nil {
		return err
	}
	fmt.Printf("created %d tunnels and their runtime keys through the admin API in %v (%.0f/s)\n",
		n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start = time.Now()
	var polls, failures atomic.Int64
	idle := startIdleAgents(ctx, b.relayPublic, keys, &polls, &failures)
	if err := b.waitConnected(n+1, 2*time.Minute); err != nil {
		return err
	}
	fmt.Printf("%d idle agents connected in %v\n", n, time.Since(start).Round(time.Millisecond))
	time.Sleep(3 * time.Second) // let the relay settle
	rssIdle := rssKiB(pid)
	// What the idle agents cost the relay on their own: re-polls every 30 s.
	cpu0, polls0, t0 := cpuTime(pid), polls.Load(), time.Now()
	time.Sleep(5 * time.Second)
	idleCPU := float64(cpuTime(pid)-cpu0) / float64(time.Since(t0))
	idlePolls := float64(polls.Load()-polls0) / time.Since(t0).Seconds()
	many, err := b.load("tunnel", "none", mcpURL, "", 1)
	if err != nil {
		return err
	}
	rssAfter, hwm := rssKiB(pid), hwmKiB(pid)
	cancel()
	idle.Wait()
	fmt.Printf("relay RSS: one tunnel %.1f MiB; with %d idle tunnels %.1f MiB, after the load %.1f MiB (peak %.1f MiB); %d polls answered, %d failed\n",
		float64(rssAlone)/1024, n, float64(rssIdle)/1024, float64(rssAfter)/1024, float64(hwm)/1024, polls.Load(), failures.Load())
	fmt.Printf("relay CPU with %d idle agents and no calls: %.1f%% of one core (%.0f polls/s answered)\n", n, 100*idleCPU, idlePolls)
	fmt.Printf("ratios (same run): c=1 p50 with %d idle tunnels %.3f ms vs %.3f ms alone (%.2f×); calls/s %.0f vs %.0f\n",
		n, many.P50ms, alone.P50ms, many.P50ms/alone.P50ms, many.CallsPerSec, alone.CallsPerSec)
	return nil
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

// startIdleAgents runs one simulated agent per key: a loop of 30 s
// long-polls, each agent on a connection of its own, as real agents are.
// No command ever arrives for them. Each speaks just enough HTTP/1.1 over
// its own TCP connection (one goroutine, a 1 KiB buffer): a net/http client
// holding 10,000 connections would cost this machine more CPU and memory
// than the relay does, and blur what is measured.
func startIdleAgents(ctx context.Context, relayURL string, keys []idleKey, polls, failures *atomic.Int64) *sync.WaitGroup {
	host := strings.TrimPrefix(relayURL, "http://")
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
	for ctx.Err() == nil {
		req := "GET /v1/tunnels/" + k.tunnel + "/poll?limit=1&timeout_ms=" + strconv.Itoa(*wait) + " HTTP/1.1\r\n" +
			"Host: " + host + "\r\nAuthorization: Bearer " + k.key + "\r\nX-Tunnel-Client-Instance-Id: " + inst + "\r\n\r\n"
		*wait = 30000
		if _, err := io.WriteString(conn, req); err != nil {
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

// readHead reads an HTTP/1.1 response's status line and headers: the
// status, Content-Length and whether the server closes the connection.
func readHead(br *bufio.Reader) (status, length int, closing bool, err error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, 0, false, err
	}
	if f := strings.Fields(line); len(f) >= 2 {
		status, _ = strconv.Atoi(f[1])
	}
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return 0, 0, false, err
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			return status, length, closing, nil
		}
		name, val, _ := strings.Cut(h, ":")
		val = strings.TrimSpace(val)
		switch strings.ToLower(name) {
		case "content-length":
			length, _ = strconv.Atoi(val)
		case "connection":
			closing = strings.EqualFold(val, "close")
		case "transfer-encoding":
			return 0, 0, false, errors.New("chunked poll answer: not expected")
		}
	}
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
