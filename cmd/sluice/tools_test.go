package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sluicemcp/sluice/plugins/toolguard"
)

// envStdioTools makes the test binary serve pinToolsServer over stdio
// (TestMain), for `sluice tools pin --command`.
const envStdioTools = "SLUICE_TEST_STDIO_TOOLS"

// pinToolsServer is an MCP server with tools whose definitions exercise
// the canonical form: escapes Go's encoder writes (<, >, &), nested
// schemas, annotations, and more tools than one page.
func pinToolsServer() *server.MCPServer {
	s := server.NewMCPServer("pin-test", "1.2.3", server.WithToolCapabilities(true), server.WithPaginationLimit(2))
	noop := func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("ok"), nil
	}
	s.AddTool(mcp.NewTool("echo", mcp.WithDescription("Echoes <text> & more."), mcp.WithString("message", mcp.Required())), noop)
	s.AddTool(mcp.NewTool("get_weather", mcp.WithDescription("Weather for a city."), mcp.WithString("city", mcp.Enum("Paris", "Zürich")),
		mcp.WithNumber("days", mcp.Min(1), mcp.Max(14)), mcp.WithReadOnlyHintAnnotation(true)), noop)
	s.AddTool(mcp.NewTool("delete_repo", mcp.WithDescription("Deletes a repository."), mcp.WithDestructiveHintAnnotation(true)), noop)
	return s
}

// serveStdioTools serves pinToolsServer on stdin/stdout.
func serveStdioTools() {
	_ = server.ServeStdio(pinToolsServer())
}

// rawToolPins lists url's tools with plain HTTP and pins each definition
// as served: what the pin command must print.
func rawToolPins(t *testing.T, url string) map[string]string {
	t.Helper()
	post := func(session, body string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer pin-token")
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
			req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if i := bytes.Index(b, []byte("data: ")); i >= 0 { // an SSE answer
			b = bytes.TrimSpace(b[i+6:])
		}
		return resp, b
	}
	resp, _ := post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	session := resp.Header.Get("Mcp-Session-Id")
	post(session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	pins := map[string]string{}
	cursor := ""
	for {
		params := `{}`
		if cursor != "" {
			params = `{"cursor":"` + cursor + `"}`
		}
		_, b := post(session, `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":`+params+`}`)
		var r struct {
			Result struct {
				Tools      []json.RawMessage `json:"tools"`
				NextCursor string            `json:"nextCursor"`
			} `json:"result"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("tools/list: %v\n%s", err, b)
		}
		for _, d := range r.Result.Tools {
			var n struct{ Name string }
			_ = json.Unmarshal(d, &n)
			h, err := toolguard.HashTool(d)
			if err != nil {
				t.Fatal(err)
			}
			pins[n.Name] = h
		}
		if r.Result.NextCursor == "" {
			return pins
		}
		cursor = r.Result.NextCursor
	}
}

// TestToolsPin: `sluice tools pin` prints the pins toolguard computes from
// the definitions as served, over HTTP (following pages, with a bearer
// token by reference) and over stdio, and refuses bad command lines.
func TestToolsPin(t *testing.T) {
	h := server.NewStreamableHTTPServer(pinToolsServer())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer pin-token" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	url := srv.URL + "/mcp"
	want := rawToolPins(t, url)
	if len(want) != 3 {
		t.Fatalf("the server lists %v", want)
	}

	env := map[string]string{"PIN_TOKEN": "pin-token"}
	code, stdout, stderr := runCLI(t, env, "tools", "pin", "--url", url, "--bearer", "env:PIN_TOKEN")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	doc, err := toolguard.ParsePins([]byte(stdout))
	if err != nil {
		t.Fatalf("output is not a pins document: %v\n%s", err, stdout)
	}
	if doc.Server == nil || doc.Server.Name != "pin-test" || doc.Server.Version != "1.2.3" {
		t.Errorf("server = %+v", doc.Server)
	}
	for name, pin := range want {
		if doc.Tools[name] != pin {
			t.Errorf("tool %s: pinned %s, served definition hashes to %s", name, doc.Tools[name], pin)
		}
	}
	if len(doc.Tools) != len(want) || strings.Contains(stdout+stderr, "pin-token") {
		t.Fatalf("pins %v; the token leaked? %s", doc.Tools, stderr)
	}

	// -o writes the file; the same document comes out of stdio.
	out := filepath.Join(t.TempDir(), "pins.json")
	if code, _, stderr := runCLI(t, env, "tools", "pin", "--url", url, "--bearer", "env:PIN_TOKEN", "-o", out); code != exitOK || !strings.Contains(stderr, "pinned 3 tool(s) of pin-test into "+out) {
		t.Fatalf("-o: exit %d: %s", code, stderr)
	}
	if b, _ := os.ReadFile(out); string(b) != stdout {
		t.Fatalf("file differs from stdout:\n%s", b)
	}
	self, _ := os.Executable()
	t.Setenv(envStdioTools, "1")
	code, stdio, stderr := runCLI(t, nil, "tools", "pin", "--command", self+" -test.run=^$")
	if code != exitOK || stdio != stdout {
		t.Fatalf("--command: exit %d: %s\n%s", code, stderr, stdio)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tools", "pin"}, exitConfig, "give exactly one of --url and --command"},
		{[]string{"tools", "pin", "--url", url, "--command", "x"}, exitConfig, "give exactly one"},
		{[]string{"tools", "pin", "--url", "ftp://x"}, exitConfig, "want an http:// or https:// URL"},
		{[]string{"tools", "pin", "--url", url, "--bearer", "pin-token"}, exitConfig, "a secret must be a reference"},
		{[]string{"tools", "pin", "--url", url, "--header", "Authorization: Bearer pin-token"}, exitConfig, "--bearer env:NAME"},
		{[]string{"tools", "pin", "--url", url}, exitFailure, "initialize"},
		{[]string{"tools", "frob"}, exitConfig, `unknown command "frob"`},
	} {
		code, _, stderr := runCLI(t, env, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "pin-token") && !strings.Contains(strings.Join(tc.args, " "), "pin-token") {
			t.Errorf("%v: exit %d, stderr %s", tc.args, code, stderr)
		}
	}
}
