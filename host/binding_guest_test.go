package host

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/enginetest"
)

// builds holds the guests built for the tests.
var builds = enginetest.Builds{Prefix: "sluice-host-"}

// TestMain removes the guests built for the tests.
func TestMain(m *testing.M) { os.Exit(builds.Run(m)) }

// goBindingPath builds testdata/gobinding (a binding written with the Go
// SDK) once per test binary. Skipped in -short mode.
func goBindingPath(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a Go guest")
	}
	return builds.Path(t, "gobinding.wasm", func(out string) *exec.Cmd {
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./testdata/gobinding")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		return cmd
	})
}

// loadGoBinding loads testdata/gobinding as the binding plugin "gobinding".
func loadGoBinding(t *testing.T, r *Runtime, cfg BindingConfig) *Binding {
	t.Helper()
	cfg.Plugin.Name = "gobinding"
	cfg.Plugin.Path = goBindingPath(t)
	if cfg.Plugin.CallTimeout == 0 {
		cfg.Plugin.CallTimeout = 5 * time.Second // a standard-Go guest under a loaded test machine
	}
	return loadBindingFixture(t, r, cfg)
}

// toolCall is a tools/call request for a binding.
func toolCall(name string, args any) *binding.Request {
	a, _ := json.Marshal(args)
	return &binding.Request{Kind: binding.KindJSONRPC, ID: json.RawMessage(`7`), Header: http.Header{},
		Body: json.RawMessage(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + name + `","arguments":` + string(a) + `,"_meta":{"progressToken":"p"}}}`)}
}

// toolText returns the text of the first content block and whether the
// result is an error result.
func toolText(t *testing.T, rep *binding.Reply) (string, bool) {
	t.Helper()
	var r struct {
		Result struct {
			Content []struct{ Text string }
			IsError bool
		}
		Error *struct{ Message string }
	}
	if err := json.Unmarshal(rep.Body, &r); err != nil || r.Error != nil || len(r.Result.Content) == 0 {
		t.Fatalf("not a tool result: %s", rep.Body)
	}
	return r.Result.Content[0].Text, r.Result.IsError
}

// TestGoBinding runs a binding written with the Go SDK through the real host:
// the protocol defaults, tools, progress, and a panic (a trap: the next call
// runs on a fresh instance).
func TestGoBinding(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	b := loadGoBinding(t, r, BindingConfig{Plugin: PluginConfig{PoolSize: 1}})
	init := &binding.Request{Kind: binding.KindJSONRPC, ID: json.RawMessage(`0`), Header: http.Header{},
		Body: json.RawMessage(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)}
	if rep := final(doBinding(t, b, init)); !strings.Contains(string(rep.Body), `"protocolVersion":"2025-06-18"`) || !strings.Contains(string(rep.Body), `"serverInfo":{"name":"gobinding","version":"1.0.0"}`) {
		t.Fatalf("initialize: %s", rep.Body)
	}
	if text, isErr := toolText(t, final(doBinding(t, b, toolCall("echo", map[string]any{"message": "ünï ✓"})))); text != "ünï ✓" || isErr {
		t.Fatalf("echo: %q %v", text, isErr)
	}
	rs := doBinding(t, b, toolCall("progress", map[string]any{"steps": 3}))
	if len(rs) != 4 || !strings.Contains(string(rs[2].Body), `"progress":3,"total":3`) {
		t.Fatalf("progress: %d replies", len(rs))
	}
	rep := final(doBinding(t, b, toolCall("panic", nil)))
	if !strings.Contains(string(rep.Body), `"code":-32603`) || !strings.Contains(string(rep.Body), `"kind":"trap"`) {
		t.Fatalf("panic: %s", rep.Body)
	}
	if text, _ := toolText(t, final(doBinding(t, b, toolCall("echo", map[string]any{"message": "after"})))); text != "after" {
		t.Fatalf("after the trap: %q", text)
	}
}

// TestGoBindingSpinTimesOut: a standard-Go guest stuck in a loop is stopped
// at its call-timeout.
func TestGoBindingSpinTimesOut(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	b := loadGoBinding(t, r, BindingConfig{Plugin: PluginConfig{CallTimeout: 300 * time.Millisecond}})
	rep := final(doBinding(t, b, toolCall("spin", nil)))
	if !strings.Contains(string(rep.Body), `"kind":"timeout"`) {
		t.Fatalf("spin: %s", rep.Body)
	}
}

