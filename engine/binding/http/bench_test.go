package httpbinding

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine/binding"
)

// BenchmarkEcho measures one 1 KiB tools/call through the binding to an
// in-process mcp-go echo server on loopback (2025 era, JSON replies).
func BenchmarkEcho(b *testing.B) {
	ts := newMCPGoServer(b, &gate{release: make(chan struct{})})
	bd := newBinding(b, ts.URL+"/mcp", Config{}, Options{})
	init := rpc(0, "initialize", `{"protocolVersion":"`+legacyVersion+`","capabilities":{},"clientInfo":{"name":"b","version":"1"}}`)
	replies, err := collect(b, bd, init)
	if err != nil {
		b.Fatal(err)
	}
	sid := replies[0].Header.Get("Mcp-Session-Id")
	msg := strings.Repeat("x", 1024)
	body := json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"` + msg + `"}}}`)
	hdr := http.Header{"Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {legacyVersion}}
	run := func(b *testing.B, parallel bool) {
		call := func() {
			req := &binding.Request{Kind: binding.KindJSONRPC, Header: hdr, Body: body, ID: json.RawMessage(`1`)}
			var final bool
			err := bd.Do(context.Background(), req, func(r *binding.Reply) error { final = r.Final; return nil })
			if err != nil || !final {
				b.Fatalf("do: %v final=%v", err, final)
			}
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		if parallel {
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					call()
				}
			})
			return
		}
		for b.Loop() {
			call()
		}
	}
	b.Run("c=1", func(b *testing.B) { run(b, false) })
	b.Run("parallel", func(b *testing.B) { run(b, true) })
	// Baseline: the same call with a bare http.Client, for the ratio.
	b.Run("direct-c=1", func(b *testing.B) {
		client := &http.Client{Transport: NewTransport()}
		b.ReportAllocs()
		for b.Loop() {
			hreq, _ := http.NewRequest(http.MethodPost, ts.URL+"/mcp", bytes.NewReader(body))
			hreq.Header = hdr.Clone()
			hreq.Header.Set("Content-Type", "application/json")
			hreq.Header.Set("Accept", acceptBoth)
			resp, err := client.Do(hreq)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// BenchmarkSSE measures the SSE splitter alone on a stream of 1 KiB events.
func BenchmarkSSE(b *testing.B) {
	ev := "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"x\":\"" + strings.Repeat("y", 960) + "\"}}\n\n"
	in := strings.Repeat(ev, 64)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		sr := newSSEReader(strings.NewReader(in), 1<<20)
		for {
			if _, err := sr.next(); err != nil {
				break
			}
		}
	}
}
