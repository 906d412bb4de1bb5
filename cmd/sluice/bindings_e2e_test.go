package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sluicemcp/sluice/engine/enginetest"
)

// builtExamples are the example plugins built by this test binary.
var builtExamples = enginetest.Builds{Prefix: "sluice-examples-"}

// TestMain removes the example plugins the tests built. With
// SLUICE_TEST_STDIO_TOOLS set, the test binary is a stdio MCP server
// instead (tools_test.go).
func TestMain(m *testing.M) {
	if os.Getenv(envStdioTools) != "" {
		serveStdioTools()
		os.Exit(0)
	}
	os.Exit(builtExamples.Run(m))
}

// buildExample builds the binding plugin examples/<name> (its own module)
// with its build.sh, which vets and unit-tests it natively first, once per
// test binary. The Go build cache, outside the clone, makes it quick after
// the first time. Skipped in -short mode.
func buildExample(t *testing.T, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a Wasm example")
	}
	return builtExamples.Path(t, name+".wasm", func(out string) *exec.Cmd {
		return exec.Command("sh", filepath.Join("..", "..", "examples", name, "build.sh"), out)
	})
}

// startDevConfig runs `sluice dev` with the YAML config file and the
// environment env, and returns once it is ready.
func startDevConfig(t *testing.T, yaml string, env map[string]string) (devInfo, *enginetest.SyncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	info, logs, _ := startDevEnv(t, path, env)
	return info, logs
}

// bindingClient is an mcp-go client of the tunnel, on version ("" = mcp-go's
// default, 2026-07-28), recording progress notifications.
type bindingClient struct {
	c        *client.Client
	protocol string
	mu       sync.Mutex
	events   []string
}

func newBindingClient(t *testing.T, url, key, version string) *bindingClient {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(url, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + key}))
	if err != nil {
		t.Fatal(err)
	}
	var opts []client.ClientOption
	if version != "" {
		opts = append(opts, client.WithProtocolVersion(version))
	}
	bc := &bindingClient{c: client.NewClient(tr, opts...)}
	bc.c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/progress" {
			bc.mu.Lock()
			bc.events = append(bc.events, fmt.Sprintf("progress:%v", n.Params.AdditionalFields["message"]))
			bc.mu.Unlock()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := bc.c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bc.c.Close() })
	res, err := bc.c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{ClientInfo: mcp.Implementation{Name: "sluice-binding-test", Version: "1"}}})
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	bc.protocol = res.ProtocolVersion
	return bc
}

func (bc *bindingClient) tools(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := bc.c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	return names
}

// call calls a tool (asking for progress) and returns its text, whether it
// is an error result and its structured content.
func (bc *bindingClient) call(t *testing.T, name string, args map[string]any) (string, bool, any) {
	t.Helper()
	text, isErr, structured, err := bc.try(name, args)
	if err != nil {
		t.Fatalf("tools/call %s: %v", name, err)
	}
	return text, isErr, structured
}

// try is call for any goroutine: it reports a failed call as an error.
func (bc *bindingClient) try(name string, args map[string]any) (string, bool, any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var req mcp.CallToolRequest
	req.Params.Name, req.Params.Arguments = name, args
	req.Params.Meta = &mcp.Meta{ProgressToken: "sluice-binding-progress"}
	res, err := bc.c.CallTool(ctx, req)
	if err != nil {
		return "", false, nil, err
	}
	bc.mu.Lock()
	bc.events = append(bc.events, "result")
	bc.mu.Unlock()
	var text []string
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			text = append(text, tc.Text)
		}
	}
	return strings.Join(text, "\n"), res.IsError, res.StructuredContent, nil
}

func (bc *bindingClient) takeEvents() string {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	s := strings.Join(bc.events, ",")
	bc.events = nil
	return s
}

// todoAPI is the REST API behind the REST binding: it wants the operator's
// token, which only the host adds.
func todoAPI(t *testing.T, token string) (*httptest.Server, *[]string) {
	var mu sync.Mutex
	var auth []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /todos/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "1" {
			http.Error(w, `{"error":"no such todo"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":1,"title":"ship the binding","done":false}`)
	})
	mux.HandleFunc("POST /todos", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &auth
}

func restBindingConfig(wasm, api string) string {
	return `pipeline: []
mcp:
  bindings:
    - channel: main
      wasm:
        path: ` + wasm + `
        config:
          base-url: ` + api + `
          tools:
            - {name: get_todo, description: "Get a todo", path: "/todos/{id}", params: {id: {type: integer, required: true}}}
            - {name: add_todo, method: POST, path: /todos, params: {title: {type: string, required: true}}}
        http:
          allowed-hosts: ["` + api + `"]
          headers:
            - {origin: "` + api + `", name: Authorization, value: "env:TODO_TOKEN"}
`
}

