package relay

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

var offerAS = map[string]string{wire.HeaderExtensions: wire.ExtOAuthAS}

// noRedirects never follows a redirect (the Locations in these tests name
// hosts that do not exist).
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// asyncDo sends a request in the background, following no redirect.
func (h *harness) asyncDo(method, path, body string, hdr map[string]string) <-chan *http.Response {
	ch := make(chan *http.Response, 1)
	go func() {
		req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
		if err != nil {
			h.t.Error(err)
			ch <- nil
			return
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := noRedirects.Do(req)
		if err != nil {
			h.t.Error(err)
		}
		ch <- resp
	}()
	return ch
}

// answerAS takes the next command as an agent that offers oauth-as,
// checks it is an oauth_as command, and answers it.
func (h *harness) answerAS(t *testing.T, resp wire.Response) wire.Command {
	t.Helper()
	c := h.nextWith(tunA, runtimeA, offerAS)
	if c.CommandType != wire.CommandOAuthAS || c.OAuthAS == nil {
		t.Fatalf("command %+v, want oauth_as", c)
	}
	resp.RequestID, resp.RespType = c.RequestID, wire.RespOAuthAS
	if st, _ := h.respond(tunA, runtimeA, c.ShardToken, resp); st != 200 {
		t.Fatalf("respond: %d", st)
	}
	return c
}

func asTunnelHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t, func(c *Config) {
		c.Tunnels[0].AuthMode = AuthOAuth
		c.Tunnels[0].OAuth.AuthorizationServer = ASTunnel
	}, Options{})
	if st, _ := h.poll(tunA, runtimeA, 1, time.Millisecond, offerAS); st != 204 {
		t.Fatalf("offering poll: %d", st)
	}
	return h
}

// TestASProxy: with authorization-server: tunnel the relay names itself as
// the authorization server in the protected-resource metadata and serves
// the real server's metadata, fetched through the agent, with its issuer
// and the endpoints on its own origin pointing at the relay, every other
// member into it dropped, and members elsewhere kept. Only declared
// endpoints are served; each request goes to the agent by endpoint name
// (query, body and the client's credentials along), and the answer comes
// back with RFC 9207's iss rewritten and members into the real server
// dropped. The metadata is fetched once.
func TestASProxy(t *testing.T) {
	h := asTunnelHarness(t)
	const real = "http://as.internal:9000"
	relayIssuer := h.url + "/oauth/" + tunA

	got := h.asyncDo("GET", "/.well-known/oauth-protected-resource/v1/mcp/"+tunA, "", nil)
	c := h.next(tunA, runtimeA)
	h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespType: wire.RespOAuthDiscovery, RespCode: 200,
		RespJSON: json.RawMessage(`{"resource":"http://mcp.internal/mcp","authorization_servers":["` + real + `/"],"scopes_supported":["mcp:tools"]}`)})
	r := wait(t, got)
	body := readAll(t, r)
	if r.StatusCode != 200 || body != `{"resource":"`+h.url+`/v1/mcp/`+tunA+`","authorization_servers":["`+relayIssuer+`"],"scopes_supported":["mcp:tools"]}` {
		t.Fatalf("protected-resource metadata: %d %s", r.StatusCode, body)
	}

	got = h.asyncDo("GET", "/.well-known/oauth-authorization-server/oauth/"+tunA, "", nil)
	cmd := h.answerAS(t, wire.Response{RespCode: 200, RespJSON: json.RawMessage(`{"issuer":"` + real + `/",
		"authorization_endpoint":"` + real + `/authorize","token_endpoint":"` + real + `/token","jwks_uri":"https://cdn.example/jwks",
		"revocation_endpoint":"` + real + `/revoke","service_documentation":"https://docs.example/","mtls_endpoint_aliases":{"token_endpoint":"https://mtls.internal/t"},
		"code_challenge_methods_supported":["S256"]}`)})
	if cmd.OAuthAS.Endpoint != wire.ASMetadata {
		t.Fatalf("metadata command: %+v", cmd.OAuthAS)
	}
	r = wait(t, got)
	body = readAll(t, r)
	want := `{"issuer":"` + relayIssuer + `","authorization_endpoint":"` + relayIssuer + `/authorize","token_endpoint":"` + relayIssuer +
		`/token","jwks_uri":"https://cdn.example/jwks","service_documentation":"https://docs.example/","code_challenge_methods_supported":["S256"]}`
	if r.StatusCode != 200 || body != want {
		t.Fatalf("metadata:\n got %s\nwant %s", body, want)
	}
	// The OpenID Connect forms serve the same document, from the cache.
	for _, p := range []string{"/.well-known/openid-configuration/oauth/" + tunA, "/oauth/" + tunA + "/.well-known/openid-configuration"} {
		if r := h.do("GET", p, nil, nil); readAll(t, r) != want {
			t.Errorf("%s: not the cached metadata", p)
		}
	}
	// Undeclared (registration), off-origin (jwks: the client reaches it
	// itself) and unknown endpoints are not served; nothing is queued.
	for _, p := range []string{"register", "jwks", "revoke", "userinfo"} {
		method := "GET"
		if p == "register" {
			method = "POST"
		}
		if r := h.do(method, "/oauth/"+tunA+"/"+p, nil, nil); r.StatusCode != 404 {
			t.Errorf("%s: %d", p, r.StatusCode)
		}
	}
	if r := h.do("GET", "/oauth/"+tunA+"/token", nil, nil); r.StatusCode != 405 || r.Header.Get("Allow") != "POST" {
		t.Errorf("GET token: %d %q", r.StatusCode, r.Header.Get("Allow"))
	}

	got = h.asyncDo("GET", "/oauth/"+tunA+"/authorize?response_type=code&state=s1", "", nil)
	cmd = h.answerAS(t, wire.Response{RespCode: 302, RespHeaders: map[string][]string{
		"Location": {"https://app.example/cb?code=c0de&state=s1&iss=" + strings.ReplaceAll(real, ":", "%3A")}}})
	if cmd.OAuthAS.Endpoint != wire.ASAuthorization || cmd.OAuthAS.Method != "GET" || cmd.OAuthAS.Query != "response_type=code&state=s1" {
		t.Errorf("authorize command: %+v", cmd.OAuthAS)
	}
	r = wait(t, got)
	readAll(t, r)
	if loc := r.Header.Get("Location"); r.StatusCode != 302 || loc != "https://app.example/cb?code=c0de&state=s1&iss="+strings.ReplaceAll(strings.ReplaceAll(relayIssuer, ":", "%3A"), "/", "%2F") {
		t.Errorf("authorize answer: %d Location %q", r.StatusCode, loc)
	}

	got = h.asyncDo("POST", "/oauth/"+tunA+"/token", "grant_type=authorization_code&code=c0de",
		map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Basic Yzpz", "Cookie": "a=b"})
	cmd = h.answerAS(t, wire.Response{RespCode: 200, RespHeaders: map[string][]string{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}},
		RespJSON: json.RawMessage(`{"access_token":"at","token_type":"Bearer","registration_client_uri":"` + real + `/clients/1"}`)})
	if cmd.OAuthAS.Body != "grant_type=authorization_code&code=c0de" || cmd.Headers["Authorization"][0] != "Basic Yzpz" || cmd.Headers["Cookie"] != nil {
		t.Errorf("token command: %+v %v", cmd.OAuthAS, cmd.Headers)
	}
	r = wait(t, got)
	if body := readAll(t, r); r.StatusCode != 200 || body != `{"access_token":"at","token_type":"Bearer"}` || r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("token answer: %d %s %v", r.StatusCode, body, r.Header)
	}
	// The metadata was fetched once: no command is waiting.
	if st, _ := h.poll(tunA, runtimeA, 25, 50*time.Millisecond, offerAS); st != 204 {
		t.Errorf("an extra command was queued: %d", st)
	}
}

