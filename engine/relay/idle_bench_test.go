package relay

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// rawPoller is one agent connection that speaks just enough HTTP/1.1 by
// hand, so that the benchmarks below measure the relay and not a client.
type rawPoller struct {
	conn net.Conn
	br   *bufio.Reader
	req  []byte
}

func dialPoller(tb testing.TB, addr, tunnel, key, instance string, timeout time.Duration) *rawPoller {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	req := "GET /v1/tunnels/" + tunnel + "/poll?limit=1&timeout_ms=" + strconv.FormatInt(timeout.Milliseconds(), 10) + " HTTP/1.1\r\n" +
		"Host: " + addr + "\r\nAuthorization: Bearer " + key + "\r\n" +
		wire.HeaderClientInstanceID + ": " + instance + "\r\n\r\n"
	return &rawPoller{conn: c, req: []byte(req)}
}

func (p *rawPoller) send() error {
	_, err := p.conn.Write(p.req)
	return err
}

// read reads one answer and returns its status.
func (p *rawPoller) read() (int, error) {
	if p.br == nil {
		p.br = bufio.NewReaderSize(p.conn, 1024)
	}
	line, err := p.br.ReadString('\n')
	if err != nil {
		return 0, err
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, _ := strconv.Atoi(f[1])
	length := 0
	for {
		h, err := p.br.ReadString('\n')
		if err != nil {
			return 0, err
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		if name, val, _ := strings.Cut(h, ":"); strings.EqualFold(name, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(val))
		}
	}
	_, err = p.br.Discard(length)
	return status, err
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heldCost is what one held poll costs the process: live heap, goroutine
// stacks (allocated, and the part the GC scans, which also counts towards
// the heap goal) and goroutines.
type heldCost struct{ heap, stack, scannedStack, goroutines float64 }

// scannedStack is the stack the last GC cycle scanned.
func scannedStack() int64 {
	s := []rtmetrics.Sample{{Name: "/gc/scan/stack:bytes"}}
	rtmetrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// holdPolls holds n polls on the relay behind addr (each on its own
// connection, from its own agent instance), waits until held reports them
// all, and returns what each costs (the pollers' own sockets, about 0.3 KiB
// each, included).
func holdPolls(b *testing.B, addr string, n int, held func() int) heldCost {
	b.Helper()
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	g0, ss0 := runtime.NumGoroutine(), scannedStack()
	for i := range n {
		p := dialPoller(b, addr, tunB, runtimeB, fmt.Sprintf("held-%d", i), time.Minute)
		if err := p.send(); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for held() < n {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d polls held", held(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	return heldCost{
		heap:         float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(n),
		stack:        float64(int64(m1.StackInuse)-int64(m0.StackInuse)) / float64(n),
		scannedStack: float64(scannedStack()-ss0) / float64(n),
		goroutines:   float64(runtime.NumGoroutine()-g0) / float64(n),
	}
}

// idlePolls runs b.N polls that end empty after 1 ms, one after another on
// one keep-alive connection, and reports the CPU (client included) each
// cost, and what each poll held by hc cost.
func idlePolls(b *testing.B, addr string, hc heldCost) {
	b.Helper()
	p := dialPoller(b, addr, tunA, runtimeA, "bench-poller", time.Millisecond)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for range b.N {
		if err := p.send(); err != nil {
			b.Fatal(err)
		}
		st, err := p.read()
		if err != nil || st != http.StatusNoContent {
			b.Fatalf("poll: %d %v", st, err)
		}
	}
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N)/1e3, "cpu-µs/op")
	b.ReportMetric(hc.heap, "heap-B/held")
	b.ReportMetric(hc.stack, "stack-B/held")
	b.ReportMetric(hc.scannedStack, "scanned-stack-B/held")
	b.ReportMetric(hc.goroutines, "goroutines/held")
}

// BenchmarkIdlePoll measures what idle agents cost the relay: the memory of
// 1,000 polls held at once, and the CPU of one poll that ends empty (an
// idle agent's re-poll, every poll timeout). "floor" is the same exchange
// with a bare net/http handler that waits and answers 204 with one header:
// what the relay cannot go below while it serves polls with net/http.
func BenchmarkIdlePoll(b *testing.B) {
	const held = 1000
	b.Run("relay", func(b *testing.B) {
		h := newHarness(b, nil, Options{})
		addr := strings.TrimPrefix(h.url, "http://")
		idlePolls(b, addr, holdPolls(b, addr, held, h.r.tunnel(tunB).heldPolls))
	})
	b.Run("floor", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		var waiting atomic.Int64
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			wait, _ := strconv.Atoi(req.URL.Query().Get("timeout_ms"))
			t := time.NewTimer(time.Duration(wait) * time.Millisecond)
			defer t.Stop()
			waiting.Add(1)
			select {
			case <-t.C:
			case <-req.Context().Done():
			}
			waiting.Add(-1)
			w.Header()[wire.HeaderExtensions] = extensions
			w.WriteHeader(http.StatusNoContent)
		})}
		go func() { _ = srv.Serve(ln) }()
		b.Cleanup(func() { srv.Close() })
		addr := ln.Addr().String()
		idlePolls(b, addr, holdPolls(b, addr, held, func() int { return int(waiting.Load()) }))
	})
}
