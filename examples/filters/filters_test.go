package filters

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/host"
)

// TagHeader is the header every filter sets on the requests it lets through.
const TagHeader = "X-Sluice-Tag"

// config is the configuration every test gives the filter of lang.
func config(lang string) map[string]any {
	return map[string]any{"block": []string{"delete_file", "drop_table"}, "tag": lang + "-filter", "mask": "ACCT-####"}
}

func newRuntime(t testing.TB) *host.Runtime {
	t.Helper()
	rt, err := host.NewRuntime(context.Background(), host.RuntimeOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt
}

func loadFilter(t testing.TB, rt *host.Runtime, lang string, cfg map[string]any) (*host.Stage, error) {
	t.Helper()
	return rt.Load(context.Background(), host.PluginConfig{Name: lang + "-filter", Path: module(t, lang), Config: cfg})
}

func message(hook engine.Hook, method, tool, body string) *engine.Message {
	return &engine.Message{
		Hook: hook, Side: engine.SideAgent, Tunnel: "tunnel_1", Channel: "main", RequestID: "r1",
		Method: method, Tool: tool, Header: http.Header{"Mcp-Session-Id": {"s1"}}, Body: json.RawMessage(body),
	}
}

func run(t *testing.T, s *host.Stage, m *engine.Message) (engine.Result, error) {
	t.Helper()
	f, err := s.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Handle(context.Background(), m)
}

// A response with three candidates: a match, a near miss (a letter where a
// digit must be) and a match inside a JSON escape (after a backslash), which
// no filter masks.
const (
	maskIn   = `{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"ACCT-1234 owns ACCT-12x4; see \\ACCT-5678 and ACCT-0000"}]}}`
	maskWant = `{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"********* owns ACCT-12x4; see \\ACCT-5678 and *********"}]}}`
)

// TestFilters checks every example filter, case by case, through the real
// host: each must behave exactly the same.
func TestFilters(t *testing.T) {
	for _, l := range Langs {
		t.Run(l.Name, func(t *testing.T) {
			rt := newRuntime(t)
			s, err := loadFilter(t, rt, l.Name, config(l.Name))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			tag := l.Name + "-filter"
			for _, tool := range []string{"delete_file", "drop_table"} {
				res, err := run(t, s, message(engine.HookRequest, "tools/call", tool, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"`+tool+`"}}`))
				if err != nil || res.Action != engine.Reject || res.Error == nil || res.Error.Code != -32001 || res.Error.Message != "tool blocked by policy" {
					t.Fatalf("blocked %s: %v %+v %v", tool, res.Action, res.Error, err)
				}
			}
			for _, m := range []*engine.Message{
				message(engine.HookRequest, "tools/call", "lookup", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup"}}`),
				message(engine.HookRequest, "tools/list", "", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`),
				message(engine.HookRequest, "tools/call", "delete_files", `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`),
			} {
				res, err := run(t, s, m)
				if err != nil || res.Action != engine.Replace || res.Body != nil {
					t.Fatalf("%s %s: %v %s %v, want a header-only replace", m.Method, m.Tool, res.Action, res.Body, err)
				}
				if res.Header.Get(TagHeader) != tag || res.Header.Get("Mcp-Session-Id") != "s1" {
					t.Fatalf("%s %s: headers %v", m.Method, m.Tool, res.Header)
				}
			}
			res, err := run(t, s, message(engine.HookResponse, "tools/call", "lookup", maskIn))
			if err != nil || res.Action != engine.Replace || string(res.Body) != maskWant {
				t.Fatalf("mask: %v %v\n got %s\nwant %s", res.Action, err, res.Body, maskWant)
			}
			res, err = run(t, s, message(engine.HookResponse, "tools/list", "", `{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"ACCT-12"}]}}`))
			if err != nil || res.Action != engine.Continue {
				t.Fatalf("no match: %v %s %v", res.Action, res.Body, err)
			}
		})
	}
}

// TestFiltersConfig: an empty config blocks, tags and masks nothing; an
// unknown key is refused at load (the filters list their keys); a mask that
// would break JSON fails the call.
func TestFiltersConfig(t *testing.T) {
	for _, l := range Langs {
		t.Run(l.Name, func(t *testing.T) {
			rt := newRuntime(t)
			s, err := loadFilter(t, rt, l.Name, map[string]any{})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []*engine.Message{
				message(engine.HookRequest, "tools/call", "delete_file", `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`),
				message(engine.HookResponse, "tools/call", "", maskIn),
			} {
				if res, err := run(t, s, m); err != nil || res.Action != engine.Continue {
					t.Fatalf("empty config, %s: %v %v", m.Hook, res.Action, err)
				}
			}
			_ = s.Close()

			_, err = loadFilter(t, rt, l.Name, map[string]any{"block": []string{"x"}, "colour": "red"})
			want := `host: load plugin "` + l.Name + `-filter": unknown config key "colour" (the plugin accepts block, mask, tag)`
			if err == nil || err.Error() != want {
				t.Fatalf("unknown key: %v, want %s", err, want)
			}

			s, err = loadFilter(t, rt, l.Name, map[string]any{"mask": `A"#`})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := run(t, s, message(engine.HookResponse, "tools/call", "", maskIn)); !errors.Is(err, engine.ErrPluginFailure) {
				t.Fatalf("bad mask: %v, want a plugin failure", err)
			}
		})
	}
}

// TestBuildScriptNamesMissingToolchain: a language whose toolchain is not on
// PATH is skipped by name, with exit status 3.
func TestBuildScriptNamesMissingToolchain(t *testing.T) {
	out, code := runBuild(t, []string{"WAT2WASM=no-such-wat2wasm"}, "wat")
	if code != 3 || !strings.Contains(out, "examples: skipping wat: no-such-wat2wasm not found") {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

// TestFiltersMask: the masking rules, the same in every language: matches
// do not overlap, a mask may start with '#' or be all '#', and a match right
// after a backslash is left alone.
func TestFiltersMask(t *testing.T) {
	cases := []struct{ mask, in, want string }{
		{"ACCT-####", `{"t":"ACCT-ACCT-1234ACCT-5678 ACCT-123"}`, `{"t":"ACCT-****************** ACCT-123"}`},
		{"##-##", `{"t":"12-34-56 a1-23"}`, `{"t":"*****-56 a1-23"}`},
		{"####", `{"t":"123456789","n":"\\1234"}`, `{"t":"********9","n":"\\1234"}`},
		{"ACCT-####", `{"t":"none here"}`, ``},
	}
	for _, l := range Langs {
		t.Run(l.Name, func(t *testing.T) {
			rt := newRuntime(t)
			for _, c := range cases {
				s, err := loadFilter(t, rt, l.Name, map[string]any{"mask": c.mask})
				if err != nil {
					t.Fatal(err)
				}
				res, err := run(t, s, message(engine.HookResponse, "tools/call", "", c.in))
				_ = s.Close()
				if err != nil {
					t.Fatalf("%s on %s: %v", c.mask, c.in, err)
				}
				if got := string(res.Body); got != c.want || (c.want == "") != (res.Action == engine.Continue) {
					t.Fatalf("%s on %s: %v %s, want %s", c.mask, c.in, res.Action, got, c.want)
				}
			}
		})
	}
}
