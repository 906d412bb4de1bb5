package relay

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/wire"
)

const tunO = "tunnel_0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"

func oauthHarness(t *testing.T, opts Options) *harness {
	return newHarness(t, func(c *Config) {
		c.Tunnels = append(c.Tunnels, Tunnel{ID: tunO, RuntimeKey: "rk-oauth", AuthMode: AuthOAuth})
	}, opts)
}

// TestOAuthMetadataThroughTunnel: the relay serves protected-resource
// metadata through the standard oauth_discovery command, so it works with
// any agent of the protocol (this poller advertises nothing, as OpenAI's
// agent does not), and points the document's resource at itself.
func TestOAuthMetadataThroughTunnel(t *testing.T) {
	h := oauthHarness(t, Options{})
	path := "/.well-known/oauth-protected-resource/v1/mcp/" + tunO

	info := map[string]string{wire.HeaderServerInfo: `{"version":1,"channels":[{"name":"main"}]}`}
	if st, _ := h.poll(tunO, "rk-oauth", 1, time.Millisecond, info); st != 204 {
		t.Fatal(st)
	}
	done := make(chan *http.Response, 1)
	go func() {
		done <- h.do("GET", path, nil, map[string]string{"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	}()
	raw := h.nextRaw(tunO, "rk-oauth")
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	for k := range fields {
		switch k {
		case "request_id", "shard_token", "command_type", "channel", "created_at", "headers", "response_timeout":
		default:
			t.Errorf("oauth_discovery command has field %q: only the common fields belong (%s)", k, raw)
		}
	}
	var cmd wire.Command
	_ = json.Unmarshal(raw, &cmd)
	if cmd.CommandType != wire.CommandOAuthDiscovery || cmd.ResponseTimeout == nil || cmd.Channel != "main" {
		t.Fatalf("command %s", raw)
	}
	if got := cmd.Headers["Traceparent"]; len(got) != 1 {
		t.Errorf("trace context not forwarded: %v", cmd.Headers)
	}
	upstream := `{"z_first":1,"resource":"http://10.0.0.5:3010/mcp","authorization_servers":["http://as.internal/"],"a_last":{"resource":"keep"}}`
	h.respond(tunO, "rk-oauth", cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(upstream), RespCode: 200,
		RespType: wire.RespOAuthDiscovery, RespHeaders: map[string][]string{"Content-Type": {"application/json"}, "Set-Cookie": {"x=1"}}})
	resp := wait(t, done)
	b := readAll(t, resp)
	want := `{"z_first":1,"resource":"` + h.url + `/v1/mcp/` + tunO + `","authorization_servers":["http://as.internal/"],"a_last":{"resource":"keep"}}`
	if resp.StatusCode != 200 || b != want {
		t.Fatalf("got %d\n%s\nwant\n%s", resp.StatusCode, b, want)
	}
	if resp.Header.Get("Set-Cookie") != "" {
		t.Error("an upstream cookie reached the client")
	}

	// The MCP server has no metadata: its 404 is the answer.
	go func() { done <- h.do("GET", path, nil, nil) }()
	cmd = h.next(tunO, "rk-oauth")
	h.respond(tunO, "rk-oauth", cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespCode: 404, RespType: wire.RespOAuthDiscovery})
	if resp := wait(t, done); resp.StatusCode != 404 {
		t.Errorf("upstream 404 answered %d", resp.StatusCode)
	}

	// Not an oauth tunnel, root path, bad host.
	for _, c := range []struct {
		path, host string
		status     int
	}{
		{"/.well-known/oauth-protected-resource/v1/mcp/" + tunA, "", 404},
		{"/.well-known/oauth-protected-resource", "", 404},
		{path, "evil.example.com", 403},
	} {
		hdr := map[string]string{}
		if c.host != "" {
			hdr["Host"] = c.host
		}
		r := h.do("GET", c.path, nil, hdr)
		r.Body.Close()
		if r.StatusCode != c.status {
			t.Errorf("%s host %q: %d, want %d", c.path, c.host, r.StatusCode, c.status)
		}
	}
}

func TestOAuthMetadataChainHook(t *testing.T) {
	st := &fnStage{name: "oauthmeta", hooks: map[engine.Hook]bool{engine.HookHTTPResponse: true}, fn: func(m *engine.Message) engine.Result {
		return engine.Result{Action: engine.Replace, Body: json.RawMessage(strings.Replace(string(m.Body), `"x":1`, `"x":2`, 1))}
	}}
	h := oauthHarness(t, Options{Pipeline: pipelineOf(st)})
	h.connect(tunO, "rk-oauth")
	done := make(chan *http.Response, 1)
	go func() { done <- h.do("GET", "/.well-known/oauth-protected-resource/v1/mcp/"+tunO, nil, nil) }()
	cmd := h.next(tunO, "rk-oauth")
	h.respond(tunO, "rk-oauth", cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"x":1}`), RespCode: 200, RespType: wire.RespOAuthDiscovery})
	resp := wait(t, done)
	if b := readAll(t, resp); b != `{"resource":"`+h.url+`/v1/mcp/`+tunO+`","x":2}` {
		t.Fatalf("body %s", b)
	}
}

func TestOAuthModeForwardsAuthorizationAndRewritesChallenge(t *testing.T) {
	h := oauthHarness(t, Options{})
	h.connect(tunO, "rk-oauth")
	got := h.clientPost(tunO, `{"jsonrpc":"2.0","id":1,"method":"initialize"}`, map[string]string{"Authorization": "Bearer user-token"})
	cmd := h.next(tunO, "rk-oauth")
	if a := cmd.Headers["Authorization"]; len(a) != 1 || a[0] != "Bearer user-token" {
		t.Fatalf("authorization not forwarded: %v", cmd.Headers)
	}
	chal := `Bearer realm="mcp", resource_metadata="http://10.0.0.5/.well-known/oauth-protected-resource/mcp", error="invalid_token", error_description="no \"token\""`
	h.respond(tunO, "rk-oauth", cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespCode: 401,
		RespJSON:    json.RawMessage(`{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"unauthorized"}}`),
		RespHeaders: map[string][]string{"www-authenticate": {chal}}})
	resp := wait(t, got)
	resp.Body.Close()
	want := `Bearer realm="mcp", resource_metadata="` + h.url + `/.well-known/oauth-protected-resource/v1/mcp/` + tunO + `", error="invalid_token", error_description="no \"token\""`
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != want {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestSetResource(t *testing.T) {
	const u = "https://relay/v1/mcp/x"
	cases := []struct{ in, want string }{
		{`{"resource":"old"}`, `{"resource":"https://relay/v1/mcp/x"}`},
		{`{ "b" : [1,{"resource":"n"}] , "resource" : "old" , "a":null }`, `{ "b" : [1,{"resource":"n"}] , "resource" : "https://relay/v1/mcp/x" , "a":null }`},
		{`{"a":1}`, `{"resource":"https://relay/v1/mcp/x","a":1}`},
		{`{}`, `{"resource":"https://relay/v1/mcp/x"}`},
		{" {\n}", " {\"resource\":\"https://relay/v1/mcp/x\"\n}"},
		{`{"reso\u0075rce":1}`, `{"reso\u0075rce":"https://relay/v1/mcp/x"}`},
	}
	for _, c := range cases {
		got, err := setResource([]byte(c.in), u)
		if err != nil || string(got) != c.want {
			t.Errorf("setResource(%s) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{`[]`, `{"a"}`, `{"a":1`, ``, `"s"`} {
		if _, err := setResource([]byte(bad), u); err == nil {
			t.Errorf("setResource(%q) accepted", bad)
		}
	}
}

func FuzzSetResource(f *testing.F) {
	for _, s := range []string{`{"resource":"a"}`, `{"a":{"resource":1},"b":[]}`, `{}`, `[]`, `{"a":"\u0022"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		out, err := setResource(doc, "https://r/v1/mcp/t")
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid output %q from %q", out, doc)
		}
		var m map[string]json.RawMessage // exact key matching, test only
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("output %s: %v", out, err)
		}
		if string(m["resource"]) != `"https://r/v1/mcp/t"` {
			t.Fatalf("resource = %s in %s", m["resource"], out)
		}
	})
}
