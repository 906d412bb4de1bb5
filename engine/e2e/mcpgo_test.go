package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// goServer is an in-process mcp-go Streamable HTTP server on 127.0.0.1 with
// a recorder of what reached it.
type goServer struct {
	url string

	mu      sync.Mutex
	methods []string // HTTP method of every request
	deletes []int    // status of every DELETE
	started chan string
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// startGoServer starts an mcp-go server with three tools: echo, progress
// (steps progress notifications, then a result) and sleep (blocks for
// seconds or until cancelled; announces itself on started), plus one tool
// named after each extra name (so tests can tell servers apart).
func startGoServer(t testing.TB, extra ...string) *goServer {
	t.Helper()
	gs := &goServer{started: make(chan string, 16)}
	s := server.NewMCPServer("sluice-e2e-go", "1.0.0", server.WithToolCapabilities(false))
	for _, name := range extra {
		s.AddTool(mcp.NewTool(name, mcp.WithDescription("identifies this server")),
			func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText(name), nil
			})
	}
	s.AddTool(mcp.NewTool("echo", mcp.WithDescription("echo a message"), mcp.WithString("message", mcp.Required())),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("echo: " + req.GetString("message", "")), nil
		})
	s.AddTool(mcp.NewTool("progress", mcp.WithDescription("report progress, then answer"), mcp.WithNumber("steps")),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			steps := req.GetInt("steps", 3)
			var token mcp.ProgressToken
			if req.Params.Meta != nil {
				token = req.Params.Meta.ProgressToken
			}
			srv := server.ServerFromContext(ctx)
			for i := 1; i <= steps && token != nil; i++ {
				if err := srv.SendNotificationToClient(ctx, "notifications/progress", map[string]any{
					"progressToken": token, "progress": i, "total": steps,
				}); err != nil {
					return nil, fmt.Errorf("send progress: %w", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			return mcp.NewToolResultText(fmt.Sprintf("done after %d steps", steps)), nil
		})
	s.AddTool(mcp.NewTool("sleep", mcp.WithDescription("sleep for seconds"), mcp.WithNumber("seconds")),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			select {
			case gs.started <- "sleep":
			default:
			}
			select {
			case <-time.After(time.Duration(req.GetFloat("seconds", 1) * float64(time.Second))):
				return mcp.NewToolResultText("slept"), nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	h := server.NewStreamableHTTPServer(s, server.WithStateful(true))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		gs.mu.Lock()
		gs.methods = append(gs.methods, r.Method)
		if r.Method == http.MethodDelete {
			gs.deletes = append(gs.deletes, rec.status)
		}
		gs.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	gs.url = srv.URL + "/mcp"
	return gs
}

func (gs *goServer) deleteStatuses() []int {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return append([]int(nil), gs.deletes...)
}

// mcpGoRun is what one mcp-go client session observed.
type mcpGoRun struct {
	protocol string
	tools    []string
	events   []string // "progress:N" … then "result"
	result   string
	echo     string
}

// runMCPGoClient lists tools, calls progress (recording the order of progress
// notifications and the result) and echo, then closes the client (which
// sends DELETE on a stateful session).
func runMCPGoClient(t *testing.T, url string, headers map[string]string, version string) mcpGoRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The headers (the relay's client key) go on through the HTTP client's
	// RoundTripper: mcp-go v1.2.1 applies WithHTTPHeaders to POST and GET
	// but not to the DELETE that Close sends, which the relay would then
	// refuse with 401 before it could end the session.
	c := newMCPGoClient(t, url, headers, version)
	var run mcpGoRun
	var mu sync.Mutex
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method != "notifications/progress" {
			return
		}
		mu.Lock()
		run.events = append(run.events, fmt.Sprintf("progress:%v", n.Params.AdditionalFields["progress"]))
		mu.Unlock()
	})
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	init, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{
		ClientInfo: mcp.Implementation{Name: "sluice-e2e-mcp-go", Version: "1.0.0"},
	}})
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	run.protocol = init.ProtocolVersion
	tools, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("list tools: %v", err)
	}
	for _, tl := range tools.Tools {
		run.tools = append(run.tools, tl.Name)
	}
	var call mcp.CallToolRequest
	call.Params.Name = "progress"
	call.Params.Arguments = map[string]any{"steps": 3}
	call.Params.Meta = &mcp.Meta{ProgressToken: "sluice-e2e-progress"}
	res, err := c.CallTool(ctx, call)
	if err != nil {
		t.Fatalf("call progress: %v", err)
	}
	mu.Lock()
	run.events = append(run.events, "result")
	mu.Unlock()
	run.result = toolText(res)
	var echo mcp.CallToolRequest
	echo.Params.Name = "echo"
	echo.Params.Arguments = map[string]any{"message": "ünïcode ✓ 0"}
	res, err = c.CallTool(ctx, echo)
	if err != nil {
		t.Fatalf("call echo: %v", err)
	}
	run.echo = toolText(res)
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return run
}

