package relay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicemcp/sluice/engine/wire"
)

// clientKeyC is a second client key of tunnel A.
const clientKeyC = "ck-carol"

// withCarol gives tunnel A a second client key, carol's.
func withCarol(c *Config) {
	c.Tunnels[0].ClientKeys = append(c.Tunnels[0].ClientKeys, ClientKey{Name: "carol", Key: clientKeyC})
}

// slowConn is a raw client connection whose request body is sent only in
// part: the rest never comes.
type slowConn struct {
	net.Conn
	br *bufio.Reader
}

// slowPost sends, from local (nil: any address), a POST to path with
// headers declaring length bytes of body, then sent bytes of it, and
// returns the connection as it stands.
func (h *harness) slowPost(path, key string, length, sent int, local net.Addr) *slowConn {
	h.t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: local}
	c, err := d.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n", path, h.srv.Listener.Addr())
	if key != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", key)
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", length)
	b.WriteString(strings.Repeat("x", sent))
	if _, err := io.WriteString(c, b.String()); err != nil {
		h.t.Fatal(err)
	}
	return &slowConn{Conn: c, br: bufio.NewReader(c)}
}

// answer reads the relay's answer on c, waiting at most d.
func (c *slowConn) answer(t *testing.T, d time.Duration) (*http.Response, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("no answer within %s: %v", d, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("answer body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

// closedByRelay waits at most d for the relay to close c (EOF or reset).
func (c *slowConn) closedByRelay(t *testing.T, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	var one [1]byte
	if _, err := c.br.Read(one[:]); err == nil {
		t.Fatal("more bytes after the answer")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the relay kept the connection open %s after answering", d)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metric reads one sample of the relay's /metrics.
func (h *harness) metric(name string) float64 {
	h.t.Helper()
	rec := httptest.NewRecorder()
	h.r.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				h.t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	h.t.Fatalf("metric %s not exported", name)
	return 0
}

// refusals names the sample of sluice_relay_limit_refusals_total for reason.
func refusals(reason string) string {
	return `sluice_relay_limit_refusals_total{reason="` + reason + `"}`
}

func assertLimited(t *testing.T, resp *http.Response, body string, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, status)
	}
	if resp.Header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After = %q, want 1", resp.Header.Get("Retry-After"))
	}
	var e wire.APIError
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not an API error: %s", body)
	}
	got := ""
	if e.Error.Code != nil {
		got = *e.Error.Code
	}
	if got != code {
		t.Errorf("code %q, want %q (%s)", got, code, body)
	}
}

// TestSlowBodiesAllocateWhatArrives: twenty clients declare 4 MiB bodies
// (the cap) and send ten bytes each. The relay holds what arrived, a few
// KiB per body, not the 80 MiB they declared. (The byte budgets are set
// out of the way: this is about the allocation alone.)
func TestSlowBodiesAllocateWhatArrives(t *testing.T) {
	const n, declared = 20, DefaultMaxBodyBytes
	h := newHarness(t, func(c *Config) { c.MaxBodyBytesInFlight, c.MaxBodyBytesInFlightPerKey = 1<<30, 1<<30 }, Options{})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		h.slowPost("/v1/mcp/"+tunA, clientKeyA, declared, 10, nil)
	}
	waitFor(t, "the relay to read twenty bodies", func() bool { return h.r.lim.bodies.Load() == n })
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew %d KiB for %d bodies declaring %d MiB each", grew>>10, n, declared>>20)
	if grew > n*declared/8 {
		t.Errorf("heap grew %d MiB for %d bodies that sent 10 bytes each: allocated from Content-Length", grew>>20, n)
	}
	if held := h.metric("sluice_relay_body_inflight_bytes"); held > n*firstBodyChunk {
		t.Errorf("sluice_relay_body_inflight_bytes = %v, want at most %d", held, n*firstBodyChunk)
	}
}

