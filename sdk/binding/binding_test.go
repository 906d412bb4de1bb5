package binding_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/binding"
	"github.com/sluicemcp/sluice/sdk/sdktest"
)

// testPlugin has an echo tool, a progress tool, a tool that calls HTTP and
// one that runs a command.
func testPlugin() binding.Plugin {
	return binding.Plugin{
		Name: "test", Version: "1.2.3", Title: "Test binding", Instructions: "use echo",
		Tools: []binding.Tool{
			{Name: "echo", Description: "echo a message",
				InputSchema: []byte(`{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}`),
				Handler: func(c *binding.Call, args binding.Args) binding.ToolResult {
					msg, ok := args.String("message")
					if !ok {
						return binding.ErrorResult("message must be a string")
					}
					return binding.TextResult(msg)
				}},
			{Name: "progress", Handler: func(c *binding.Call, args binding.Args) binding.ToolResult {
				n, _ := args.Number("steps")
				for i := 1; i <= int(n); i++ {
					if err := c.Progress(float64(i), n, "step"); err != nil {
						return binding.ErrorResult(err.Error())
					}
				}
				return binding.TextResult("done")
			}},
			{Name: "fetch", Handler: func(c *binding.Call, args binding.Args) binding.ToolResult {
				url, _ := args.String("url")
				resp, err := binding.HTTP(binding.HTTPRequest{URL: url, Header: sdk.Headers{{Name: "Accept", Value: "application/json"}}})
				if errors.Is(err, binding.ErrDenied) {
					return binding.ErrorResult("denied: " + err.Error())
				}
				if err != nil {
					return binding.ErrorResult(err.Error())
				}
				return binding.JSONResult(resp.Body)
			}},
			{Name: "calc", Handler: func(c *binding.Call, args binding.Args) binding.ToolResult {
				expr, _ := args.String("expr")
				out, err := binding.Exchange("bc", []byte(expr))
				if err != nil {
					return binding.ErrorResult(err.Error())
				}
				return binding.TextResult(string(out))
			}},
		},
	}
}

func call(t *testing.T, env *sdktest.BindingEnv, p binding.Plugin, body string, headers ...sdk.Header) *sdktest.Reply {
	t.Helper()
	rep, err := env.Call(p, sdktest.Request{Body: []byte(body), Headers: headers})
	if err != nil {
		t.Fatalf("call %s: %v", body, err)
	}
	return rep
}

// modernMeta is the _meta a 2026-07-28 client puts in every request.
const modernMeta = `"_meta":{"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"x","version":"1"},"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`

var modernHeader = sdk.Header{Name: "Mcp-Protocol-Version", Value: "2026-07-28"}

func TestInitializeNegotiates(t *testing.T) {
	env := &sdktest.BindingEnv{}
	for _, tc := range []struct{ asked, want string }{
		{"2025-06-18", "2025-06-18"},
		{"2025-11-25", "2025-11-25"},
		{"2026-07-28", "2025-11-25"}, // the handshake cannot negotiate the stateless era
		{"1999-01-01", "2025-11-25"},
	} {
		rep := call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+tc.asked+`","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`)
		var r struct {
			Result struct {
				ProtocolVersion string          `json:"protocolVersion"`
				Capabilities    json.RawMessage `json:"capabilities"`
				ServerInfo      struct{ Name, Title, Version string }
				Instructions    string
			}
		}
		if err := json.Unmarshal(rep.Body, &r); err != nil {
			t.Fatal(err)
		}
		if r.Result.ProtocolVersion != tc.want || string(r.Result.Capabilities) != `{"tools":{}}` ||
			r.Result.ServerInfo.Name != "test" || r.Result.ServerInfo.Version != "1.2.3" || r.Result.ServerInfo.Title != "Test binding" || r.Result.Instructions != "use echo" {
			t.Fatalf("asked %s: %s", tc.asked, rep.Body)
		}
		for _, h := range rep.Headers {
			if strings.EqualFold(h.Name, "Mcp-Session-Id") {
				t.Fatalf("a stateless binding minted a session: %v", rep.Headers)
			}
		}
	}
}

