package natsq

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/relay"
	"github.com/sluicemcp/sluice/engine/relay/natsconn"
	"github.com/sluicemcp/sluice/engine/wire"
)

// BenchmarkQueue compares one relay's in-process queue with the same relay
// on a NATS server embedded in the process (JetStream, in-process
// connection): 64 MCP clients calling through the relay at once, one agent
// (four polls, answering each command at once) in the same process. The
// figure that matters is the ratio of the two ns/op of one run
// (engine/relay/RATIONALE.md).
func BenchmarkQueue(b *testing.B) {
	for _, name := range []string{"in-process", "embedded-nats"} {
		b.Run(name, func(b *testing.B) {
			if name == "in-process" {
				benchRelay(b)
				return
			}
			benchRelay(b, embeddedQueues(b, 1)...)
		})
	}
}

// BenchmarkReplicas is BenchmarkQueue's NATS case with three relays on the
// embedded server, the clients' calls spread over the three and the agent
// polling the first: what serving one tunnel from three replicas costs
// against one.
func BenchmarkReplicas(b *testing.B) {
	benchRelay(b, embeddedQueues(b, 3)...)
}

// embeddedQueues starts a NATS server in the process and returns n queues
// on it, each on a connection of its own.
func embeddedQueues(b *testing.B, n int) []relay.Cluster {
	s, err := natsconn.StartServer(natsconn.ServerOptions{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Shutdown)
	var cls []relay.Cluster
	for range n {
		nc, err := s.Connect(context.Background(), "bench", nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		q, err := New(context.Background(), nc, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = q.Close() })
		cls = append(cls, q)
	}
	return cls
}

// benchRelay serves the tunnel from one relay per cluster (one relay alone
// for none), runs the agent against the first and spreads the calls.
func benchRelay(b *testing.B, cls ...relay.Cluster) {
	if len(cls) == 0 {
		cls = []relay.Cluster{nil}
	}
	var urls []string
	for _, cl := range cls {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		r, srv := serve(b, ln, relay.Config{Tunnels: []relay.Tunnel{{ID: tun, RuntimeKey: rtKey, AuthMode: relay.AuthPublic}}}, cl)
		defer func() { r.Close(); srv.Close() }()
		urls = append(urls, srv.URL)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 4 {
		go benchAgent(ctx, hc, urls[0])
	}
	call := func(id int) bool {
		req, _ := http.NewRequest("POST", urls[id%len(urls)]+"/v1/mcp/"+tun, bytes.NewReader([]byte(`{"jsonrpc":"2.0","id":`+strconv.Itoa(id)+`,"method":"ping"}`)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	for i := range urls {
		for deadline := time.Now().Add(5 * time.Second); !call(i); {
			if time.Now().After(deadline) {
				b.Fatal("relay not serving")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var ids, failed atomic.Int64
	b.SetParallelism(32) // 64 clients on 2 CPUs
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !call(int(ids.Add(1))) {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d calls failed", n)
	}
}

// benchAgent polls and answers each command at once.
func benchAgent(ctx context.Context, hc *http.Client, url string) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/tunnels/"+tun+"/poll?limit=25&timeout_ms=1000", nil)
		req.Header.Set("Authorization", rtAuth)
		req.Header.Set(wire.HeaderClientInstanceID, "bench-agent")
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			continue
		}
		cmds, _, _ := wire.DecodePoll(body)
		for _, c := range cmds {
			go func() {
				var m struct {
					ID json.RawMessage `json:"id"`
				}
				_ = json.Unmarshal(c.JSONRPC, &m)
				out, _ := json.Marshal(wire.Response{RequestID: c.RequestID, RespCode: 200, RespType: wire.RespJSONRPCResponse,
					RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{}}`)})
				req, _ := http.NewRequest("POST", url+"/v1/tunnels/"+tun+"/response", bytes.NewReader(out))
				req.Header.Set("Authorization", rtAuth)
				req.Header.Set(wire.HeaderShardToken, c.ShardToken)
				if resp, err := hc.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
	}
}