// TestSlowBodyTimesOut: a body that does not arrive within
// body-read-timeout gets 408 and its connection is closed, on the MCP
// endpoint and on the agent's response endpoint.
func TestSlowBodyTimesOut(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BodyReadTimeout = 200 * time.Millisecond }, Options{})
	for _, ep := range []struct{ path, key string }{
		{"/v1/mcp/" + tunA, clientKeyA},
		{"/v1/tunnels/" + tunA + "/response", runtimeA},
	} {
		t.Run(ep.path, func(t *testing.T) {
			c := h.slowPost(ep.path, ep.key, 1000, 10, nil)
			resp, body := c.answer(t, 5*time.Second)
			if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, "request body not received within") {
				t.Fatalf("got %d %s, want 408", resp.StatusCode, body)
			}
			c.closedByRelay(t, 2*time.Second)
		})
	}
	if got := h.metric(refusals(refusedBodyTimeout)); got != 2 {
		t.Errorf("body_timeout refusals = %v, want 2", got)
	}
}

// TestLargeBodyOnSteadyLinkIsRead: a body that arrives steadily gets one
// more second per 64 KiB, so a large one is read to its end even when it
// takes several times body-read-timeout.
func TestLargeBodyOnSteadyLinkIsRead(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BodyReadTimeout = 300 * time.Millisecond }, Options{})
	const chunk, chunks = 128 << 10, 8
	c := h.slowPost("/v1/mcp/"+tunA, clientKeyA, chunk*chunks, 0, nil)
	started := time.Now()
	for range chunks {
		time.Sleep(150 * time.Millisecond)
		if _, err := c.Write(bytes.Repeat([]byte("y"), chunk)); err != nil {
			t.Fatal(err)
		}
	}
	resp, body := c.answer(t, 5*time.Second)
	// The body was read whole: it is not JSON, which is what the relay says.
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"code":-32700`) {
		t.Fatalf("got %d %.200s after %s, want the parse error of a body read whole", resp.StatusCode, body, time.Since(started))
	}
}

// TestRefusedBodiesDoNotHoldConnections: a client trickling a body to a
// request the relay refuses without reading it (wrong key, unknown route,
// a limit) gets its answer at once, and its connection is closed instead
// of being read until the client stops. GET, HEAD and DELETE may not carry
// a body at all.
func TestRefusedBodiesDoNotHoldConnections(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxConcurrentPerKey = 1 }, Options{})
	hold := h.slowPost("/v1/mcp/"+tunA, clientKeyA, 1000, 10, nil) // takes alice's only slot
	waitFor(t, "the first body to be read", func() bool { return h.r.lim.bodies.Load() == 1 })
	for _, c := range []struct {
		name, path, key string
		status          int
	}{
		{"wrong key", "/v1/mcp/" + tunA, "nope", http.StatusUnauthorized},
		{"wrong runtime key", "/v1/tunnels/" + tunA + "/response", "nope", http.StatusUnauthorized},
		{"unknown route", "/v2/elsewhere", clientKeyA, http.StatusNotFound},
		{"over the key's limit", "/v1/mcp/" + tunA, clientKeyA, http.StatusTooManyRequests},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := h.slowPost(c.path, c.key, 100_000, 10, nil)
			resp, body := conn.answer(t, 2*time.Second)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, c.status)
			}
			conn.closedByRelay(t, 2*time.Second)
		})
	}
	for _, c := range []struct{ method, path, key string }{
		{"GET", "/v1/tunnels/" + tunA + "/poll", runtimeA},
		{"DELETE", "/v1/mcp/" + tunA, clientKeyB},
	} {
		t.Run(c.method+" with a body", func(t *testing.T) {
			conn := h.rawRequest(c.method, c.path, c.key, 100_000, 10)
			resp, body := conn.answer(t, 2*time.Second)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "take no body") {
				t.Fatalf("got %d %s, want 400", resp.StatusCode, body)
			}
			conn.closedByRelay(t, 2*time.Second)
		})
	}
	hold.Close()
}

// rawRequest is slowPost for any method.
func (h *harness) rawRequest(method, path, key string, length, sent int) *slowConn {
	h.t.Helper()
	c, err := net.DialTimeout("tcp", h.srv.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s",
		method, path, h.srv.Listener.Addr(), key, length, strings.Repeat("x", sent))
	if _, err := io.WriteString(c, req); err != nil {
		h.t.Fatal(err)
	}
	return &slowConn{Conn: c, br: bufio.NewReader(c)}
}

// TestConcurrencyPerKey: a client key has at most max-concurrent-per-key
// MCP requests in progress; the next gets 429 with Retry-After at once,
// while another key of the same tunnel is served, and the key is served
// again once one of its requests ends.
func TestConcurrencyPerKey(t *testing.T) {
	h := newHarness(t, func(c *Config) { withCarol(c); c.MaxConcurrentPerKey = 2 }, Options{})
	held := []*slowConn{
		h.slowPost("/v1/mcp/"+tunA, clientKeyA, 1000, 10, nil),
		h.slowPost("/v1/mcp/"+tunA, clientKeyA, 1000, 10, nil),
	}
	waitFor(t, "two bodies being read", func() bool { return h.r.lim.bodies.Load() == 2 })
	call := func(key string) (*http.Response, string) {
		resp := wait(t, h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Authorization": "Bearer " + key}))
		return resp, readAll(t, resp)
	}
	resp, body := call(clientKeyA)
	assertLimited(t, resp, body, http.StatusTooManyRequests, wire.CodeRateLimitExceeded)
	// carol is not limited by alice's requests: her call reaches the tunnel
	// (which has no agent).
	if resp, body := call(clientKeyC); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, wire.CodeTunnelClientNotConnected) {
		t.Fatalf("carol: %d %s, want 503 tunnel_client_not_connected", resp.StatusCode, body)
	}
	held[0].Close()
	waitFor(t, "alice's first request to end", func() bool { return h.r.lim.bodies.Load() == 1 })
	waitFor(t, "alice to be served again", func() bool {
		resp, _ := call(clientKeyA)
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if got := h.metric(refusals(refusedKeyConcurrency)); got < 1 {
		t.Errorf("key_concurrency refusals = %v", got)
	}
}

// TestConcurrencyPerAddress: one remote address has at most
// max-concurrent-per-address MCP requests in progress, whatever their keys
// and tunnels; another address is served meanwhile.
func TestConcurrencyPerAddress(t *testing.T) {
	other := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	if ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: other.IP}); err != nil {
		if os.Getenv("CI") != "" || os.Getenv("SLUICE_REQUIRE_TOOLCHAINS") != "" {
			t.Fatalf("no second loopback address (127.0.0.2): %v", err)
		}
		t.Skipf("no second loopback address here (%v)", err)
	} else {
		ln.Close()
	}
	h := newHarness(t, func(c *Config) {
		withCarol(c)
		c.MaxConcurrentPerAddress = 2
		c.Tunnels[1].AuthMode = AuthOAuth // its metadata route counts per address too
	}, Options{})
	h.slowPost("/v1/mcp/"+tunA, clientKeyA, 1000, 10, nil)
	h.slowPost("/v1/mcp/"+tunA, clientKeyC, 1000, 10, nil)
	waitFor(t, "two bodies being read", func() bool { return h.r.lim.bodies.Load() == 2 })
	resp, body := h.slowPost("/v1/mcp/"+tunB, clientKeyB, 5, 5, nil).answer(t, 2*time.Second)
	assertLimited(t, resp, body, http.StatusTooManyRequests, wire.CodeRateLimitExceeded)
	resp, body = h.slowPost("/v1/mcp/"+tunB, clientKeyB, 5, 5, other).answer(t, 2*time.Second)
	if resp.StatusCode == http.StatusTooManyRequests {
		t.Fatalf("a call from another address was limited: %s", body)
	}
	resp = h.do("GET", "/.well-known/oauth-protected-resource/v1/mcp/"+tunB, nil, nil)
	body = readAll(t, resp)
	assertLimited(t, resp, body, http.StatusTooManyRequests, wire.CodeRateLimitExceeded)
	if got := h.metric(refusals(refusedAddrConcurrency)); got != 2 {
		t.Errorf("address_concurrency refusals = %v, want 2", got)
	}
}

// budgetConfig: bodies of up to 32 KiB, which the relay reads into a buffer
// of 4, 8, 16 and then 30,001 bytes for a body declaring 30,000.
func budgetConfig(perKey, total int64) func(*Config) {
	return func(c *Config) {
		withCarol(c)
		c.MaxBodyBytes, c.MaxResponseBytes = 32<<10, 32<<10
		c.MaxBodyBytesInFlightPerKey, c.MaxBodyBytesInFlight = perKey, total
	}
}

// TestBodyBudgetPerKey: the bytes a key's bodies hold while they are read
// are bounded; the next body that would pass the bound gets 429 with
// Retry-After, and another key's body is read meanwhile.
func TestBodyBudgetPerKey(t *testing.T) {
	h := newHarness(t, budgetConfig(48<<10, 1<<20), Options{})
	h.slowPost("/v1/mcp/"+tunA, clientKeyA, 30_000, 20_000, nil)
	waitFor(t, "alice's first body to hold 30,001 bytes", func() bool { return h.r.lim.bodyBytes.Load() == 30_001 })
	resp, body := h.slowPost("/v1/mcp/"+tunA, clientKeyA, 30_000, 20_000, nil).answer(t, 2*time.Second)
	assertLimited(t, resp, body, http.StatusTooManyRequests, wire.CodeRateLimitExceeded)
	h.slowPost("/v1/mcp/"+tunA, clientKeyC, 30_000, 20_000, nil)
	waitFor(t, "carol's body to be read", func() bool { return h.r.lim.bodyBytes.Load() == 60_002 })
	if got := h.metric("sluice_relay_body_inflight_bytes"); got != 60_002 {
		t.Errorf("sluice_relay_body_inflight_bytes = %v, want 60002", got)
	}
	if got := h.metric(refusals(refusedKeyBodyBudget)); got != 1 {
		t.Errorf("key_body_budget refusals = %v, want 1", got)
	}
}

// TestBodyBudgetRelayWide: the bytes all bodies hold while they are read
// are bounded too; past that, 503 with Retry-After. An agent's response
// POST draws on the same budget.
func TestBodyBudgetRelayWide(t *testing.T) {
	h := newHarness(t, budgetConfig(40_000, 64<<10), Options{})
	h.slowPost("/v1/mcp/"+tunA, clientKeyA, 30_000, 20_000, nil)
	h.slowPost("/v1/mcp/"+tunA, clientKeyC, 30_000, 20_000, nil)
	waitFor(t, "two bodies holding 60,002 bytes", func() bool { return h.r.lim.bodyBytes.Load() == 60_002 })
	for _, c := range []struct{ path, key string }{
		{"/v1/mcp/" + tunB, clientKeyB},
		{"/v1/tunnels/" + tunB + "/response", runtimeB},
	} {
		resp, body := h.slowPost(c.path, c.key, 30_000, 20_000, nil).answer(t, 2*time.Second)
		assertLimited(t, resp, body, http.StatusServiceUnavailable, "")
	}
	if got := h.metric(refusals(refusedBodyBudget)); got != 2 {
		t.Errorf("body_budget refusals = %v, want 2", got)
	}
	if got := h.metric("sluice_relay_body_budget_bytes"); got != 64<<10 {
		t.Errorf("sluice_relay_body_budget_bytes = %v", got)
	}
}

// TestReadBody reads bodies of every size around the buffer's growth steps,
// with and without a declared length, and gives back every byte of budget.
func TestReadBody(t *testing.T) {
	r, err := New(Config{PublicURL: "http://127.0.0.1:1", MaxBodyBytes: 1 << 20}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := keyID{1}
	for _, n := range []int{0, 1, 100, firstBodyChunk - 1, firstBodyChunk, firstBodyChunk + 1, 100_000, 1 << 20} {
		for _, declared := range []bool{true, false} {
			data := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
			req := httptest.NewRequest("POST", "/", io.MultiReader(bytes.NewReader(data)))
			req.ContentLength = -1
			if declared {
				req.ContentLength = int64(n)
			}
			rec := httptest.NewRecorder()
			got, outcome := r.readBody(rec, req, 1<<20, key)
			if outcome != "" || !bytes.Equal(got, data) {
				t.Fatalf("n=%d declared=%v: outcome %q, %d bytes back (%s)", n, declared, outcome, len(got), rec.Body)
			}
			if held := r.lim.bodyBytes.Load(); held != 0 || r.lim.keyBytes.m[key] != 0 || r.lim.bodies.Load() != 0 {
				t.Fatalf("n=%d: %d bytes still held after the read", n, held)
			}
		}
	}
	req := httptest.NewRequest("POST", "/", io.MultiReader(bytes.NewReader(make([]byte, 1<<20+1))))
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	if _, outcome := r.readBody(rec, req, 1<<20, key); outcome == "" || rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("over the cap without a length: %d %s", rec.Code, rec.Body)
	}
	if r.lim.bodyBytes.Load() != 0 {
		t.Fatal("budget held after a refused read")
	}
}

// TestLimitSettings: defaults, what they are raised to, and what is refused.
func TestLimitSettings(t *testing.T) {
	for _, c := range []struct {
		name               string
		cfg                Config
		perKeyB, totalB    int64
		perKey, perAddress int
		timeout            time.Duration
		err                string
	}{
		{name: "defaults", perKeyB: 16 << 20, totalB: 64 << 20, perKey: 256, perAddress: 1024, timeout: 10 * time.Second},
		{name: "raised to the response cap", cfg: Config{MaxResponseBytes: 100 << 20}, perKeyB: 100 << 20, totalB: 100 << 20, perKey: 256, perAddress: 1024, timeout: 10 * time.Second},
		{name: "set", cfg: Config{MaxBodyBytesInFlightPerKey: 20 << 20, MaxBodyBytesInFlight: 30 << 20, MaxConcurrentPerKey: 5, MaxConcurrentPerAddress: -1, BodyReadTimeout: time.Second},
			perKeyB: 20 << 20, totalB: 30 << 20, perKey: 5, perAddress: 0, timeout: time.Second},
		{name: "per key below a cap", cfg: Config{MaxBodyBytesInFlightPerKey: 1 << 20}, err: "max-body-bytes-in-flight-per-key: 1048576 is below the largest body cap"},
		{name: "total below per key", cfg: Config{MaxBodyBytesInFlight: 8 << 20}, err: "max-body-bytes-in-flight: 8388608 is below max-body-bytes-in-flight-per-key"},
		{name: "negative", cfg: Config{MaxBodyBytesInFlight: -1}, err: "must not be negative"},
		{name: "negative timeout", cfg: Config{BodyReadTimeout: -1}, err: "body-read-timeout: must not be negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.PublicURL = "http://127.0.0.1:1"
			s, err := c.cfg.settings()
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.keyBodyBudget != c.perKeyB || s.bodyBudget != c.totalB || s.perKey != c.perKey || s.perAddress != c.perAddress || s.bodyTimeout != c.timeout {
				t.Fatalf("got per-key %d total %d, %d/key %d/address, timeout %s", s.keyBodyBudget, s.bodyBudget, s.perKey, s.perAddress, s.bodyTimeout)
			}
		})
	}
}

// TestConcurrencyPerTokenSubject: on an oauth-gateway tunnel the per-key
// limit is per validated token subject: a subject at its limit gets 429,
// another subject is served.
func TestConcurrencyPerTokenSubject(t *testing.T) {
	as := newTestAS(t)
	h := newHarness(t, func(c *Config) {
		c.MaxConcurrentPerKey = 1
		c.Tunnels[0].AuthMode = AuthOAuthGateway
		c.Tunnels[0].ClientKeys = nil
		c.Tunnels[0].OAuth = OAuthConfig{Issuer: as.issuer, Scopes: []string{"mcp:tools"}}
	}, Options{})
	resource := h.url + "/v1/mcp/" + tunA
	ann := as.mint("rsa-1", jwt.MapClaims{"aud": resource, "sub": "ann"})
	bea := as.mint("rsa-1", jwt.MapClaims{"aud": resource, "sub": "bea"})
	h.slowPost("/v1/mcp/"+tunA, ann, 1000, 10, nil) // ann's only slot
	waitFor(t, "ann's body to be read", func() bool { return h.r.lim.bodies.Load() == 1 })
	resp := wait(t, h.callWith(t, as.mint("rsa-1", jwt.MapClaims{"aud": resource, "sub": "ann"})))
	assertLimited(t, resp, readAll(t, resp), http.StatusTooManyRequests, wire.CodeRateLimitExceeded)
	resp = wait(t, h.callWith(t, bea))
	if body := readAll(t, resp); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, wire.CodeTunnelClientNotConnected) {
		t.Fatalf("bea: %d %s, want 503 tunnel_client_not_connected", resp.StatusCode, body)
	}
}
