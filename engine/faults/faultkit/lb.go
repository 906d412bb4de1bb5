package faultkit

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// LB is a TCP load balancer on loopback, as one in front of relay replicas
// is for agents: each connection it accepts goes to the next backend, round
// robin, skipping a backend that refuses it; the two connections stay paired
// until either side closes, so a backend that dies breaks the connections it
// held and the client's next connection lands on another.
type LB struct {
	// Addr is the address clients connect to.
	Addr string

	ln       net.Listener
	backends []string
	next     atomic.Uint64
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

// StartLB starts a load balancer over backends (host:port) and stops it
// when the test ends.
func StartLB(t testing.TB, backends ...string) *LB {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb := &LB{Addr: ln.Addr().String(), ln: ln, backends: backends, conns: map[net.Conn]struct{}{}}
	lb.wg.Go(lb.accept)
	t.Cleanup(lb.Close)
	return lb
}

func (lb *LB) accept() {
	for {
		c, err := lb.ln.Accept()
		if err != nil {
			return
		}
		lb.wg.Go(func() { lb.serve(c) })
	}
}

func (lb *LB) serve(c net.Conn) {
	var b net.Conn
	for range lb.backends {
		addr := lb.backends[int(lb.next.Add(1)-1)%len(lb.backends)]
		var err error
		if b, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			break
		}
	}
	if b == nil {
		_ = c.Close()
		return
	}
	if !lb.track(c, b) {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(b, c)
	go pipe(c, b)
	<-done // either side closed: close both
	_ = c.Close()
	_ = b.Close()
	<-done
	lb.mu.Lock()
	delete(lb.conns, c)
	delete(lb.conns, b)
	lb.mu.Unlock()
}

// track records a connection pair; false when the balancer is closed.
func (lb *LB) track(c, b net.Conn) bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.conns == nil {
		_ = c.Close()
		_ = b.Close()
		return false
	}
	lb.conns[c], lb.conns[b] = struct{}{}, struct{}{}
	return true
}

// Close stops accepting and closes every connection.
func (lb *LB) Close() {
	_ = lb.ln.Close()
	lb.mu.Lock()
	for c := range lb.conns {
		_ = c.Close()
	}
	lb.conns = nil
	lb.mu.Unlock()
	lb.wg.Wait()
}
