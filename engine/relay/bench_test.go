package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// fakeAgent polls the relay and answers every command with an echo of its
// JSON-RPC id, until ctx ends.
func fakeAgent(ctx context.Context, client *http.Client, base, tunnel, key string) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/tunnels/"+tunnel+"/poll?limit=25&timeout_ms=1000", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			continue
		}
		cmds, _, err := wire.DecodePoll(body)
		if err != nil {
			continue
		}
		for _, c := range cmds {
			var id struct {
				ID json.RawMessage `json:"id"`
			}
			_ = json.Unmarshal(c.JSONRPC, &id)
			res := append(append([]byte(`{"jsonrpc":"2.0","id":`), id.ID...), `,"result":{}}`...)
			b, _ := json.Marshal(wire.Response{RequestID: c.RequestID, RespJSON: res, RespCode: 200, RespType: wire.RespJSONRPCResponse})
			post, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/tunnels/"+tunnel+"/response", bytes.NewReader(b))
			post.Header.Set("Authorization", "Bearer "+key)
			post.Header.Set(wire.HeaderShardToken, c.ShardToken)
			if r, err := client.Do(post); err == nil {
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
		}
	}
}

// BenchmarkRelayRoundTrip measures one MCP request through the relay and an
// in-process fake agent (no MCP server, no plugins), at concurrency
// GOMAXPROCS × -cpu parallelism.
func BenchmarkRelayRoundTrip(b *testing.B) {
	h := newHarness(b, func(c *Config) { c.QueueSize = 4096 }, Options{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); fakeAgent(ctx, client, h.url, tunA, runtimeA) }()
	}
	defer func() { cancel(); h.r.Close(); wg.Wait() }()
	for range 200 {
		if h.r.tunnel(tunA).connected(time.Now(), time.Hour) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			body := `{"jsonrpc":"2.0","id":` + strconv.Itoa(i) + `,"method":"tools/call","params":{"name":"echo"}}`
			req, _ := http.NewRequest("POST", h.url+"/v1/mcp/"+tunA, bytes.NewReader([]byte(body)))
			req.Header.Set("Authorization", "Bearer "+clientKeyA)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