func TestDiscover(t *testing.T) {
	rep := call(t, &sdktest.BindingEnv{}, testPlugin(), `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{`+modernMeta+`}}`, modernHeader)
	var r struct {
		Result struct {
			ResultType        string   `json:"resultType"`
			SupportedVersions []string `json:"supportedVersions"`
			Capabilities      json.RawMessage
			Meta              map[string]struct{ Name, Version string } `json:"_meta"`
		}
	}
	if err := json.Unmarshal(rep.Body, &r); err != nil {
		t.Fatal(err)
	}
	if r.Result.ResultType != "complete" || r.Result.SupportedVersions[0] != "2026-07-28" || string(r.Result.Capabilities) != `{"tools":{}}` ||
		r.Result.Meta["io.modelcontextprotocol/serverInfo"].Name != "test" {
		t.Fatalf("discover: %s", rep.Body)
	}
}

func TestToolsListBothEras(t *testing.T) {
	env := &sdktest.BindingEnv{}
	legacy := call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}`)
	if !strings.HasPrefix(string(legacy.Body), `{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"echo","description":"echo a message","inputSchema":{"type":"object"`) ||
		strings.Contains(string(legacy.Body), "resultType") {
		t.Fatalf("legacy tools/list: %s", legacy.Body)
	}
	modern := call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{`+modernMeta+`}}`, modernHeader)
	var r struct {
		Result struct {
			ResultType string `json:"resultType"`
			TTL        *int   `json:"ttlMs"`
			Scope      string `json:"cacheScope"`
			Tools      []struct {
				Name        string
				InputSchema map[string]any
			}
		}
	}
	if err := json.Unmarshal(modern.Body, &r); err != nil {
		t.Fatal(err)
	}
	if r.Result.ResultType != "complete" || r.Result.TTL == nil || r.Result.Scope != "private" || len(r.Result.Tools) != 4 || r.Result.Tools[1].InputSchema["type"] != "object" {
		t.Fatalf("modern tools/list: %s", modern.Body)
	}
}

func TestToolsCall(t *testing.T) {
	env := &sdktest.BindingEnv{}
	rep := call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":"a\"b","method":"tools/call","params":{"name":"echo","arguments":{"message":"h\u00e9 \"q\" \ud83d\ude00"}}}`)
	if want := `{"jsonrpc":"2.0","id":"a\"b","result":{"content":[{"type":"text","text":"hé \"q\" 😀"}]}}`; string(rep.Body) != want || rep.Status != 200 {
		t.Fatalf("echo: %d %s\nwant %s", rep.Status, rep.Body, want)
	}
	rep = call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"message":7}}}`)
	if !strings.Contains(string(rep.Body), `"isError":true`) {
		t.Fatalf("tool error: %s", rep.Body)
	}
	rep = call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope"}}`)
	if rep.Status != 200 || string(rep.Body) != `{"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"unknown tool: nope"}}` {
		t.Fatalf("unknown tool: %d %s", rep.Status, rep.Body)
	}
	modern := call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope",`+modernMeta+`}}`, modernHeader)
	if modern.Status != 400 {
		t.Fatalf("unknown tool on 2026-07-28: status %d, want 400", modern.Status)
	}
	modern = call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"message":"m"},`+modernMeta+`}}`, modernHeader)
	if !strings.HasPrefix(string(modern.Body), `{"jsonrpc":"2.0","id":5,"result":{"resultType":"complete","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"test","title":"Test binding","version":"1.2.3"}},"content":[`) {
		t.Fatalf("modern result not stamped: %s", modern.Body)
	}
}

func TestUnknownMethodAndPing(t *testing.T) {
	env := &sdktest.BindingEnv{}
	if rep := call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":1,"method":"ping"}`); string(rep.Body) != `{"jsonrpc":"2.0","id":1,"result":{}}` {
		t.Fatalf("ping: %s", rep.Body)
	}
	rep := call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":1,"method":"resources/list"}`)
	if rep.Status != 200 || !strings.Contains(string(rep.Body), `"code":-32601`) {
		t.Fatalf("legacy: %d %s", rep.Status, rep.Body)
	}
	rep = call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":1,"method":"resources/list","params":{`+modernMeta+`}}`, modernHeader)
	if rep.Status != 404 || !strings.Contains(string(rep.Body), `"code":-32601`) {
		t.Fatalf("modern: %d %s", rep.Status, rep.Body)
	}
}

