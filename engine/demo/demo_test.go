package demo

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

func startClient(t *testing.T, url string, opts ...client.ClientOption) *client.Client {
	t.Helper()
	c, err := client.NewStreamableHttpClient(url)
	if err != nil {
		t.Fatal(err)
	}
	c = client.NewClient(c.GetTransport(), opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{
		ProtocolVersion: "2025-11-25",
		ClientInfo:      mcp.Implementation{Name: "demo-test", Version: "1"},
	}}); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return c
}

var _ transport.Interface = (*transport.StreamableHTTP)(nil)

func text(t *testing.T, r *mcp.CallToolResult) string {
	t.Helper()
	if r.IsError {
		t.Fatalf("tool error: %+v", r.Content)
	}
	if len(r.Content) != 1 {
		t.Fatalf("content = %d items, want 1", len(r.Content))
	}
	tc, ok := r.Content[0].(mcp.TextContent)
	if !ok {
		t.Fatalf("content %T, want text", r.Content[0])
	}
	return tc.Text
}

func TestTools(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, err := Serve(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	eras := []struct {
		name string
		opts []client.ClientOption
	}{
		{"2025-11-25", []client.ClientOption{client.WithProtocolVersion("2025-11-25")}},
		{"default", nil},
	}
	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			c := startClient(t, url, era.opts...)
			var progress atomic.Int32
			c.OnNotification(func(n mcp.JSONRPCNotification) {
				if n.Method == "notifications/progress" {
					progress.Add(1)
				}
			})
			call := func(name string, args map[string]any, meta *mcp.Meta) *mcp.CallToolResult {
				t.Helper()
				req := mcp.CallToolRequest{}
				req.Params.Name = name
				req.Params.Arguments = args
				req.Params.Meta = meta
				cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
				defer ccancel()
				r, err := c.CallTool(cctx, req)
				if err != nil {
					t.Fatalf("call %s: %v", name, err)
				}
				return r
			}
			t.Run("echo", func(t *testing.T) {
				if got := text(t, call("echo", map[string]any{"message": "héllo"}, nil)); got != "héllo" {
					t.Fatalf("echo = %q", got)
				}
			})
			t.Run("slow with progress", func(t *testing.T) {
				progress.Store(0)
				got := text(t, call("slow", map[string]any{"steps": 3, "delay_ms": 20}, &mcp.Meta{ProgressToken: "p1"}))
				if got != "done" {
					t.Fatalf("slow = %q", got)
				}
				// The client delivers notifications on its own goroutine.
				for i := 0; i < 200 && progress.Load() < 3; i++ {
					time.Sleep(10 * time.Millisecond)
				}
				if n := progress.Load(); n != 3 {
					t.Fatalf("progress notifications = %d, want 3", n)
				}
			})
			t.Run("slow without token", func(t *testing.T) {
				progress.Store(0)
				if got := text(t, call("slow", map[string]any{"steps": 2, "delay_ms": 0}, nil)); got != "done" {
					t.Fatalf("slow = %q", got)
				}
				if n := progress.Load(); n != 0 {
					t.Fatalf("progress notifications = %d, want 0", n)
				}
			})
			t.Run("slow rejects huge", func(t *testing.T) {
				if r := call("slow", map[string]any{"steps": 1e9}, nil); !r.IsError {
					t.Fatal("want a tool error")
				}
			})
			t.Run("large", func(t *testing.T) {
				for _, kib := range []int{0, 1, 300} {
					if got := text(t, call("large", map[string]any{"kib": kib}, nil)); len(got) != kib<<10 {
						t.Fatalf("large(%d) = %d bytes", kib, len(got))
					}
				}
				if got := text(t, call("large", nil, nil)); len(got) != 256<<10 {
					t.Fatalf("large default = %d bytes", len(got))
				}
			})
			t.Run("fake_secrets", func(t *testing.T) {
				got := text(t, call("fake_secrets", nil, nil))
				for _, want := range []string{"FAKE", "AKIA", "sk-", "eyJ", "ghp_", "Bearer ", "postgres://", "@example.com", "4242 4242 4242 4242", "GB82"} {
					if !strings.Contains(got, want) {
						t.Errorf("fake_secrets lacks %q", want)
					}
				}
			})
			t.Run("resource and prompt", func(t *testing.T) {
				rr := mcp.ReadResourceRequest{}
				rr.Params.URI = "demo://readme"
				res, err := c.ReadResource(ctx, rr)
				if err != nil || len(res.Contents) != 1 {
					t.Fatalf("read resource: %v %+v", err, res)
				}
				pr := mcp.GetPromptRequest{}
				pr.Params.Name = "greet"
				pr.Params.Arguments = map[string]string{"name": "Ada"}
				p, err := c.GetPrompt(ctx, pr)
				if err != nil || len(p.Messages) != 1 {
					t.Fatalf("get prompt: %v %+v", err, p)
				}
			})
		})
	}
}

func TestLuhnAndAWSShape(t *testing.T) {
	digits := "4242424242424242"
	sum := 0
	for i := range digits {
		d := int(digits[len(digits)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	if sum%10 != 0 {
		t.Fatal("test card is not Luhn-valid")
	}
	i := strings.Index(FakeSecrets, "AKIA")
	key := FakeSecrets[i : i+20]
	for _, r := range key[4:] {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			t.Fatalf("AWS key id %q has %q", key, r)
		}
	}
}

func TestServeStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	url, err := Serve(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := startClient(t, url, client.WithProtocolVersion("2025-11-25"))
	c.Close()
	cancel()
	c2, err := client.NewStreamableHttpClient(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for range 100 {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		_, err = c2.Initialize(cctx, mcp.InitializeRequest{})
		ccancel()
		if err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("server still answers after ctx ended")
}
