package agent

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/binding"
)

// benchRelay is a lean in-process relay for throughput: it hands out
// pre-encoded commands and counts final responses.
type benchRelay struct {
	mu    sync.Mutex
	next  int
	total int
	cmds  [][]byte
	done  atomic.Int64
	polls atomic.Int64
	all   chan struct{}
}

func (r *benchRelay) poll(w http.ResponseWriter, req *http.Request) {
	limit, _ := strconv.Atoi(req.URL.Query().Get("limit"))
	r.polls.Add(1)
	r.mu.Lock()
	k := min(limit, r.total-r.next)
	batch := r.cmds[r.next : r.next+k]
	r.next += k
	r.mu.Unlock()
	if k == 0 {
		select {
		case <-r.all:
		case <-req.Context().Done():
		case <-time.After(50 * time.Millisecond):
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	buf := append([]byte(nil), `{"commands":[`...)
	for i, c := range batch {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, c...)
	}
	buf = append(buf, "]}"...)
	_, _ = w.Write(buf)
}

func (r *benchRelay) response(w http.ResponseWriter, req *http.Request) {
	_, _ = io.Copy(io.Discard, req.Body)
	if r.done.Add(1) == int64(r.total) {
		close(r.all)
	}
	_, _ = w.Write([]byte(`{"status":"ok"}`))
}

// BenchmarkAgentThroughput measures commands per second through the agent
// (poll, dispatch, echo binding, response POST) against an in-process relay.
func BenchmarkAgentThroughput(b *testing.B) {
	for _, c := range []int{1, 64} {
		b.Run("c="+strconv.Itoa(c), func(b *testing.B) {
			r := &benchRelay{total: b.N, all: make(chan struct{})}
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}`
			for i := range b.N {
				cm, _ := json.Marshal(map[string]any{"request_id": "req_" + strconv.Itoa(i), "shard_token": "s", "command_type": "jsonrpc",
					"channel": "main", "created_at": "2026-01-01T00:00:00Z", "response_timeout": "120s",
					"headers": map[string][]string{"Mcp-Session-Id": {"s1"}}, "jsonrpc": json.RawMessage(body)})
				r.cmds = append(r.cmds, cm)
			}
			mux := http.NewServeMux()
			mux.HandleFunc("GET /v1/tunnels/{id}/poll", r.poll)
			mux.HandleFunc("POST /v1/tunnels/{id}/response", r.response)
			mux.HandleFunc("GET /v1/tunnels/{id}", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{}`)) })
			srv := httptest.NewUnstartedServer(mux)
			var conns atomic.Int64
			srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			defer srv.Close()
			trt := &timingRT{rt: newHTTPClient(c).Transport}
			a, err := New(Config{BaseURL: srv.URL, TunnelID: testTunnel, APIKey: testKey, MaxInflight: max(c, 25), MaxConcurrent: c,
				PollTimeout: time.Second}, Options{Bindings: map[string]binding.Binding{"main": &fakeBinding{}}, HTTPClient: &http.Client{Transport: trt}})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			go func() { _ = a.Run(ctx); close(done) }()
			<-r.all
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
			b.ReportMetric(float64(b.N)/float64(r.polls.Load()), "cmds/poll")
			b.ReportMetric(float64(trt.pollNanos.Load())/float64(trt.pollN.Load())/1e3, "µs/pollRT")
			b.ReportMetric(time.Since(start).Seconds()*1e6/float64(trt.pollN.Load()), "µs/pollcycle")
			cancel()
			<-done
		})
	}
}

type timingRT struct {
	rt        http.RoundTripper
	pollNanos atomic.Int64
	pollN     atomic.Int64
}

func (t *timingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet {
		return t.rt.RoundTrip(r)
	}
	s := time.Now()
	resp, err := t.rt.RoundTrip(r)
	t.pollNanos.Add(int64(time.Since(s)))
	t.pollN.Add(1)
	return resp, err
}