func TestNotificationsAndSessionEnd(t *testing.T) {
	p := testPlugin()
	var seen []string
	p.OnNotification = func(c *binding.Call) { seen = append(seen, c.Method) }
	env := &sdktest.BindingEnv{}
	rep := call(t, env, p, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if rep.Status != 202 || len(rep.Body) != 0 || len(seen) != 1 || seen[0] != "notifications/initialized" {
		t.Fatalf("notification: %d %q %v", rep.Status, rep.Body, seen)
	}
	// A client's answer to a server request arrives like a notification.
	rep = call(t, env, p, `{"jsonrpc":"2.0","id":9,"result":{}}`)
	if rep.Status != 202 {
		t.Fatalf("client response: %d", rep.Status)
	}
	end, err := env.Call(p, sdktest.Request{SessionEnd: true})
	if err != nil || end.Status != 405 {
		t.Fatalf("session end: %v %+v", err, end)
	}
}

func TestProgress(t *testing.T) {
	env := &sdktest.BindingEnv{}
	rep := call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"progress","arguments":{"steps":3},"_meta":{"progressToken":"tok"}}}`)
	if len(rep.Notifications) != 3 || string(rep.Notifications[2]) != `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":3,"total":3,"message":"step"}}` {
		t.Fatalf("notifications: %q", rep.Notifications)
	}
	rep = call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"progress","arguments":{"steps":3}}}`)
	if len(rep.Notifications) != 0 || !strings.Contains(string(rep.Body), `"done"`) {
		t.Fatalf("progress without a token: %q %s", rep.Notifications, rep.Body)
	}
}

func TestHTTPAndExchangeThroughTheHost(t *testing.T) {
	api := http.NewServeMux()
	api.HandleFunc("GET /users/1", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/json" {
			http.Error(w, "want json", 406)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":1,"name":"Ada"}`))
	})
	env := &sdktest.BindingEnv{HTTP: sdktest.HTTPHandler(api), Command: func(name string, in []byte) ([]byte, error) {
		if name != "bc" {
			return nil, &binding.HostError{Code: -1, Message: "no such command"}
		}
		return append([]byte("= "), in...), nil
	}}
	rep := call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"http://api.internal/users/1"}}}`)
	if !strings.Contains(string(rep.Body), `"structuredContent":{"id":1,"name":"Ada"}`) {
		t.Fatalf("fetch: %s", rep.Body)
	}
	rep = call(t, env, testPlugin(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"calc","arguments":{"expr":"1+1"}}}`)
	if !strings.Contains(string(rep.Body), `"text":"= 1+1"`) {
		t.Fatalf("calc: %s", rep.Body)
	}
	denied := &sdktest.BindingEnv{}
	rep = call(t, denied, testPlugin(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"http://api.internal/users/1"}}}`)
	if !strings.Contains(string(rep.Body), `denied: host: denied by the binding's config: this binding has no http config`) {
		t.Fatalf("fetch without http config: %s", rep.Body)
	}
}

