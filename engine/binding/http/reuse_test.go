package httpbinding

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/sluicemcp/sluice/engine/binding"
)

// TestSSEConnectionReused checks that a server which ends its event stream
// after the response gets its connection back in the pool: one TCP
// connection serves many SSE calls.
func TestSSEConnectionReused(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fmt.Fprint(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n")
		w.(http.Flusher).Flush()
		fmt.Fprint(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n")
		w.(http.Flusher).Flush()
	}))
	srv.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	b, err := New(Config{URL: srv.URL}, Options{Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < 10; i++ {
		var got int
		err := b.Do(context.Background(), &binding.Request{Kind: binding.KindJSONRPC, Header: http.Header{},
			Body: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`), ID: json.RawMessage(`1`)},
			func(r *binding.Reply) error { got++; return nil })
		if err != nil || got != 2 {
			t.Fatalf("call %d: %v, %d replies", i, err, got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("10 sequential SSE calls used %d connections, want 1", n)
	}
}
