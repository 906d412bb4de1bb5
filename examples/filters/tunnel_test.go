package filters

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/agent"
	"github.com/sluicemcp/sluice/engine/binding"
	httpbinding "github.com/sluicemcp/sluice/engine/binding/http"
	"github.com/sluicemcp/sluice/engine/relay"
)

// mcpServer is a real MCP server (mcp-go, Streamable HTTP on 127.0.0.1)
// that records the tag header of every request it receives, by method.
type mcpServer struct {
	url     string
	deletes atomic.Int64

	mu   sync.Mutex
	tags map[string][]string // JSON-RPC method → X-Sluice-Tag values seen
}

const lookupDescription = "Finds an account by its id, such as ACCT-0000."

func newMCPServer(t *testing.T) *mcpServer {
	t.Helper()
	ms := &mcpServer{tags: map[string][]string{}}
	s := server.NewMCPServer("filters-test", "1.0.0", server.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("lookup", mcp.WithDescription(lookupDescription), mcp.WithString("id")),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("account ACCT-1234 belongs to ops; ticket ACCT-12x4 is not an account"), nil
		})
	s.AddTool(mcp.NewTool("delete_file", mcp.WithDescription("Deletes a file."), mcp.WithString("path")),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			ms.deletes.Add(1)
			return mcp.NewToolResultText("deleted"), nil
		})
	h := server.NewStreamableHTTPServer(s)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var m struct {
			Method string `json:"method"`
		}
		if json.Unmarshal(body, &m) == nil && m.Method != "" {
			ms.mu.Lock()
			ms.tags[m.Method] = append(ms.tags[m.Method], r.Header.Get(TagHeader))
			ms.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	ms.url = ts.URL + "/mcp"
	return ms
}

// lastTag returns the tag header of the last request of method, and
// whether there was one.
func (ms *mcpServer) lastTag(method string) (string, bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	l := ms.tags[method]
	if len(l) == 0 {
		return "", false
	}
	return l[len(l)-1], true
}

// tunnel is a relay and an agent in this process on 127.0.0.1, the agent's
// pipeline swappable.
type tunnel struct {
	mcpURL, clientKey string
	pipeline          *engine.Pipeline
}

