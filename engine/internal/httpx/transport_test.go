package httpx

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is an httptest server that counts the connections it accepts.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

type countingRT struct{ n atomic.Int64 }

// RoundTrip answers 200 "fallback" without touching the network.
func (c *countingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{},
		Body: io.NopCloser(strings.NewReader("fallback")), Request: req}, nil
}

func newTransport() (*Transport, *countingRT) {
	fb := &countingRT{}
	return &Transport{Fallback: fb}, fb
}

func do(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, string(b)
}

func TestReusesConnections(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part1,"))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			fmt.Fprintf(w, "%s %s %s", r.Method, r.Host, b)
		}
	})
	tr, fb := newTransport()
	c := &http.Client{Transport: tr}
	for i := 0; i < 5; i++ {
		if code, got := do(t, c, "POST", srv.URL+"/x", fmt.Sprint(i)); code != 200 || got != fmt.Sprintf("POST %s %d", srv.Listener.Addr(), i) {
			t.Fatalf("got %d %q", code, got)
		}
		if _, got := do(t, c, "GET", srv.URL+"/chunked", ""); got != "part1,part2" {
			t.Fatalf("chunked: %q", got)
		}
		if code, got := do(t, c, "DELETE", srv.URL+"/empty", ""); code != 204 || got != "" {
			t.Fatalf("empty: %d %q", code, got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 15 sequential requests, want 1", n)
	}
	if fb.n.Load() != 0 {
		t.Fatal("fallback used for a direct request")
	}
}

// TestPeerClosedIdleConnection: a connection the server closed while idle is
// noticed before reuse, and the request goes out on a fresh one.
func TestPeerClosedIdleConnection(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	srv.Config.SetKeepAlivesEnabled(true)
	tr, _ := newTransport()
	c := &http.Client{Transport: tr}
	do(t, c, "POST", srv.URL, "a")
	srv.CloseClientConnections() // closes the idle connection from the server side
	time.Sleep(50 * time.Millisecond)
	for i := 0; i < 3; i++ {
		if code, got := do(t, c, "POST", srv.URL, "b"); code != 200 || got != "ok" {
			t.Fatalf("after server close: %d %q", code, got)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func TestConnectionCloseNotReused(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.Write([]byte("bye"))
	})
	tr, _ := newTransport()
	c := &http.Client{Transport: tr}
	for i := 0; i < 3; i++ {
		if _, got := do(t, c, "GET", srv.URL, ""); got != "bye" {
			t.Fatalf("got %q", got)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
}

// TestContextEndsStream: cancelling the context unblocks a read of a
// streaming body with the context's error, and the connection is dropped.
func TestContextEndsStream(t *testing.T) {
	release := make(chan struct{})
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write([]byte("data: one\n\n"))
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.Write([]byte("ok"))
	})
	defer close(release)
	tr, _ := newTransport()
	c := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/stream", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); line != "data: one\n" {
		t.Fatalf("first line %q", line)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = io.ReadAll(br)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
	resp.Body.Close()
	do(t, c, "GET", srv.URL, "")
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (the cancelled one is not reused)", n)
	}
}

func TestDeadlineBeforeHeaders(t *testing.T) {
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // so the server notices the client leaving
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	tr, _ := newTransport()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL, strings.NewReader("x"))
	_, err := (&http.Client{Transport: tr}).Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestEarlyCloseNotReused(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 100000)))
	})
	tr, _ := newTransport()
	c := &http.Client{Transport: tr}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 10))
	resp.Body.Close()
	resp.Body.Close() // twice is fine
	do(t, c, "GET", srv.URL, "")
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// rawServer runs serve on each connection, after reading one request head
// (with br, which may hold the start of the body), and returns its URL.
func rawServer(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				serve(c, br)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// replying serves the bytes of reply.
func replying(reply string) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, _ *bufio.Reader) { io.WriteString(c, reply) }
}

