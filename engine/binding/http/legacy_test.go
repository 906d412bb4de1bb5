package httpbinding

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/binding/bindingtest"
	"github.com/sluicemcp/sluice/engine/wire"
)

// legacyServer is mcp-go's HTTP+SSE server (the deprecated 2024-11-05
// transport) with echo, progress and sleep tools.
func legacyServer(t *testing.T) (string, *server.SSEServer) {
	t.Helper()
	s := server.NewMCPServer("legacy", "1.0.0", server.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("echo", mcp.WithString("message")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("echo: " + req.GetString("message", "")), nil
	})
	s.AddTool(mcp.NewTool("progress", mcp.WithNumber("steps")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		steps := req.GetInt("steps", 3)
		var token mcp.ProgressToken
		if req.Params.Meta != nil {
			token = req.Params.Meta.ProgressToken
		}
		for i := 1; i <= steps && token != nil; i++ {
			if err := server.ServerFromContext(ctx).SendNotificationToClient(ctx, "notifications/progress",
				map[string]any{"progressToken": token, "progress": i, "total": steps}); err != nil {
				return nil, err
			}
			time.Sleep(10 * time.Millisecond)
		}
		return mcp.NewToolResultText(fmt.Sprintf("done after %d", steps)), nil
	})
	s.AddTool(mcp.NewTool("sleep", mcp.WithNumber("ms")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		select {
		case <-time.After(time.Duration(req.GetInt("ms", 100)) * time.Millisecond):
			return mcp.NewToolResultText("slept"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	var sse *server.SSEServer
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sse.ServeHTTP(w, r) }))
	sse = server.NewSSEServer(s, server.WithBaseURL(hs.URL))
	t.Cleanup(func() {
		sse.CloseSessions()
		hs.Close()
	})
	return hs.URL + "/sse", sse
}

func newLegacy(t *testing.T, url string) *LegacySSE {
	t.Helper()
	b, err := NewLegacySSE(LegacyConfig{URL: url}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func legacyRPC(id, method, params, session string) *binding.Request {
	r := &binding.Request{Kind: binding.KindJSONRPC, Header: http.Header{}}
	if session != "" {
		r.Header.Set("Mcp-Session-Id", session)
	}
	if params == "" {
		params = "{}"
	}
	if id == "" {
		r.Notification = true
		r.Body = json.RawMessage(`{"jsonrpc":"2.0","method":"` + method + `","params":` + params + `}`)
		return r
	}
	r.ID = json.RawMessage(id)
	r.Body = json.RawMessage(`{"jsonrpc":"2.0","id":` + id + `,"method":"` + method + `","params":` + params + `}`)
	return r
}

func collectAll(t *testing.T, b binding.Binding, req *binding.Request) []*binding.Reply {
	t.Helper()
	out, err := bindingtest.Collect(b, req, nil)
	if err != nil {
		t.Fatalf("%s: %v", req.Body, err)
	}
	if len(out) == 0 || !out[len(out)-1].Final {
		t.Fatalf("%s: no final reply", req.Body)
	}
	return out
}

const initParams = `{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}`

// TestLegacySession: initialize mints a session mapped to one SSE stream;
// requests of the session are answered on it with their own ids, progress
// arrives before the result, DELETE ends it, and a request for an unknown or
// ended session gets 404 (the client initializes again).
func TestLegacySession(t *testing.T) {
	url, _ := legacyServer(t)
	b := newLegacy(t, url)
	init := collectAll(t, b, legacyRPC(`"init-1"`, "initialize", initParams, ""))
	rep := init[len(init)-1]
	sid := rep.Header.Get("Mcp-Session-Id")
	if sid == "" || !strings.HasPrefix(string(rep.Body), `{"jsonrpc":"2.0","id":"init-1","result":`) || !strings.Contains(string(rep.Body), `"name":"legacy"`) {
		t.Fatalf("initialize: session %q, %s", sid, rep.Body)
	}
	if rs := collectAll(t, b, legacyRPC("", "notifications/initialized", "", sid)); rs[0].Status != http.StatusAccepted {
		t.Fatalf("initialized: %d", rs[0].Status)
	}
	rs := collectAll(t, b, legacyRPC(`0`, "tools/call", `{"name":"echo","arguments":{"message":"hi"}}`, sid))
	if got := string(rs[0].Body); !strings.HasPrefix(got, `{"jsonrpc":"2.0","id":0,"result":`) || !strings.Contains(got, "echo: hi") {
		t.Fatalf("echo: %s", got)
	}
	rs = collectAll(t, b, legacyRPC(`"p"`, "tools/call", `{"name":"progress","arguments":{"steps":3},"_meta":{"progressToken":"tok"}}`, sid))
	if len(rs) != 4 {
		t.Fatalf("progress: %d replies", len(rs))
	}
	for i, n := range rs[:3] {
		if n.Final || !strings.Contains(string(n.Body), fmt.Sprintf(`"progress":%d`, i+1)) || !strings.Contains(string(n.Body), `"progressToken":"tok"`) {
			t.Fatalf("notification %d: %s", i, n.Body)
		}
	}
	if final := rs[3]; !strings.Contains(string(final.Body), `"id":"p"`) || final.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("progress result: %s %v", final.Body, final.Header)
	}
	end := collectAll(t, b, &binding.Request{Kind: binding.KindSessionTermination, Header: http.Header{"Mcp-Session-Id": {sid}}})
	if end[0].Status != http.StatusOK {
		t.Fatalf("DELETE: %d", end[0].Status)
	}
	for _, s := range []string{sid, "never-minted"} {
		rs := collectAll(t, b, legacyRPC(`1`, "tools/list", "", s))
		if rs[0].Status != http.StatusNotFound {
			t.Fatalf("session %s: status %d", s, rs[0].Status)
		}
	}
}

// TestLegacySharedSession: requests without a session (2026-07-28 clients)
// share a stream the binding initialized itself; concurrent calls with the
// same client id each get their own answer.
func TestLegacySharedSession(t *testing.T) {
	url, _ := legacyServer(t)
	b := newLegacy(t, url)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("m%d", i)
			out, err := bindingtest.Collect(b, legacyRPC(`1`, "tools/call", `{"name":"echo","arguments":{"message":"`+msg+`"}}`, ""), nil)
			if err != nil {
				errs <- err
				return
			}
			if got := string(out[len(out)-1].Body); !strings.Contains(got, `"id":1,`) || !strings.Contains(got, "echo: "+msg) {
				errs <- fmt.Errorf("call %d got %s", i, got)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if rs := collectAll(t, b, legacyRPC(`2`, "server/discover", "", "")); !strings.Contains(string(rs[0].Body), `"code":-32601`) {
		t.Fatalf("a 2026-07-28 probe must get the old server's own answer: %s", rs[0].Body)
	}
}

// TestLegacyStreamEnds: when the server drops the stream, a call waiting on
// it fails as transport_closed and the session is gone (404).
func TestLegacyStreamEnds(t *testing.T) {
	url, sse := legacyServer(t)
	b := newLegacy(t, url)
	rep := collectAll(t, b, legacyRPC(`1`, "initialize", initParams, ""))
	sid := rep[0].Header.Get("Mcp-Session-Id")
	done := make(chan error, 1)
	go func() {
		_, err := bindingtest.Collect(b, legacyRPC(`2`, "tools/call", `{"name":"sleep","arguments":{"ms":5000}}`, sid), nil)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	sse.CloseSessions()
	select {
	case err := <-done:
		var be *binding.Error
		if !errors.As(err, &be) || be.Source != wire.SourceTransportClosed {
			t.Fatalf("err = %v, want transport_closed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not end with the stream")
	}
	if rs := collectAll(t, b, legacyRPC(`3`, "tools/list", "", sid)); rs[0].Status != http.StatusNotFound {
		t.Fatalf("after the stream ended: %d", rs[0].Status)
	}
}

func TestLegacyRefusesEndpointElsewhere(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = fmt.Fprintf(w, "event: endpoint\ndata: http://elsewhere.invalid/message\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	b := newLegacy(t, srv.URL+"/sse")
	_, err := bindingtest.Collect(b, legacyRPC(`1`, "initialize", initParams, ""), nil)
	if err == nil || !strings.Contains(err.Error(), "another origin") {
		t.Fatalf("err = %v", err)
	}
}

func TestReplaceID(t *testing.T) {
	for _, tc := range []struct{ in, id, want string }{
		{`{"jsonrpc":"2.0","id":1,"result":{}}`, `"x"`, `{"jsonrpc":"2.0","id":"x","result":{}}`},
		{`{"id" : "a,}" , "method":"m"}`, `7`, `{"id" : 7 , "method":"m"}`},
		{`{"result":{"id":9},"id":[1]}`, `2`, `{"result":{"id":9},"id":2}`},
	} {
		got, err := replaceID([]byte(tc.in), []byte(tc.id))
		if err != nil || string(got) != tc.want {
			t.Errorf("replaceID(%s, %s) = %s, %v; want %s", tc.in, tc.id, got, err, tc.want)
		}
	}
	if _, err := replaceID([]byte(`{"result":{}}`), []byte(`1`)); err == nil {
		t.Error("a message without id")
	}
	got, err := replaceID([]byte(`{"\u0069d":1,"result":{}}`), []byte(`5`))
	if err != nil || !bytes.Contains(got, []byte(`"id":5`)) {
		t.Errorf("escaped member name: %s %v", got, err)
	}
}

// FuzzReplaceID: whatever a server sends, replaceID either fails or returns
// valid JSON whose id is the new one.
func FuzzReplaceID(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"result":{"id":2}}`))
	f.Add([]byte(`{"id":"a\"b","error":{"code":1}}`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		out, err := replaceID(msg, []byte(`"sluice"`))
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s -> %s: %v", msg, out, err)
		}
		if string(m["id"]) != `"sluice"` && !bytes.Contains(out, []byte(`"id":"sluice"`)) {
			t.Fatalf("%s -> %s: id not replaced", msg, out)
		}
	})
}
