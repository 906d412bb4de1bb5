package demo

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// Name and Version identify the demo server in initialize results.
const (
	Name    = "sluice-demo"
	Version = "0.1.0"
)

// Path is the endpoint path Serve mounts the server on.
const Path = "/mcp"

// Limits of the tool arguments, so a demo call cannot exhaust the process.
const (
	maxSteps   = 1000
	maxDelayMS = 60_000
	maxKiB     = 64 << 10 // 64 MiB
)

// FakeSecrets is the text the fake_secrets tool returns: realistic-looking
// credentials and personal data that are all fake, for the redaction demo.
const FakeSecrets = `FAKE DATA FOR THE SLUICE REDACTION DEMO - none of these values is real.
aws_access_key_id: AKIAIOSFODNN7EXAMPLE
aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
openai_api_key: sk-proj-FAKEfake0123456789abcdefABCDEF0123456789xyz
jwt: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkZha2UgVXNlciIsImlhdCI6MTUxNjIzOTAyMn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c
github_token: ghp_FAKE0123456789abcdefghijklmnopqrstuv
authorization: Bearer fake-bearer-token-0123456789abcdef
database_url: postgres://app_user:S3cr3t-Fake-Passw0rd@db.internal.example:5432/orders?sslmode=require
email: jane.doe@example.com
phone: +1 415 555 0142
card: 4242 4242 4242 4242 (Luhn-valid test card, exp 12/34, cvc 123)
iban: GB82 WEST 1234 5698 7654 32
`

// NewServer returns the demo MCP server with its tools (echo, slow, large,
// fake_secrets), a resource (demo://readme) and a prompt (greet).
func NewServer() *server.MCPServer {
	s := server.NewMCPServer(Name, Version,
		server.WithToolCapabilities(false),
		server.WithResourceCapabilities(false, false),
		server.WithPromptCapabilities(false),
	)
	s.AddTool(mcp.NewTool("echo",
		mcp.WithDescription("Returns its message argument."),
		mcp.WithString("message", mcp.Required(), mcp.Description("The text to echo.")),
	), echo)
	s.AddTool(mcp.NewTool("slow",
		mcp.WithDescription("Sends a progress notification per step (when the call has a progressToken), then returns \"done\"."),
		mcp.WithNumber("steps", mcp.Description("Number of steps (default 5)."), mcp.DefaultNumber(5)),
		mcp.WithNumber("delay_ms", mcp.Description("Delay per step in milliseconds (default 200)."), mcp.DefaultNumber(200)),
	), slow)
	s.AddTool(mcp.NewTool("large",
		mcp.WithDescription("Returns kib KiB of text."),
		mcp.WithNumber("kib", mcp.Description("Size of the result in KiB (default 256)."), mcp.DefaultNumber(256)),
	), large)
	s.AddTool(mcp.NewTool("fake_secrets",
		mcp.WithDescription("Returns a bundle of FAKE credentials and personal data for the redaction demo."),
	), fakeSecrets)
	s.AddResource(mcp.NewResource("demo://readme", "readme",
		mcp.WithResourceDescription("What this demo server is."),
		mcp.WithMIMEType("text/plain"),
	), func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		return []mcp.ResourceContents{mcp.TextResourceContents{
			URI: "demo://readme", MIMEType: "text/plain",
			Text: "This is the Sluice demo MCP server. Try the echo, slow, large and fake_secrets tools.",
		}}, nil
	})
	s.AddPrompt(mcp.NewPrompt("greet",
		mcp.WithPromptDescription("Greets someone by name."),
		mcp.WithArgument("name", mcp.RequiredArgument(), mcp.ArgumentDescription("Who to greet.")),
	), func(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		name := req.Params.Arguments["name"]
		return mcp.NewGetPromptResult("A greeting", []mcp.PromptMessage{
			mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("Say hello to "+name+".")),
		}), nil
	})
	return s
}

func echo(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	msg, err := req.RequireString("message")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	return mcp.NewToolResultText(msg), nil
}

func slow(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	steps := req.GetInt("steps", 5)
	delay := req.GetInt("delay_ms", 200)
	if steps < 0 || steps > maxSteps || delay < 0 || delay > maxDelayMS {
		return mcp.NewToolResultError(fmt.Sprintf("steps must be 0..%d and delay_ms 0..%d", maxSteps, maxDelayMS)), nil
	}
	var token mcp.ProgressToken
	if req.Params.Meta != nil {
		token = req.Params.Meta.ProgressToken
	}
	srv := server.ServerFromContext(ctx)
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	// Each step reports its progress first and then waits, so the last
	// notification is never racing the final response (mcp-go v1.2.1 can drop
	// a notification sent just before the handler returns).
	for i := 1; i <= steps; i++ {
		if token != nil && srv != nil {
			err := srv.SendNotificationToClient(ctx, "notifications/progress", map[string]any{
				"progressToken": token,
				"progress":      i,
				"total":         steps,
				"message":       fmt.Sprintf("step %d of %d", i, steps),
			})
			if err != nil {
				return nil, fmt.Errorf("slow: send progress: %w", err)
			}
		}
		t.Reset(time.Duration(delay) * time.Millisecond)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	return mcp.NewToolResultText("done"), nil
}

func large(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	kib := req.GetInt("kib", 256)
	if kib < 0 || kib > maxKiB {
		return mcp.NewToolResultError(fmt.Sprintf("kib must be 0..%d", maxKiB)), nil
	}
	const line = "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghij\n" // 67 bytes
	var b strings.Builder
	n := kib << 10
	b.Grow(n)
	for b.Len()+len(line) <= n {
		b.WriteString(line)
	}
	b.WriteString(strings.Repeat(".", n-b.Len()))
	return mcp.NewToolResultText(b.String()), nil
}

func fakeSecrets(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	return mcp.NewToolResultText(FakeSecrets), nil
}

// Handler returns the demo server as a Streamable HTTP handler on Path. The
// handler keeps mcp-go's DNS-rebinding protection on.
func Handler(logger *slog.Logger) *server.StreamableHTTPServer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return server.NewStreamableHTTPServer(NewServer(),
		server.WithEndpointPath(Path),
		server.WithStreamableHTTPLogger(logger),
	)
}

// Serve starts the demo server as Streamable HTTP on addr (for example
// 127.0.0.1:0) under Path and returns its URL. It stops when ctx ends.
func Serve(ctx context.Context, addr string) (string, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("demo: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, Handler(nil))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		// Serve returns ErrServerClosed after Shutdown; any other error means
		// the listener failed, which clients see as refused connections.
		_ = srv.Serve(ln)
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close() // long streams did not end in time
		}
	}()
	return "http://" + ln.Addr().String() + Path, nil
}