func startTunnel(t *testing.T, serverURL string) *tunnel {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	id, rk, ck := relay.NewTunnelID(), relay.NewKey("sk-sluice-rt-"), relay.NewKey("sk-sluice-cl-")
	r, err := relay.New(relay.Config{
		ListenAddr: ln.Addr().String(), PublicURL: base, MaxPollWait: 5 * time.Second,
		Tunnels: []relay.Tunnel{{ID: id, Name: "filters", RuntimeKey: rk, ClientKeys: []relay.ClientKey{{Name: "test", Key: ck}}}},
	}, relay.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() { rdone <- r.Serve(rctx, ln) }()

	b, err := httpbinding.New(httpbinding.Config{URL: serverURL}, httpbinding.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := engine.NewPipeline(engine.NewChain(nil, engine.ChainOptions{}))
	a, err := agent.New(agent.Config{BaseURL: base, TunnelID: id, APIKey: rk, PollTimeout: 2 * time.Second, ShutdownGrace: 2 * time.Second, ClientVersion: "1.0.0"},
		agent.Options{Bindings: map[string]binding.Binding{"main": b}, Pipeline: p})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan error, 1)
	go func() { adone <- a.Run(actx) }()
	t.Cleanup(func() {
		acancel()
		if err := <-adone; err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("agent: %v", err)
		}
		_ = b.Close()
		rcancel()
		<-rdone
		_ = p.Close()
	})
	tn := &tunnel{mcpURL: base + "/v1/mcp/" + id, clientKey: ck, pipeline: p}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Anything but 503 (agent not connected) means the request reached
		// the MCP server (which answers a ping without a session 4xx).
		st, _, _ := tn.post(t, "", `{"jsonrpc":"2.0","id":"probe","method":"ping"}`)
		if st != 0 && st != http.StatusServiceUnavailable {
			return tn
		}
		if time.Now().After(deadline) {
			t.Fatalf("tunnel did not serve within 30s (last status %d)", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// post sends one JSON-RPC message through the tunnel as an MCP client and
// returns the status, the session id and the decoded answer.
func (tn *tunnel) post(t *testing.T, session, body string) (int, string, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tn.mcpURL, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tn.clientKey)
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("event:")) || bytes.HasPrefix(bytes.TrimSpace(b), []byte("data:")) {
		for _, line := range strings.Split(string(b), "\n") {
			if d, ok := strings.CutPrefix(line, "data:"); ok {
				_ = json.Unmarshal([]byte(strings.TrimSpace(d)), &m)
			}
		}
	} else if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("POST %s: HTTP %d, body not JSON: %s", body, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), m
}

// TestFiltersThroughTunnel loads each example filter into the real host as
// the agent's pipeline (swapped in live, one language after the other) and
// drives real MCP traffic through relay and agent to an mcp-go server:
// tools/list and an allowed tools/call reach the server tagged and come back
// masked; a blocked tools/call never reaches it.
func TestFiltersThroughTunnel(t *testing.T) {
	srv := newMCPServer(t)
	tn := startTunnel(t, srv.url)
	rt := newRuntime(t)
	for _, l := range Langs {
		t.Run(l.Name, func(t *testing.T) {
			st, err := loadFilter(t, rt, l.Name, config(l.Name))
			if err != nil {
				t.Fatal(err)
			}
			if err := tn.pipeline.Swap(engine.NewChain([]engine.ChainStage{st.ChainStage()}, engine.ChainOptions{}), 5*time.Second); err != nil {
				t.Fatal(err)
			}
			tag := l.Name + "-filter"

			code, session, _ := tn.post(t, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"filters-test","version":"1"}}}`)
			if code != http.StatusOK || session == "" {
				t.Fatalf("initialize: HTTP %d, session %q", code, session)
			}
			tn.post(t, session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
			if got, _ := srv.lastTag("initialize"); got != tag {
				t.Errorf("initialize reached the server with tag %q, want %q", got, tag)
			}

			// tools/list: tagged on the way in, the description masked on the way out.
			code, _, m := tn.post(t, session, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
			if got, _ := srv.lastTag("tools/list"); code != http.StatusOK || got != tag {
				t.Fatalf("tools/list: HTTP %d, server saw tag %q, want %q", code, got, tag)
			}
			descs := map[string]string{}
			tools, _ := m["result"].(map[string]any)["tools"].([]any)
			for _, x := range tools {
				tool, _ := x.(map[string]any)
				name, _ := tool["name"].(string)
				descs[name], _ = tool["description"].(string)
			}
			if want := strings.Replace(lookupDescription, "ACCT-0000", "*********", 1); descs["lookup"] != want {
				t.Fatalf("tools/list lookup description %q, want %q (all %v)", descs["lookup"], want, m)
			}

			// An allowed tools/call: tagged, and its result masked.
			code, _, m = tn.post(t, session, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"lookup","arguments":{"id":"ACCT-1234"}}}`)
			if got, _ := srv.lastTag("tools/call"); code != http.StatusOK || got != tag {
				t.Fatalf("tools/call lookup: HTTP %d, server saw tag %q, want %q", code, got, tag)
			}
			content, _ := m["result"].(map[string]any)["content"].([]any)
			var text string
			if len(content) == 1 {
				text, _ = content[0].(map[string]any)["text"].(string)
			}
			if want := "account ********* belongs to ops; ticket ACCT-12x4 is not an account"; text != want {
				t.Fatalf("tools/call lookup result %q, want %q (%v)", text, want, m)
			}

			// A blocked tools/call: a JSON-RPC error, and the server never sees it.
			before := srv.deletes.Load()
			code, _, m = tn.post(t, session, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/etc/passwd"}}}`)
			e, _ := m["error"].(map[string]any)
			if code != http.StatusOK || e["code"] != float64(-32001) || e["message"] != "tool blocked by policy" || m["id"] != float64(3) {
				t.Fatalf("blocked tools/call: HTTP %d %v", code, m)
			}
			if srv.deletes.Load() != before {
				t.Fatal("the blocked tool reached the MCP server")
			}
		})
	}
}
