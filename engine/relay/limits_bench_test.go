package relay

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// BenchmarkRefusedRequest measures what one request refused by a limit
// costs the relay and its client together: a new connection, a POST
// declaring a 100 KB body of which a byte was sent, the 429, and the close.
func BenchmarkRefusedRequest(b *testing.B) {
	h := newHarness(b, func(c *Config) { c.MaxConcurrentPerKey = 1 }, Options{})
	hold := h.slowPost("/v1/mcp/"+tunA, clientKeyA, 1000, 10, nil) // alice's only slot
	defer hold.Close()
	addr := h.srv.Listener.Addr().String()
	req := fmt.Sprintf("POST /v1/mcp/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: 100000\r\n\r\n{", tunA, addr, clientKeyA)
	b.ResetTimer()
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.WriteString(c, req); err != nil {
			b.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusTooManyRequests {
			b.Fatalf("%v %v", resp, err)
		}
		resp.Body.Close()
		c.Close()
	}
}