// TestRESTBindingEndToEnd: the rest-binding example, configured in
// mcp.bindings, turns a local REST API into MCP tools behind relay + agent
// (`sluice dev`): tools/list from its config, tools/call as HTTP requests
// carrying the operator's secret header (never the plugin's, never logged),
// progress before the result, an HTTP error as a tool error — for mcp-go
// clients of both protocol eras and the TypeScript SDK client.
func TestRESTBindingEndToEnd(t *testing.T) {
	const token = "todo-token-0123456789"
	wasm := buildExample(t, "rest-binding")
	api, auth := todoAPI(t, token)
	info, logs := startDevConfig(t, restBindingConfig(wasm, api.URL), map[string]string{"TODO_TOKEN": "Bearer " + token})
	if !strings.Contains(info.ServerURL, "wasm binding plugin") {
		t.Errorf("dev banner server: %q", info.ServerURL)
	}
	for _, version := range []string{"2025-11-25", ""} {
		t.Run("mcp-go version="+version, func(t *testing.T) {
			c := newBindingClient(t, info.MCPURL, info.Key, version)
			if want := map[string]string{"2025-11-25": "2025-11-25", "": "2026-07-28"}[version]; c.protocol != want {
				t.Errorf("protocol %q, want %q", c.protocol, want)
			}
			if got := strings.Join(c.tools(t), ","); got != "get_todo,add_todo" {
				t.Fatalf("tools: %s", got)
			}
			text, isErr, structured := c.call(t, "get_todo", map[string]any{"id": 1})
			if isErr || !strings.Contains(text, `"title":"ship the binding"`) || structured == nil {
				t.Fatalf("get_todo: %q %v %v", text, isErr, structured)
			}
			if got := c.takeEvents(); got != "progress:GET /todos/1,progress:HTTP 200,result" {
				t.Errorf("events = %q, want the two progress notifications before the result", got)
			}
			text, isErr, _ = c.call(t, "get_todo", map[string]any{"id": 2})
			if !isErr || !strings.Contains(text, "HTTP 404") {
				t.Fatalf("a missing todo: %q %v", text, isErr)
			}
			text, isErr, _ = c.call(t, "add_todo", map[string]any{"title": "ünï ✓"})
			if isErr || text != `{"title":"ünï ✓"}` {
				t.Fatalf("add_todo: %q %v", text, isErr)
			}
		})
	}
	t.Run("typescript", func(t *testing.T) {
		enginetest.RequireFiles(t, filepath.Join(enginetest.TSSDKDir(), "package.json"))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		script, _ := filepath.Abs(filepath.Join("testdata", "ts-binding-client.mjs"))
		stdout, err := enginetest.RunNode(t, ctx, enginetest.Node20(t), []string{"MCP_URL=" + info.MCPURL, "MCP_KEY=" + info.Key,
			"MCP_SDK_DIR=" + enginetest.TSSDKDir(), "TOOL=get_todo", `ARGS={"id":1}`}, script)
		var out struct {
			OK                bool
			Error, ServerName string
			ProtocolVersion   string `json:"protocolVersion"`
			Tools, Events     []string
			Text              string
			IsError           bool `json:"isError"`
			Structured        map[string]any
		}
		if jerr := json.Unmarshal(stdout, &out); jerr != nil || !out.OK {
			t.Fatalf("ts client (exit %v): %v %s", err, jerr, stdout)
		}
		if out.ServerName != "rest-binding" || out.ProtocolVersion == "" || strings.Join(out.Tools, ",") != "get_todo,add_todo" {
			t.Errorf("server %q, protocol %q, tools %v", out.ServerName, out.ProtocolVersion, out.Tools)
		}
		if out.IsError || out.Structured["title"] != "ship the binding" {
			t.Errorf("get_todo: %q %v", out.Text, out.Structured)
		}
		if got := strings.Join(out.Events, ","); got != "progress:0/1,progress:1/1,result" {
			t.Errorf("events = %q", got)
		}
	})
	for _, a := range *auth {
		if a != "Bearer "+token {
			t.Errorf("the API saw Authorization %q", a)
		}
	}
	if strings.Contains(logs.String(), token) {
		t.Error("the operator's secret appears in the logs")
	}
}

