package rest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/examples/rest-binding/rest"
	"github.com/sluicemcp/sluice/sdk/sdktest"
)

// todoAPI is a tiny REST API: GET /todos/{id}, POST /todos (echoes the
// body), GET /search?q= (plain text).
func todoAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /todos/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "1" {
			http.Error(w, `{"error":"no such todo"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":1,"title":"write the binding","done":false}`)
	})
	mux.HandleFunc("POST /todos", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /search", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "found: "+r.URL.Query().Get("q")+" / "+r.Header.Get("X-Client"))
	})
	return mux
}

var testConfig = map[string]any{
	"base-url": "http://api.internal",
	"headers":  map[string]string{"X-Client": "sluice"},
	"tools": []map[string]any{
		{"name": "get_todo", "description": "Get a todo", "path": "/todos/{id}",
			"params": map[string]any{"id": map[string]any{"type": "integer", "required": true}}},
		{"name": "add_todo", "method": "post", "path": "/todos",
			"params": map[string]any{"title": map[string]any{"type": "string", "required": true}, "done": map[string]any{"type": "boolean"}}},
		{"name": "search", "path": "/search", "query": []string{"q"}, "params": map[string]any{"q": map[string]any{"type": "string"}}},
	},
}

func call(t *testing.T, env *sdktest.BindingEnv, body string) (text string, isErr bool, structured json.RawMessage) {
	t.Helper()
	rep, err := env.Call(rest.Plugin(), sdktest.Request{Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Result struct {
			Content           []struct{ Text string }
			StructuredContent json.RawMessage
			IsError           bool
		}
	}
	if err := json.Unmarshal(rep.Body, &r); err != nil || len(r.Result.Content) == 0 {
		t.Fatalf("%s: %s", body, rep.Body)
	}
	return r.Result.Content[0].Text, r.Result.IsError, r.Result.StructuredContent
}

func TestToolsFromConfig(t *testing.T) {
	env, _ := sdktest.NewBindingEnv(testConfig)
	rep, err := env.Call(rest.Plugin(), sdktest.Request{Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`{"name":"get_todo","description":"Get a todo","inputSchema":{"properties":{"id":{"type":"integer"}},"required":["id"],"type":"object"},"annotations":{"readOnlyHint":true}}`,
		`{"name":"add_todo","inputSchema":{"properties":{"done":{"type":"boolean"},"title":{"type":"string"}},"required":["title"],"type":"object"}}`,
	} {
		if !strings.Contains(string(rep.Body), want) {
			t.Errorf("tools/list lacks %s:\n%s", want, rep.Body)
		}
	}
}

func TestCallsBecomeRequests(t *testing.T) {
	env, _ := sdktest.NewBindingEnv(testConfig)
	env.HTTP = sdktest.HTTPHandler(todoAPI())
	rep, err := env.Call(rest.Plugin(), sdktest.Request{Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_todo","arguments":{"id":1},"_meta":{"progressToken":7}}}`)})
	if err != nil || len(rep.Notifications) != 2 || !strings.Contains(string(rep.Notifications[0]), `"progress":0,"total":1,"message":"GET /todos/1"`) ||
		!strings.Contains(string(rep.Notifications[1]), `"message":"HTTP 200"`) {
		t.Fatalf("progress: %v %q", err, rep.Notifications)
	}
	text, isErr, structured := call(t, env, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_todo","arguments":{"id":1}}}`)
	if isErr || string(structured) != `{"id":1,"title":"write the binding","done":false}` || text != string(structured) {
		t.Fatalf("get_todo: %q %v %s", text, isErr, structured)
	}
	text, isErr, _ = call(t, env, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_todo","arguments":{"id":2}}}`)
	if !isErr || text != `HTTP 404 from GET /todos/2: {"error":"no such todo"}` {
		t.Fatalf("a 404 is a tool error: %q %v", text, isErr)
	}
	_, isErr, structured = call(t, env, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_todo","arguments":{"title":"ünï \"q\"","done":true}}}`)
	if isErr || string(structured) != `{"title":"ünï \"q\"","done":true}` {
		t.Fatalf("add_todo: %s", structured)
	}
	text, isErr, _ = call(t, env, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"a b&c"}}}`)
	if isErr || text != "found: a b&c / sluice" {
		t.Fatalf("search: %q", text)
	}
	text, isErr, _ = call(t, env, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_todo","arguments":{}}}`)
	if !isErr || text != "missing required argument id" {
		t.Fatalf("missing argument: %q", text)
	}
}

func TestHostRefusalIsAToolError(t *testing.T) {
	env, _ := sdktest.NewBindingEnv(testConfig) // no HTTP: like a binding without allowed hosts
	text, isErr, _ := call(t, env, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_todo","arguments":{"id":1}}}`)
	if !isErr || !strings.Contains(text, "denied by the binding's config") {
		t.Fatalf("%q %v", text, isErr)
	}
}

func TestBadConfig(t *testing.T) {
	env, _ := sdktest.NewBindingEnv(map[string]any{"base-url": "ftp://x"})
	rep, err := env.Call(rest.Plugin(), sdktest.Request{Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)})
	if err != nil || !strings.Contains(string(rep.Body), "config base-url: want an http") {
		t.Fatalf("%v %s", err, rep.Body)
	}
}