func TestInterimAndCloseDelimited(t *testing.T) {
	u := rawServer(t, replying("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"))
	tr, _ := newTransport()
	code, got := do(t, &http.Client{Transport: tr}, "GET", u, "")
	if code != 200 || got != "until close" {
		t.Fatalf("got %d %q", code, got)
	}
}

func TestMalformedResponse(t *testing.T) {
	u := rawServer(t, replying("this is not HTTP\r\n\r\n"))
	tr, _ := newTransport()
	_, err := (&http.Client{Transport: tr}).Get(u)
	if err == nil || !strings.Contains(err.Error(), "malformed HTTP") {
		t.Fatalf("err = %v", err)
	}
}

func TestTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s", r.Proto)
	}))
	defer srv.Close()
	tr, fb := newTransport()
	tr.TLSConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "HTTP/1.1" || resp.TLS == nil || fb.n.Load() != 0 {
		t.Fatalf("got %q, TLS %v, fallback %d", b, resp.TLS != nil, fb.n.Load())
	}
	// An untrusted certificate fails the handshake with a TLS error.
	tr2, _ := newTransport()
	_, err = (&http.Client{Transport: tr2}).Get(srv.URL)
	var certErr *tls.CertificateVerificationError
	if !errors.As(err, &certErr) {
		t.Fatalf("untrusted: %v", err)
	}
}

func TestFallbackForProxyAndExpect(t *testing.T) {
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	tr, fb := newTransport()
	tr.Proxy = func(r *http.Request) (*url.URL, error) {
		if r.URL.Path == "/proxied" {
			return url.Parse("http://127.0.0.1:1")
		}
		return nil, nil
	}
	c := &http.Client{Transport: tr}
	do(t, c, "GET", srv.URL+"/direct", "")
	if fb.n.Load() != 0 {
		t.Fatal("direct request went to the fallback")
	}
	if _, got := do(t, c, "GET", srv.URL+"/proxied", ""); got != "fallback" {
		t.Fatalf("proxied request answered %q", got)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/expect", strings.NewReader("x"))
	req.Header.Set("Expect", "100-continue")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("expect: %v", err)
	}
	if fb.n.Load() != 2 {
		t.Fatalf("fallback used %d times, want 2", fb.n.Load())
	}
}

func TestDialError(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	tr, _ := newTransport()
	_, err := (&http.Client{Transport: tr}).Get("http://" + addr)
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("err = %v, want a dial error", err)
	}
}

// TestConcurrent runs many clients at once (for -race) and bounds the pool.
func TestConcurrent(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	tr, _ := newTransport()
	tr.MaxIdlePerHost = 4
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				msg := fmt.Sprintf("%d-%d", g, i)
				if _, got := do(t, c, "POST", srv.URL, msg); got != msg {
					t.Errorf("got %q, want %q", got, msg)
					return
				}
			}
		}()
	}
	wg.Wait()
	tr.mu.Lock()
	idle := 0
	for _, l := range tr.idle {
		idle += len(l)
	}
	tr.mu.Unlock()
	if idle > 4 {
		t.Fatalf("%d idle connections, want at most 4", idle)
	}
	if conns.Load() > 16*50 {
		t.Fatalf("%d connections: none reused", conns.Load())
	}
	tr.Close()
	if _, err := c.Get(srv.URL); err == nil {
		t.Fatal("a closed transport still sends")
	}
}

// TestEarlyAnswer: a server that answers 413 after reading part of an
// oversize body and closes the connection: the caller gets the 413, not the
// failed write.
func TestEarlyAnswer(t *testing.T) {
	u := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		io.CopyN(io.Discard, br, 64<<10)
		io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large")
		c.(*net.TCPConn).CloseWrite()
		time.Sleep(50 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0) // unread body left: the client's write fails with a reset
	})
	tr, _ := newTransport()
	code, got := do(t, &http.Client{Transport: tr}, "POST", u, strings.Repeat("x", 32<<20))
	if code != 413 || got != "too large" {
		t.Fatalf("got %d %q, want the 413", code, got)
	}
}