// TestCLIBindingEndToEnd: the cli-binding example exposes bc (a line
// command the host keeps running) and wc (a run command) as MCP tools
// behind relay + agent; a program's error is a tool error, and a command the
// config does not give the plugin is refused while the channel keeps serving.
func TestCLIBindingEndToEnd(t *testing.T) {
	for _, prog := range []string{"bc", "wc"} {
		if _, err := exec.LookPath(prog); err != nil {
			enginetest.Missing(t, prog+" not found (apt-get install -y bc)")
		}
	}
	wasm := buildExample(t, "cli-binding")
	config := func(commands string) string {
		return "pipeline: []\nmcp:\n  bindings:\n    - channel: main\n      wasm:\n        path: " + wasm + "\n        commands:\n" + commands
	}
	const calc = `          - {name: calc, command: "bc -lq", merge-stderr: true, env: ["BC_LINE_LENGTH=0"], timeout: 5s}` + "\n"
	const count = "          - {name: count, command: wc, mode: run}\n"
	info, _ := startDevConfig(t, config(calc+count), nil)
	for _, version := range []string{"2025-11-25", ""} {
		t.Run("version="+version, func(t *testing.T) {
			c := newBindingClient(t, info.MCPURL, info.Key, version)
			if got := strings.Join(c.tools(t), ","); got != "calculate,count_words" {
				t.Fatalf("tools: %s", got)
			}
			for _, tc := range []struct {
				expr, want string
				isErr      bool
			}{
				{"2^100", "1267650600228229401496703205376", false},
				{"scale=2", "unsupported character =", true},
				{"1/0", "Divide by zero", true},
				{"sqrt(2)", "1.41421356237309504880", false},
			} {
				text, isErr, _ := c.call(t, "calculate", map[string]any{"expression": tc.expr})
				if isErr != tc.isErr || !strings.Contains(text, tc.want) {
					t.Errorf("calculate %s = %q (error %v), want %q", tc.expr, text, isErr, tc.want)
				}
			}
			text, isErr, structured := c.call(t, "count_words", map[string]any{"text": "one two three\nfour five\n"})
			if isErr || text != `{"lines":2,"words":5,"bytes":24}` || structured == nil {
				t.Errorf("count_words: %q %v", text, isErr)
			}
		})
	}
	t.Run("a command the config does not give", func(t *testing.T) {
		info, _ := startDevConfig(t, config(calc), nil)
		c := newBindingClient(t, info.MCPURL, info.Key, "")
		text, isErr, _ := c.call(t, "count_words", map[string]any{"text": "a b"})
		if !isErr || !strings.Contains(text, `no command "count"`) {
			t.Errorf("count_words without its command: %q %v", text, isErr)
		}
		if text, _, _ := c.call(t, "calculate", map[string]any{"expression": "6*7"}); text != "42" {
			t.Errorf("after a refusal: %q", text)
		}
	})
}

// TestBindingReloadKeepsInFlightCalls: a config change reloads the binding
// plugin (new tools appear at once) while a call that started on the old
// one finishes on it, successfully.
func TestBindingReloadKeepsInFlightCalls(t *testing.T) {
	wasm := buildExample(t, "rest-binding")
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "answered "+r.URL.Path)
	}))
	defer api.Close()
	write := func(path string, tools ...string) {
		var sb strings.Builder
		sb.WriteString("pipeline: []\nmcp:\n  bindings:\n    - channel: main\n      wasm:\n        path: " + wasm + "\n        config:\n          base-url: " + api.URL + "\n          tools:\n")
		for _, tl := range tools {
			sb.WriteString("            - {name: " + tl + ", path: /" + tl + "}\n")
		}
		sb.WriteString("        http: {allowed-hosts: [\"" + api.URL + "\"]}\n")
		if err := os.WriteFile(path+".tmp", []byte(sb.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write(path, "slow")
	info, logs, reload := startDevEnv(t, path, nil)
	c := newBindingClient(t, info.MCPURL, info.Key, "")
	done := make(chan string, 1)
	go func() {
		text, isErr, _, err := c.try("slow", nil)
		switch {
		case err != nil:
			text = "failed: " + err.Error()
		case isErr:
			text = "error result: " + text
		}
		done <- text
	}()
	<-arrived
	write(path, "slow", "added")
	reload <- struct{}{}
	enginetest.WaitFor(t, "the reloaded plugin's tools", func() bool {
		return strings.Contains(strings.Join(newBindingClient(t, info.MCPURL, info.Key, "").tools(t), ","), "added")
	})
	if text, _, _ := newBindingClient(t, info.MCPURL, info.Key, "").call(t, "added", nil); text != "answered /added" {
		t.Fatalf("call on the new plugin: %q", text)
	}
	close(release)
	select {
	case text := <-done:
		if text != "answered /slow" {
			t.Fatalf("the in-flight call: %q", text)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the in-flight call never finished")
	}
	enginetest.WaitFor(t, "the reload log line", func() bool { return strings.Contains(logs.String(), `"msg":"reloaded binding plugin"`) })
}
