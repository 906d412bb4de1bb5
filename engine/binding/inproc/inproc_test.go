package inproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/binding/bindingtest"
	"github.com/sluicemcp/sluice/engine/demo"
)

const legacy = "2025-11-25"

func do(t testing.TB, b binding.Binding, req *binding.Request, emit func(*binding.Reply)) []*binding.Reply {
	t.Helper()
	out, err := bindingtest.Collect(b, req, emit)
	if err != nil {
		t.Fatalf("do: %v", err)
	}
	return out
}

func call(id int, hdr http.Header, method, params string) *binding.Request {
	return &binding.Request{Kind: binding.KindJSONRPC, Header: hdr, ID: json.RawMessage(fmt.Sprint(id)),
		Body: json.RawMessage(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params))}
}

func initialize(t testing.TB, b binding.Binding) http.Header {
	t.Helper()
	r := do(t, b, call(0, http.Header{}, "initialize", `{"protocolVersion":"`+legacy+`","capabilities":{},"clientInfo":{"name":"t","version":"1"}}`), nil)
	sid := r[0].Header.Get("Mcp-Session-Id")
	if len(r) != 1 || r[0].Status != 200 || sid == "" {
		t.Fatalf("initialize: %+v", r)
	}
	h := http.Header{"Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {legacy}}
	n := do(t, b, &binding.Request{Kind: binding.KindJSONRPC, Header: h, Notification: true,
		Body: json.RawMessage(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)}, nil)
	if len(n) != 1 || n[0].Status != 202 || !n[0].Final {
		t.Fatalf("initialized: %+v", n)
	}
	return h
}

func TestDemoServer(t *testing.T) {
	b, err := New(demo.NewServer(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !b.Info().ProcAffinity {
		t.Fatal("inproc must report proc affinity")
	}
	h := initialize(t, b)
	tests := []struct {
		name      string
		params    string
		wantMsgs  int
		wantInRes string
	}{
		{"echo", `{"name":"echo","arguments":{"message":"hello inproc"}}`, 1, `"hello inproc"`},
		{"slow with progress", `{"name":"slow","arguments":{"steps":3,"delay_ms":5},"_meta":{"progressToken":"p"}}`, 4, `"done"`},
		{"large", `{"name":"large","arguments":{"kib":512}}`, 1, strings.Repeat("The quick brown fox", 1)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, b, call(i+1, h, "tools/call", tt.params), nil)
			if len(r) != tt.wantMsgs {
				t.Fatalf("got %d messages, want %d", len(r), tt.wantMsgs)
			}
			for j, m := range r[:len(r)-1] {
				if m.Final || !bytes.Contains(m.Body, []byte(`"notifications/progress"`)) {
					t.Fatalf("message %d: final=%v %s", j, m.Final, m.Body)
				}
			}
			last := r[len(r)-1]
			if !last.Final || !bytes.Contains(last.Body, []byte(tt.wantInRes)) {
				t.Fatalf("final=%v body %.200s", last.Final, last.Body)
			}
		})
	}
}

func TestProgressBeforeResult(t *testing.T) {
	release := make(chan struct{})
	s := server.NewMCPServer("t", "1", server.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("gated"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		err := server.ServerFromContext(ctx).SendNotificationToClient(ctx, "notifications/progress",
			map[string]any{"progressToken": req.Params.Meta.ProgressToken, "progress": 1})
		if err != nil {
			return nil, err
		}
		select {
		case <-release:
			return mcp.NewToolResultText("released"), nil
		case <-time.After(10 * time.Second):
			return mcp.NewToolResultText("not released"), nil
		}
	})
	b, err := New(s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h := initialize(t, b)
	r := do(t, b, call(5, h, "tools/call", `{"name":"gated","_meta":{"progressToken":1}}`), func(r *binding.Reply) {
		if !r.Final {
			close(release) // the server may finish only after we saw progress
		}
	})
	if len(r) != 2 || r[0].Final || !r[1].Final || !bytes.Contains(r[1].Body, []byte(`"released"`)) {
		t.Fatalf("replies: %d final=%v %s", len(r), r[len(r)-1].Final, r[len(r)-1].Body)
	}
}

func TestModernEra(t *testing.T) {
	b, err := New(demo.NewServer(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	body := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"message":"m"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}}}`
	r := do(t, b, &binding.Request{Kind: binding.KindJSONRPC, Body: json.RawMessage(body), ID: json.RawMessage(`9`),
		Header: http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {"echo"}}}, nil)
	if len(r) != 1 || r[0].Status != 200 || !bytes.Contains(r[0].Body, []byte(`"text":"m"`)) {
		t.Fatalf("replies: %+v %s", r, r[0].Body)
	}
}

func TestCancelStopsHandler(t *testing.T) {
	started := make(chan struct{})
	stopped := make(chan struct{})
	s := server.NewMCPServer("t", "1", server.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("block"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		close(started)
		<-ctx.Done()
		close(stopped)
		return nil, ctx.Err()
	})
	b, err := New(s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h := initialize(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	err = b.Do(ctx, call(1, h, "tools/call", `{"name":"block"}`), func(*binding.Reply) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("handler still running after cancel")
	}
}

func TestNewNil(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Fatal("nil server accepted")
	}
}

func BenchmarkEcho(b *testing.B) {
	bd, err := New(demo.NewServer(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer bd.Close()
	h := initialize(b, bd)
	req := call(1, h, "tools/call", `{"name":"echo","arguments":{"message":"`+strings.Repeat("x", 1024)+`"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := bd.Do(context.Background(), req, func(*binding.Reply) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