func toolText(r *mcp.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// TestMCPGoClient runs the mcp-go client against an mcp-go server directly
// and through relay+agent, on the 2025-11-25 session protocol (with DELETE at
// the end) and on the 2026-07-28 stateless protocol (mcp-go's default), and
// expects the same observations both ways.
func TestMCPGoClient(t *testing.T) {
	for _, tc := range []struct {
		name     string
		version  string
		stateful bool
	}{
		{"2025-11-25 session", "2025-11-25", true},
		{"2026-07-28 stateless", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gs := startGoServer(t)
			h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: gs.url}}})
			te := h.tunnel(0)

			direct := runMCPGoClient(t, gs.url, nil, tc.version)
			directDeletes := len(gs.deleteStatuses())
			tunnel := runMCPGoClient(t, te.mcpURL, te.clientHeaders(), tc.version)
			deletes := gs.deleteStatuses()[directDeletes:]

			t.Logf("direct protocol %s, tunnel protocol %s; events %v; HTTP methods at server %v", direct.protocol, tunnel.protocol, tunnel.events, gs.allMethods())
			if tunnel.protocol != direct.protocol {
				t.Errorf("protocol through tunnel = %q, directly %q", tunnel.protocol, direct.protocol)
			}
			if tc.version != "" && tunnel.protocol != tc.version {
				t.Errorf("protocol = %q, want %q", tunnel.protocol, tc.version)
			}
			if got, want := strings.Join(tunnel.tools, ","), strings.Join(direct.tools, ","); got != want || got == "" {
				t.Errorf("tools through tunnel = %q, directly %q", got, want)
			}
			if got, want := strings.Join(tunnel.events, ","), strings.Join(direct.events, ","); got != want {
				t.Errorf("events through tunnel = %q, directly %q", got, want)
			}
			if tunnel.result != "done after 3 steps" {
				t.Errorf("progress result = %q", tunnel.result)
			}
			if tunnel.echo != "echo: ünïcode ✓ 0" {
				t.Errorf("echo = %q", tunnel.echo)
			}
			if tc.stateful {
				if got := strings.Join(tunnel.events, ","); got != "progress:1,progress:2,progress:3,result" {
					t.Errorf("events = %q, want three progress notifications before the result", got)
				}
				if len(deletes) != 1 || deletes[0] >= 300 {
					t.Errorf("DELETEs that reached the server through the tunnel: %v, want one 2xx", deletes)
				}
			}
		})
	}
}

func (gs *goServer) allMethods() []string {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return append([]string(nil), gs.methods...)
}

// headerTransport adds fixed headers to every request.
type headerTransport struct {
	headers map[string]string
	base    http.RoundTripper
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if len(h.headers) > 0 {
		r = r.Clone(r.Context())
		for k, v := range h.headers {
			r.Header.Set(k, v)
		}
	}
	return h.base.RoundTrip(r)
}

// newMCPGoClient returns an mcp-go Streamable HTTP client of url on version
// ("" = mcp-go's default, 2026-07-28), sending headers on every request.
func newMCPGoClient(t *testing.T, url string, headers map[string]string, version string) *client.Client {
	t.Helper()
	trans, err := transport.NewStreamableHTTP(url,
		transport.WithHTTPLogger(testLogger(t, "mcp-go-client")),
		transport.WithHTTPBasicClient(&http.Client{Transport: headerTransport{headers: headers, base: http.DefaultTransport}}))
	if err != nil {
		t.Fatalf("transport: %v", err)
	}
	var copts []client.ClientOption
	if version != "" {
		copts = append(copts, client.WithProtocolVersion(version))
	}
	return client.NewClient(trans, copts...)
}