// TestGoBindingHTTP: only allowed origins are reached; the operator's secret
// header is added by the host (overriding the guest's) and never follows a
// redirect elsewhere; redirects off the allow-list, oversize bodies and slow
// servers are errors the guest gets.
func TestGoBindingHTTP(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen", r.Header.Get("Authorization"))
		_, _ = io.WriteString(w, "other")
	}))
	defer other.Close()
	var mu sync.Mutex
	var gotAuth []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("X-Seen", r.Header.Get("X-Guest"))
		switch r.URL.Path {
		case "/ok":
			body, _ := io.ReadAll(r.Body)
			_, _ = fmt.Fprintf(w, "%s %s", r.Method, body)
		case "/missing":
			http.Error(w, "no such thing", http.StatusNotFound)
		case "/away":
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/big":
			_, _ = w.Write(make([]byte, 2048))
		case "/slow":
			time.Sleep(2 * time.Second)
		}
	}))
	defer api.Close()
	r := newTestRuntime(t, nil, nil)
	b := loadGoBinding(t, r, BindingConfig{HTTP: HTTPConfig{
		AllowedHosts:     []string{api.URL},
		Timeout:          500 * time.Millisecond,
		MaxResponseBytes: 1024,
		Headers:          []HTTPHeader{{Origin: api.URL, Name: "authorization", Value: "Bearer operator-secret"}},
	}})
	fetch := func(args map[string]any) (string, bool) {
		return toolText(t, final(doBinding(t, b, toolCall("fetch", args))))
	}
	text, isErr := fetch(map[string]any{"url": api.URL + "/ok", "method": "POST", "body": "hi"})
	if isErr || text != `{"status":200,"seen":"1","body":"POST hi"}` {
		t.Fatalf("ok: %s", text)
	}
	if text, isErr = fetch(map[string]any{"url": api.URL + "/missing"}); isErr || !strings.HasPrefix(text, `{"status":404,`) {
		t.Fatalf("404 is a response: %s", text)
	}
	if text, isErr = fetch(map[string]any{"url": api.URL + "/here"}); isErr || !strings.Contains(text, `"body":"GET "`) {
		t.Fatalf("redirect within the allow-list: %s", text)
	}
	for _, tc := range []struct{ path, want string }{
		{other.URL + "/direct", "denied by the binding's config: host http://127.0.0.1"},
		{api.URL + "/away", "denied by the binding's config: redirected to http://127.0.0.1"},
		{api.URL + "/big", "too large: response body exceeds 1024 bytes"},
		{api.URL + "/slow", "timed out"},
		{"ftp://x/y", "invalid request"},
	} {
		if text, isErr = fetch(map[string]any{"url": tc.path}); !isErr || !strings.Contains(text, tc.want) {
			t.Errorf("%s: %q (error %v), want %q", tc.path, text, isErr, tc.want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range gotAuth {
		if a != "Bearer operator-secret" {
			t.Errorf("the API saw Authorization %q, want the operator's", a)
		}
	}
}

// TestGoBindingCommands: a line command answers line by line and is
// restarted after it dies or stalls; a run command gets a fresh process and
// a minimal environment (no secret of the host process); an unknown command
// is denied.
func TestGoBindingCommands(t *testing.T) {
	t.Setenv("SLUICE_TEST_SECRET", "do-not-leak")
	r := newTestRuntime(t, nil, nil)
	b := loadGoBinding(t, r, BindingConfig{Commands: []Command{
		{Name: "upper", Argv: []string{"sh", "-c", `while IFS= read -r l; do case "$l" in die) exit 3;; stall) sleep 10;; *) echo "got:$l";; esac; done`},
			Timeout: 500 * time.Millisecond},
		{Name: "env", Argv: []string{"env"}, Mode: CommandRun, Env: []string{"ONLY_THIS=1"}},
		{Name: "wc", Argv: []string{"wc", "-c"}, Mode: CommandRun},
		{Name: "fail", Argv: []string{"sh", "-c", "exit 4"}, Mode: CommandRun},
	}})
	ex := func(cmd, in string) (string, bool) {
		return toolText(t, final(doBinding(t, b, toolCall("exchange", map[string]any{"command": cmd, "input": in}))))
	}
	for i := range 3 {
		if text, isErr := ex("upper", fmt.Sprintf("line %d", i)); isErr || text != fmt.Sprintf("got:line %d", i) {
			t.Fatalf("line %d: %q", i, text)
		}
	}
	if text, isErr := ex("upper", "die"); !isErr || !strings.Contains(text, "exited without answering") {
		t.Fatalf("die: %q", text)
	}
	if text, isErr := ex("upper", "again"); isErr || text != "got:again" {
		t.Fatalf("after a restart: %q", text)
	}
	if text, isErr := ex("upper", "stall"); !isErr || !strings.Contains(text, "did not answer within 500ms") {
		t.Fatalf("stall: %q", text)
	}
	if text, isErr := ex("upper", "fresh"); isErr || text != "got:fresh" {
		t.Fatalf("after a stall: %q", text)
	}
	text, isErr := ex("env", "")
	if isErr || !strings.Contains(text, "ONLY_THIS=1") || strings.Contains(text, "do-not-leak") {
		t.Fatalf("env: %q", text)
	}
	if text, isErr := ex("wc", "12345"); isErr || strings.TrimSpace(text) != "5" {
		t.Fatalf("wc: %q", text)
	}
	if text, isErr := ex("fail", ""); !isErr || !strings.Contains(text, "exit status 4") {
		t.Fatalf("fail: %q", text)
	}
	if text, isErr := ex("rm", "-rf /"); !isErr || !strings.Contains(text, `no command "rm"`) {
		t.Fatalf("unknown command: %q", text)
	}
}