func TestMethodsOverrideAndToolsFunc(t *testing.T) {
	p := binding.Plugin{Name: "dyn",
		ToolsFunc: func() ([]binding.Tool, error) {
			var cfg struct{ Tools []string }
			if err := sdk.ConfigInto(&cfg); err != nil {
				return nil, err
			}
			var ts []binding.Tool
			for _, n := range cfg.Tools {
				ts = append(ts, binding.Tool{Name: n, Handler: func(c *binding.Call, a binding.Args) binding.ToolResult { return binding.TextResult(c.Tool) }})
			}
			return ts, nil
		},
		Methods: map[string]binding.Method{
			"ping":           func(c *binding.Call) sdk.Result { return c.Result([]byte(`{"pong":true}`)) },
			"resources/list": func(c *binding.Call) sdk.Result { return c.Result([]byte(`{"resources":[]}`)) },
		},
	}
	env, err := sdktest.NewBindingEnv(map[string]any{"tools": []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep := call(t, env, p, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`); !strings.Contains(string(rep.Body), `[{"name":"a","inputSchema":{"type":"object"}},{"name":"b"`) {
		t.Fatalf("tools/list from config: %s", rep.Body)
	}
	if rep := call(t, env, p, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"b"}}`); !strings.Contains(string(rep.Body), `"text":"b"`) {
		t.Fatalf("tools/call from config: %s", rep.Body)
	}
	if rep := call(t, env, p, `{"jsonrpc":"2.0","id":1,"method":"ping"}`); !strings.Contains(string(rep.Body), `"pong":true`) {
		t.Fatalf("ping override: %s", rep.Body)
	}
	if rep := call(t, env, p, `{"jsonrpc":"2.0","id":1,"method":"resources/list"}`); !strings.Contains(string(rep.Body), `"resources":[]`) {
		t.Fatalf("custom method: %s", rep.Body)
	}
}

func TestArgs(t *testing.T) {
	a := binding.Args(`{"s":"x\ny","n":-1.5e3,"b":false,"o":{"k":[1,"]"]},"z":null}`)
	if s, ok := a.String("s"); !ok || s != "x\ny" {
		t.Fatalf("String: %q %v", s, ok)
	}
	if n, ok := a.Number("n"); !ok || n != -1500 {
		t.Fatalf("Number: %v %v", n, ok)
	}
	if b, ok := a.Bool("b"); !ok || b {
		t.Fatalf("Bool: %v %v", b, ok)
	}
	if raw, ok := a.Raw("o"); !ok || string(raw) != `{"k":[1,"]"]}` {
		t.Fatalf("Raw: %s %v", raw, ok)
	}
	if _, ok := a.String("n"); ok {
		t.Fatal("a number read as a string")
	}
	var names []string
	a.Each(func(name string, _ []byte) bool { names = append(names, name); return true })
	if strings.Join(names, ",") != "s,n,b,o,z" {
		t.Fatalf("Each: %v", names)
	}
}

// TestRepeatedAndEscapedNames: a binding reads members as clients and
// filters (sdk/rawjson) do: the last of repeated names wins and names are
// unescaped, so a filter that checked one value cannot have the tool run
// with another.
func TestRepeatedAndEscapedNames(t *testing.T) {
	a := binding.Args(`{"path":"/safe","path":"/etc/passwd","m\u0073g":"hi","n":1,"n":2}`)
	if s, ok := a.String("path"); !ok || s != "/etc/passwd" {
		t.Errorf("String(path) = %q %v, want the last", s, ok)
	}
	if s, ok := a.String("msg"); !ok || s != "hi" {
		t.Errorf("String(msg) = %q %v, want the escaped name matched", s, ok)
	}
	if n, ok := a.Number("n"); !ok || n != 2 {
		t.Errorf("Number(n) = %v %v, want the last", n, ok)
	}
	var names []string
	a.Each(func(name string, _ []byte) bool { names = append(names, name); return true })
	if strings.Join(names, ",") != "path,path,msg,n,n" {
		t.Errorf("Each: %v", names)
	}

	env := &sdktest.BindingEnv{}
	p := testPlugin()
	rep := call(t, env, p, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","\u0061rguments":{"message":"escaped"}}}`)
	if !strings.Contains(string(rep.Body), `"text":"escaped"`) {
		t.Errorf("escaped arguments name: %s", rep.Body)
	}
	rep = call(t, env, p, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","protocolVersion":"2025-03-26"}}`)
	if !strings.Contains(string(rep.Body), `"protocolVersion":"2025-03-26"`) {
		t.Errorf("repeated protocolVersion: %s", rep.Body)
	}
}

// FuzzCall: whatever JSON object a client sends, the binding answers it
// without panicking, with a reply the host accepts.
func FuzzCall(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}`,
		`{"jsonrpc":"2.0","id":"x","method":"initialize","params":{"protocolVersion":"2025-06-18"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"\ud800"}}}`,
	} {
		f.Add([]byte(s))
	}
	p := testPlugin()
	f.Fuzz(func(t *testing.T, body []byte) {
		var v struct {
			Method *string `json:"method"`
		}
		if json.Unmarshal(body, &v) != nil || !json.Valid(body) {
			return // the agent only ever hands over one JSON-RPC object (a string method)
		}
		rep, err := (&sdktest.BindingEnv{}).Call(p, sdktest.Request{Body: body})
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if len(rep.Body) > 0 && !json.Valid(rep.Body) {
			t.Fatalf("%s: reply is not JSON: %s", body, rep.Body)
		}
	})
}