// TestASProxyNeedsAnOfferingAgent: without a connected agent that offered
// the extension (an agent of another implementation would skip the
// command), the relay answers 503 at once instead of queuing it; tunnels
// not configured for it have no such routes.
func TestASProxyNeedsAnOfferingAgent(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Tunnels[0].AuthMode = AuthOAuth
		c.Tunnels[0].OAuth.AuthorizationServer = ASTunnel
		c.Tunnels[1].AuthMode = AuthOAuth
	}, Options{})
	h.connect(tunA, runtimeA) // no offer
	r := h.do("GET", "/.well-known/oauth-authorization-server/oauth/"+tunA, nil, nil)
	if body := readAll(t, r); r.StatusCode != 503 || !strings.Contains(body, "temporarily_unavailable") {
		t.Errorf("no offering agent: %d %s", r.StatusCode, body)
	}
	if st, _ := h.poll(tunA, runtimeA, 25, 50*time.Millisecond, offerAS); st != 204 {
		t.Errorf("a command was queued for an agent that cannot take it: %d", st)
	}
	for _, p := range []string{"/.well-known/oauth-authorization-server/oauth/" + tunB, "/oauth/" + tunB + "/token"} {
		if r := h.do("POST", p, nil, nil); r.StatusCode != 404 && r.StatusCode != 405 {
			t.Errorf("%s on a tunnel without it: %d", p, r.StatusCode)
		}
		if r := h.do("GET", p, nil, nil); r.StatusCode != 404 {
			t.Errorf("GET %s on a tunnel without it: %d", p, r.StatusCode)
		}
	}
}

func TestRewriteIss(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://app/cb?code=c&iss=https%3A%2F%2Fas.internal%2F", "https://app/cb?code=c&iss=https%3A%2F%2Frelay%2Foauth%2Ft"},
		{"https://app/cb?iss=https%3A%2F%2Fas.internal&code=c#frag", "https://app/cb?iss=https%3A%2F%2Frelay%2Foauth%2Ft&code=c#frag"},
		{"https://app/cb?code=c&iss=https%3A%2F%2Fother", "https://app/cb?code=c&iss=https%3A%2F%2Fother"},
		{"https://app/cb?code=c&xiss=https%3A%2F%2Fas.internal", "https://app/cb?code=c&xiss=https%3A%2F%2Fas.internal"},
		{"https://app/cb", "https://app/cb"},
	} {
		if got := rewriteIss(tc.in, "https://as.internal/", "https://relay/oauth/t"); got != tc.want {
			t.Errorf("rewriteIss(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEditMembers(t *testing.T) {
	doc := []byte(` { "a" : 1, "b":{"x":[1,2]} ,"c":"s", "d":null } `)
	out, err := editMembers(doc, func(k string, v json.RawMessage) ([]byte, bool) {
		switch k {
		case "b":
			return nil, false
		case "c":
			return []byte(`"t"`), true
		}
		return v, true
	})
	if err != nil || string(out) != `{"a":1,"c":"t","d":null}` {
		t.Fatalf("editMembers = %s, %v", out, err)
	}
	for _, bad := range []string{`[1]`, `{"a":1`, `{"a" 1}`, ``} {
		if _, err := editMembers([]byte(bad), func(string, json.RawMessage) ([]byte, bool) { return nil, true }); err == nil {
			t.Errorf("editMembers(%q) accepted it", bad)
		}
	}
}
