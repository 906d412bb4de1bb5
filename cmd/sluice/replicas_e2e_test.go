package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/relay/natsconn"
)

// roundRobin is a load balancer without stickiness, inside an MCP client's
// HTTP client: each request goes to the next replica, whatever its session.
type roundRobin struct {
	host     string // the public Host every replica checks
	backends []string
	n        atomic.Uint64

	mu       sync.Mutex
	sessions map[string]map[string]bool // backend → Mcp-Session-Id values it was sent
	methods  map[string]int             // backend → requests
}

func (rr *roundRobin) RoundTrip(req *http.Request) (*http.Response, error) {
	b := rr.backends[int(rr.n.Add(1))%len(rr.backends)]
	r := req.Clone(req.Context())
	r.URL.Host, r.Host = b, rr.host
	rr.mu.Lock()
	rr.methods[b]++
	if s := req.Header.Get("Mcp-Session-Id"); s != "" {
		if rr.sessions[b] == nil {
			rr.sessions[b] = map[string]bool{}
		}
		rr.sessions[b][s] = true
	}
	rr.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// TestReplicasNeedNoStickySessions: two `sluice relay` replicas on one NATS
// server, an agent (`sluice run`, the demo MCP server) polling only the
// first, and MCP clients behind a round-robin balancer that sends every
// request to the next replica: a 2025-11-25 session (initialize, calls,
// its Mcp-Session-Id on both replicas) and the stateless 2026-07-28 era
// both work, and a call's progress notifications and answer reach the
// client through the replica that holds it, whichever replica the agent
// polls.
func TestReplicasNeedNoStickySessions(t *testing.T) {
	srv, err := natsconn.StartServer(natsconn.ServerOptions{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	const tunnel = "tunnel_5e551045e551045e551045e551045e55"
	runtimeKey, clientKey := "sk_run_"+strings.Repeat("R", 40), "sk_cli_"+strings.Repeat("C", 40)
	rkFile, ckFile := writeFile(t, "runtime.key", runtimeKey), writeFile(t, "client.key", clientKey)
	var relays []string
	for i := range 2 {
		relayAddr, adminAddr := freeAddr(t), freeAddr(t)
		cfg := writeFile(t, "relay-"+string(rune('a'+i))+".yaml", "relay:\n  listen-addr: "+relayAddr+
			"\n  admin-listen-addr: "+adminAddr+"\n  public-url: http://mcp.test\n  nats:\n    url: "+srv.ClientURL()+
			"\n  tunnels:\n    - id: "+tunnel+"\n      name: shared\n      runtime-key: file:"+rkFile+
			"\n      client-keys:\n        - name: tester\n          key: file:"+ckFile+"\n")
		startRelayProcess(t, cfg, adminAddr, nil)
		relays = append(relays, relayAddr)
	}
	var agentLog enginetest.SyncBuffer
	startCLI(t, &cli{stdout: &bytes.Buffer{}, stderr: &agentLog, env: envOf(map[string]string{
		"CONTROL_PLANE_BASE_URL":  "http://" + relays[0],
		"CONTROL_PLANE_TUNNEL_ID": tunnel,
		"CONTROL_PLANE_API_KEY":   runtimeKey,
		"HEALTH_LISTEN_ADDR":      "127.0.0.1:0",
	})}, "run", "--embedded-mcp-stub", "--log.format", "json")
	enginetest.WaitFor(t, "agent ready", func() bool { return strings.Contains(agentLog.String(), `"msg":"ready"`) })

	for _, version := range []string{"2025-11-25", ""} {
		t.Run("protocol="+version, func(t *testing.T) {
			rr := &roundRobin{host: "mcp.test", backends: relays, sessions: map[string]map[string]bool{}, methods: map[string]int{}}
			tr, err := transport.NewStreamableHTTP("http://mcp.test/v1/mcp/"+tunnel,
				transport.WithHTTPBasicClient(&http.Client{Transport: rr}),
				transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + clientKey}))
			if err != nil {
				t.Fatal(err)
			}
			var opts []client.ClientOption
			if version != "" {
				opts = append(opts, client.WithProtocolVersion(version))
			}
			c := client.NewClient(tr, opts...)
			var progress atomic.Int32
			c.OnNotification(func(n mcp.JSONRPCNotification) {
				if n.Method == "notifications/progress" {
					progress.Add(1)
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			init, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{ClientInfo: mcp.Implementation{Name: "sluice-replicas-test", Version: "1"}}})
			if err != nil {
				t.Fatalf("initialize: %v", err)
			}
			want := map[string]string{"2025-11-25": "2025-11-25", "": "2026-07-28"}[version]
			if init.ProtocolVersion != want {
				t.Fatalf("protocol %q, want %q", init.ProtocolVersion, want)
			}
			for i := range 4 {
				req := mcp.CallToolRequest{}
				req.Params.Name, req.Params.Arguments = "echo", map[string]any{"message": "call " + string(rune('0'+i))}
				res, err := c.CallTool(ctx, req)
				if err != nil || res.IsError || len(res.Content) != 1 || res.Content[0].(mcp.TextContent).Text != "call "+string(rune('0'+i)) {
					t.Fatalf("call %d: %+v %v", i, res, err)
				}
			}
			// A call with progress: its notifications come back to the
			// replica that holds the call, whichever one the agent polls.
			for range 2 {
				req := mcp.CallToolRequest{}
				req.Params.Name, req.Params.Arguments = "slow", map[string]any{"steps": 3, "delay_ms": 20}
				req.Params.Meta = &mcp.Meta{ProgressToken: "p"}
				before := progress.Load()
				res, err := c.CallTool(ctx, req)
				if err != nil || res.IsError || res.Content[0].(mcp.TextContent).Text != "done" {
					t.Fatalf("slow: %+v %v", res, err)
				}
				if got := progress.Load() - before; got != 3 {
					t.Errorf("slow: %d progress notifications, want 3", got)
				}
			}
			rr.mu.Lock()
			defer rr.mu.Unlock()
			for _, b := range relays {
				if rr.methods[b] < 3 {
					t.Errorf("replica %s got %d requests: the balancer did not spread them", b, rr.methods[b])
				}
			}
			if version != "" {
				// One session, carried to both replicas.
				var ids []string
				for _, b := range relays {
					if len(rr.sessions[b]) != 1 {
						t.Fatalf("replica %s saw sessions %v, want the one session", b, rr.sessions[b])
					}
					for s := range rr.sessions[b] {
						ids = append(ids, s)
					}
				}
				if ids[0] != ids[1] {
					t.Fatalf("the replicas saw different sessions: %v", ids)
				}
			}
		})
	}
}
