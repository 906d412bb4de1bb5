package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/agent"
	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/relay"
)

// oauthStack is the TypeScript SDK's example server in --oauth mode: an MCP
// server and its own authorization server, both on loopback.
type oauthStack struct {
	mcpURL   string // http://localhost:PORT/mcp, as the server knows itself
	asOrigin string // http://localhost:AUTHPORT
	proc     *proc
}

func exampleServerJS() string {
	return filepath.Join(tsSDKDir(), "dist", "esm", "examples", "server", "simpleStreamableHttp.js")
}

// startOAuthStack starts the example server with --oauth (and
// --oauth-strict when strict: it then refuses tokens whose resource is not
// its own URL), forced onto 127.0.0.1.
func startOAuthStack(t testing.TB, strict bool) *oauthStack {
	t.Helper()
	requireFiles(t, exampleServerJS())
	node := node20(t)
	preload, err := filepath.Abs(filepath.Join("testdata", "loopback.cjs"))
	if err != nil {
		t.Fatal(err)
	}
	mcpPort, asPort := freePort(t), freePort(t)
	args := []string{node, "--require", preload, exampleServerJS(), "--oauth"}
	if strict {
		args = append(args, "--oauth-strict")
	}
	p := startProc(t, "ts-oauth-example", []string{"MCP_PORT=" + strconv.Itoa(mcpPort), "MCP_AUTH_PORT=" + strconv.Itoa(asPort)}, args...)
	waitTCP(t, p, "127.0.0.1:"+strconv.Itoa(mcpPort))
	waitTCP(t, p, "127.0.0.1:"+strconv.Itoa(asPort))
	return &oauthStack{
		mcpURL:   "http://localhost:" + strconv.Itoa(mcpPort) + "/mcp",
		asOrigin: "http://localhost:" + strconv.Itoa(asPort),
		proc:     p,
	}
}

// tsOAuthOut is the JSON line testdata/ts-oauth-client.mjs prints.
type tsOAuthOut struct {
	OK              bool     `json:"ok"`
	Error           string   `json:"error"`
	Fetched         []string `json:"fetched"`
	Refused         []string `json:"refused"`
	UnauthStatus    int      `json:"unauthStatus"`
	UnauthChallenge string   `json:"unauthChallenge"`
	ClientID        string   `json:"clientId"`
	ClientSecret    string   `json:"clientSecret"`
	Token           string   `json:"token"`
	Code            string   `json:"code"`
	Authorize       struct {
		Origin              string `json:"origin"`
		Resource            string `json:"resource"`
		CodeChallengeMethod string `json:"codeChallengeMethod"`
		HasChallenge        bool   `json:"hasChallenge"`
	} `json:"authorize"`
	AuthorizeStatus int      `json:"authorizeStatus"`
	RedirectedTo    string   `json:"redirectedTo"`
	CallbackState   string   `json:"callbackState"`
	CallbackIss     string   `json:"callbackIss"`
	Tools           []string `json:"tools"`
	Result          string   `json:"result"`
}

// runTSOAuthClient runs the headless OAuth client against url; allow lists
// the origins it may contact (none: any).
func runTSOAuthClient(t *testing.T, url string, allow []string, env ...string) tsOAuthOut {
	t.Helper()
	requireFiles(t, filepath.Join(tsSDKDir(), "package.json"))
	node := node20(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	script, _ := filepath.Abs(filepath.Join("testdata", "ts-oauth-client.mjs"))
	env = append(env, "MCP_URL="+url, "MCP_SDK_DIR="+tsSDKDir(), "ALLOW_ORIGINS="+strings.Join(allow, ","))
	stdout, err := runNode(t, ctx, node, env, script)
	var out tsOAuthOut
	if jerr := json.Unmarshal(stdout, &out); jerr != nil {
		t.Fatalf("ts-oauth-client output (exit %v): %v\n%s", err, jerr, stdout)
	}
	return out
}

func origin(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Scheme + "://" + p.Host
}

// assertNoSecretsLogged fails t when any captured log line holds one of
// secrets (tokens, codes, client secrets, discovery URLs).
func assertNoSecretsLogged(t *testing.T, logs *enginetest.SyncBuffer, secrets map[string]string) {
	t.Helper()
	text := logs.String()
	lines := strings.Count(text, "\n")
	if os.Getenv("SLUICE_E2E_SHOWLOGS") == "1" {
		t.Log(text)
	}
	for _, c := range []string{`"component":"relay"`, `"component":"agent"`} {
		if !strings.Contains(text, c) {
			t.Fatalf("no log line with %s among %d: the capture is broken", c, lines)
		}
	}
	for what, v := range secrets {
		if v == "" {
			t.Errorf("no %s to look for: the flow did not produce one", what)
			continue
		}
		for _, line := range strings.Split(text, "\n") {
			if strings.Contains(line, v) {
				t.Errorf("a log line holds the %s: %s", what, line)
				break
			}
		}
	}
	t.Logf("checked %d relay and agent log lines (debug level) for %d secrets", lines, len(secrets))
}

// TestOAuthTransparent: the TypeScript SDK's example server in --oauth mode
// (MCP server plus its own authorization server) behind sluice run, and the
// SDK's OAuth client, headless, through the relay URL alone. A call without
// a token gets the server's 401 with WWW-Authenticate pointing at the
// relay's metadata; the client discovers through the relay, registers,
// authorizes with PKCE (S256) and resource = the relay's URL, gets a token,
// lists tools and calls one; the token reaches the server (which checks it).
// No log line of the relay or the agent holds the token, the code, the
// client secret or a discovery URL.
func TestOAuthTransparent(t *testing.T) {
	stack := startOAuthStack(t, false)
	var logs enginetest.SyncBuffer
	h := newHarness(t, harnessOptions{logs: &logs, tunnels: []tunnelSpec{{serverURL: stack.mcpURL, authMode: relay.AuthOAuth}}})
	te := h.tunnel(0)
	relayOrigin := origin(te.mcpURL)
	out := runTSOAuthClient(t, te.mcpURL, []string{relayOrigin, stack.asOrigin})
	if !out.OK {
		t.Fatalf("client failed: %s\n%+v", out.Error, out)
	}
	prm := relayOrigin + "/.well-known/oauth-protected-resource/v1/mcp/" + te.id
	if out.UnauthStatus != 401 || !strings.Contains(out.UnauthChallenge, `resource_metadata="`+prm+`"`) {
		t.Errorf("call without a token: %d %q, want 401 with resource_metadata=%q", out.UnauthStatus, out.UnauthChallenge, prm)
	}
	if strings.Contains(out.UnauthChallenge, stack.mcpURL) || !strings.Contains(out.UnauthChallenge, `error="invalid_token"`) {
		t.Errorf("challenge %q: only resource_metadata may change", out.UnauthChallenge)
	}
	if out.Authorize.Resource != te.mcpURL || out.Authorize.CodeChallengeMethod != "S256" || !out.Authorize.HasChallenge {
		t.Errorf("authorization request: resource %q (want the relay's URL %q), PKCE %q/%v",
			out.Authorize.Resource, te.mcpURL, out.Authorize.CodeChallengeMethod, out.Authorize.HasChallenge)
	}
	if out.Authorize.Origin != stack.asOrigin {
		t.Errorf("authorized at %q, want the authorization server %q directly", out.Authorize.Origin, stack.asOrigin)
	}
	if !slices.Contains(out.Fetched, "GET "+prm) {
		t.Errorf("the client did not discover through the relay: %v", out.Fetched)
	}
	if !slices.Contains(out.Tools, "greet") || out.Result != "Hello, tunnel!" {
		t.Errorf("tools %v, result %q", out.Tools, out.Result)
	}
	// The token reached the MCP server, which validated it.
	if !strings.Contains(stack.proc.out.String(), "Authenticated user") {
		t.Errorf("the MCP server never saw an authenticated request:\n%s", stack.proc.out.String())
	}
	assertNoSecretsLogged(t, &logs, map[string]string{
		"access token": out.Token, "authorization code": out.Code, "client secret": out.ClientSecret,
		"authorization server": stack.asOrigin, "MCP server's metadata URL": "/.well-known/oauth-protected-resource/mcp",
	})
}

// TestOAuthTransparentStrictServer: tokens are minted for the relay's URL,
// so an audience-strict MCP server (the example with --oauth-strict, which
// accepts only its own URL as the resource) refuses them: the case gateway
// mode is for (docs/oauth.md).
func TestOAuthTransparentStrictServer(t *testing.T) {
	stack := startOAuthStack(t, true)
	var logs enginetest.SyncBuffer
	h := newHarness(t, harnessOptions{logs: &logs, tunnels: []tunnelSpec{{serverURL: stack.mcpURL, authMode: relay.AuthOAuth}}})
	te := h.tunnel(0)
	out := runTSOAuthClient(t, te.mcpURL, nil)
	if out.OK || out.Token != "" {
		t.Fatalf("an audience-strict server accepted a token for the relay's URL: %+v", out)
	}
	if out.Authorize.Resource != te.mcpURL {
		t.Errorf("resource %q, want the relay's URL", out.Authorize.Resource)
	}
	// A failed flow logs no more than a good one.
	assertNoSecretsLogged(t, &logs, map[string]string{"authorization code": out.Code, "client secret": out.ClientSecret,
		"authorization server": stack.asOrigin, "MCP server's metadata URL": "/.well-known/oauth-protected-resource/mcp"})
}

// gatewayGuard puts a check in front of an MCP server: requests without
// the gateway's header secret get 401 (and are counted, except the agent's
// readiness probe), and it records whether any request carried an
// Authorization header (a token must never reach it).
type gatewayGuard struct {
	mu        sync.Mutex
	passed    int
	refused   int
	withToken int
}

func (g *gatewayGuard) wrap(t *testing.T, target, header, secret string) string {
	t.Helper()
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	proxy.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		if r.Header.Get("Authorization") != "" {
			g.withToken++
		}
		ok := r.Header.Get(header) == secret
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		switch {
		case ok:
			g.passed++
		case !bytes.Contains(body, []byte(`"sluice-readiness-probe"`)):
			// The agent's own readiness probe goes to the server directly,
			// not through the gateway; anything else must have the secret.
			g.refused++
		}
		g.mu.Unlock()
		if !ok {
			http.Error(w, "not through the gateway", http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + u.Path
}

// gatewayEnv is a relay and agent with one oauth-gateway tunnel in front of
// an mcp-go server that trusts only the gateway's header secret.
type gatewayEnv struct {
	h                *harness
	te               *tunnelEnv
	guard            *gatewayGuard
	logs, agentAudit enginetest.SyncBuffer
}

const gatewayHeader = "X-Gateway-Secret"

// newGatewayEnv starts it with o (UpstreamHeader and UpstreamSecret are
// set to gatewayHeader and secret).
func newGatewayEnv(t *testing.T, o relay.OAuthConfig, secret string) *gatewayEnv {
	t.Helper()
	g := &gatewayEnv{guard: &gatewayGuard{}}
	serverURL := g.guard.wrap(t, startGoServer(t).url, gatewayHeader, secret)
	o.UpstreamHeader, o.UpstreamSecret = gatewayHeader, secret
	g.h = newHarness(t, harnessOptions{logs: &g.logs, tunnels: []tunnelSpec{{
		serverURL:    serverURL,
		authMode:     relay.AuthOAuthGateway,
		tunnel:       func(rt *relay.Tunnel) { rt.OAuth = o },
		agentOptions: func(ao *agent.Options) { ao.Audit = slog.New(slog.NewJSONHandler(&g.agentAudit, nil)) },
	}}})
	g.te = g.h.tunnel(0)
	return g
}

// auditOf waits for the agent's audit record of tool.
func (g *gatewayEnv) auditOf(t *testing.T, tool string) map[string]any {
	t.Helper()
	var rec map[string]any
	enginetest.WaitFor(t, "agent audit record of "+tool, func() bool {
		for _, line := range strings.Split(strings.TrimSpace(g.agentAudit.String()), "\n") {
			if json.Unmarshal([]byte(line), &rec) == nil && rec["tool"] == tool {
				return true
			}
		}
		return false
	})
	return rec
}

// checkTrust fails t unless calls reached the MCP server, all with the
// gateway secret and none with a token.
func (g *gatewayEnv) checkTrust(t *testing.T) {
	t.Helper()
	g.guard.mu.Lock()
	defer g.guard.mu.Unlock()
	if g.guard.passed == 0 || g.guard.refused != 0 || g.guard.withToken != 0 {
		t.Errorf("MCP server: %d calls with the gateway secret, %d without, %d carrying a token (want >0, 0, 0)",
			g.guard.passed, g.guard.refused, g.guard.withToken)
	}
}

// TestOAuthGatewayIntrospection: gateway mode against a real authorization
// server, the TypeScript SDK example's (opaque tokens, RFC 7662
// introspection). The MCP server behind the agent is no OAuth resource
// server at all: it accepts only calls with the gateway's header secret.
// The headless SDK client discovers through the relay (whose metadata names
// the authorization server), registers, authorizes with resource = the
// relay's URL and calls a tool; the relay validates the token by
// introspection, forwards no token, and the caller (the token's client)
// reaches the agent's audit. A call without a token gets the relay's own
// 401 challenge, an unknown token 401 invalid_token. No log line holds a
// token, code or client secret.
func TestOAuthGatewayIntrospection(t *testing.T) {
	stack := startOAuthStack(t, false)
	const secret = "gw-9c1f0e7d"
	g := newGatewayEnv(t, relay.OAuthConfig{Issuer: stack.asOrigin + "/", IntrospectionURL: stack.asOrigin + "/introspect",
		Scopes: []string{"mcp:tools"}}, secret)
	te := g.te
	relayOrigin := origin(te.mcpURL)
	out := runTSOAuthClient(t, te.mcpURL, []string{relayOrigin, stack.asOrigin}, "TOOL=echo", `TOOL_ARGS={"message":"through the gateway"}`)
	if !out.OK {
		t.Fatalf("client failed: %s\n%+v", out.Error, out)
	}
	prm := relayOrigin + "/.well-known/oauth-protected-resource/v1/mcp/" + te.id
	if out.UnauthStatus != 401 || out.UnauthChallenge != `Bearer resource_metadata="`+prm+`", scope="mcp:tools"` {
		t.Errorf("call without a token: %d %q", out.UnauthStatus, out.UnauthChallenge)
	}
	if out.Authorize.Resource != te.mcpURL || out.Authorize.CodeChallengeMethod != "S256" {
		t.Errorf("authorization request: resource %q, PKCE %q", out.Authorize.Resource, out.Authorize.CodeChallengeMethod)
	}
	if out.Result != "echo: through the gateway" {
		t.Errorf("result %q", out.Result)
	}
	g.checkTrust(t)
	if rec := g.auditOf(t, "echo"); rec["caller"] != out.ClientID {
		t.Errorf("agent audit %v, want caller %q (the token's client)", rec, out.ClientID)
	}
	// An unknown token.
	st, hdr, _ := rawPost(t, "POST", te.mcpURL, map[string]string{"Content-Type": "application/json",
		"Accept": "application/json, text/event-stream", "Authorization": "Bearer not-a-token-of-this-server"},
		[]byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if ch := hdr.Get("WWW-Authenticate"); st != 401 || !strings.Contains(ch, `error="invalid_token"`) {
		t.Errorf("unknown token: %d %q", st, ch)
	}
	assertNoSecretsLogged(t, &g.logs, map[string]string{
		"access token": out.Token, "authorization code": out.Code, "client secret": out.ClientSecret,
		"gateway secret": secret, "authorization server": stack.asOrigin,
	})
}

// TestOAuthPrivateAuthorizationServer: the same example stack, but the
// client is never given the authorization server's address and may contact
// nothing but the relay (every other fetch is refused and recorded): the
// tunnel is configured with authorization-server: tunnel. The relay's
// protected-resource metadata names the relay's own issuer; its metadata,
// registration, authorization and token endpoints are the real server's,
// reached by the agent. The client registers, authorizes with PKCE and
// resource = the relay's URL, gets a token, lists tools and calls one; the
// MCP server (which checks tokens with its authorization server inside the
// network) accepts it. No log line holds a token, code, client secret or
// the authorization server's address.
func TestOAuthPrivateAuthorizationServer(t *testing.T) {
	stack := startOAuthStack(t, false)
	var logs enginetest.SyncBuffer
	h := newHarness(t, harnessOptions{logs: &logs, tunnels: []tunnelSpec{{
		serverURL: stack.mcpURL, authMode: relay.AuthOAuth,
		tunnel: func(rt *relay.Tunnel) { rt.OAuth.AuthorizationServer = relay.ASTunnel },
	}}})
	te := h.tunnel(0)
	relayOrigin := origin(te.mcpURL)
	out := runTSOAuthClient(t, te.mcpURL, []string{relayOrigin})
	if len(out.Refused) > 0 {
		t.Errorf("the client tried to reach something other than the relay: %v", out.Refused)
	}
	if !out.OK {
		t.Fatalf("client failed: %s\n%+v", out.Error, out)
	}
	for _, f := range out.Fetched {
		if !strings.Contains(f, relayOrigin+"/") {
			t.Errorf("the client contacted %s", f)
		}
	}
	issuer := relayOrigin + "/oauth/" + te.id
	for _, want := range []string{"GET " + relayOrigin + "/.well-known/oauth-authorization-server/oauth/" + te.id,
		"POST " + issuer + "/register", "GET " + issuer + "/authorize", "POST " + issuer + "/token"} {
		if !slices.Contains(out.Fetched, want) {
			t.Errorf("the client did not %s: %v", want, out.Fetched)
		}
	}
	if out.Authorize.Origin != relayOrigin || out.Authorize.Resource != te.mcpURL || out.Authorize.CodeChallengeMethod != "S256" {
		t.Errorf("authorization request: at %q, resource %q, PKCE %q", out.Authorize.Origin, out.Authorize.Resource, out.Authorize.CodeChallengeMethod)
	}
	if out.AuthorizeStatus != 302 || out.RedirectedTo != "http://127.0.0.1:9/sluice-e2e-callback" || out.CallbackState != "sluice-e2e-state" {
		t.Errorf("authorization response: %d to %q, state %q", out.AuthorizeStatus, out.RedirectedTo, out.CallbackState)
	}
	if out.Result != "Hello, tunnel!" {
		t.Errorf("result %q", out.Result)
	}
	asHostPort := strings.TrimPrefix(stack.asOrigin, "http://")
	raw, _ := json.Marshal(out)
	if strings.Contains(strings.ReplaceAll(string(raw), `"refused":[]`, ""), asHostPort) {
		t.Errorf("something the client received names the authorization server (%s): %s", asHostPort, raw)
	}
	assertNoSecretsLogged(t, &logs, map[string]string{
		"access token": out.Token, "authorization code": out.Code, "client secret": out.ClientSecret,
		"authorization server": asHostPort,
	})
}

func oauth2MockServerDir() string { return filepath.Join(npmModules(), "oauth2-mock-server") }

// startJWTAS starts oauth2-mock-server (testdata/jwt-as.mjs) and returns
// its issuer URL.
func startJWTAS(t *testing.T) string {
	t.Helper()
	requireFiles(t, filepath.Join(oauth2MockServerDir(), "package.json"), node22Path())
	script, _ := filepath.Abs(filepath.Join("testdata", "jwt-as.mjs"))
	port := freePort(t)
	p := startProc(t, "oauth2-mock-server", []string{"PORT=" + strconv.Itoa(port), "MOCK_DIR=" + oauth2MockServerDir()}, node22Path(), script)
	waitTCP(t, p, "127.0.0.1:"+strconv.Itoa(port))
	var first struct {
		Issuer string `json:"issuer"`
	}
	enginetest.WaitFor(t, "issuer line", func() bool {
		line, _, _ := strings.Cut(p.out.String(), "\n")
		return json.Unmarshal([]byte(line), &first) == nil && first.Issuer != ""
	})
	return first.Issuer
}

// mintJWT asks the mock server's token endpoint for an access token shaped
// by fields (test_aud, test_exp, test_scope, …).
func mintJWT(t *testing.T, issuer string, fields url.Values) string {
	t.Helper()
	fields.Set("grant_type", "client_credentials")
	fields.Set("client_id", "sluice-e2e")
	if fields.Get("scope") == "" {
		fields.Set("scope", "mcp:tools")
	}
	st, _, body := rawPost(t, "POST", issuer+"/token", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, []byte(fields.Encode()))
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if st != 200 || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("mint token: %d %s", st, body)
	}
	return tok.AccessToken
}

// TestOAuthGatewayJWT: gateway mode against a third-party authorization
// server that signs real JWTs (oauth2-mock-server: RS256, its keys at its
// jwks_uri, OpenID Connect discovery). The relay finds the key set through
// the issuer's metadata and validates each token itself: a good one reaches
// the MCP server (without the token, with the gateway header) and its
// subject is the caller the agent sees; a token for another resource, an
// expired one and one with a bad signature get 401 invalid_token, one
// without the required scope 403 insufficient_scope, each with the relay's
// challenge. No log line holds a token.
func TestOAuthGatewayJWT(t *testing.T) {
	issuer := startJWTAS(t)
	const secret = "gw-3b6e1a90"
	g := newGatewayEnv(t, relay.OAuthConfig{Issuer: issuer, Scopes: []string{"mcp:tools"}}, secret)
	te := g.te
	good := mintJWT(t, issuer, url.Values{"test_aud": {te.mcpURL}, "test_sub": {"alice@example"}})
	run := runMCPGoClient(t, te.mcpURL, map[string]string{"Authorization": "Bearer " + good}, "2025-11-25")
	if run.echo != "echo: ünïcode ✓ 0" {
		t.Fatalf("echo with a good token: %+v", run)
	}
	if rec := g.auditOf(t, "echo"); rec["caller"] != "alice@example" {
		t.Errorf("agent audit caller %v, want the token's subject", rec["caller"])
	}
	g.checkTrust(t)

	forged := mintJWT(t, issuer, url.Values{"test_aud": {te.mcpURL}})
	dot := strings.LastIndexByte(forged, '.')
	sig := []byte(forged[dot+1:])
	// Another base64url character in the middle of the signature: still
	// well-formed, no longer the issuer's signature.
	if sig[len(sig)/2] != 'A' {
		sig[len(sig)/2] = 'A'
	} else {
		sig[len(sig)/2] = 'B'
	}
	forged = forged[:dot+1] + string(sig)
	prm := origin(te.mcpURL) + "/.well-known/oauth-protected-resource/v1/mcp/" + te.id
	secrets := map[string]string{"access token": good, "gateway secret": secret, "authorization server": strings.TrimPrefix(issuer, "http://")}
	for _, tc := range []struct {
		name, token string
		status      int
		code, desc  string
	}{
		{"another resource", mintJWT(t, issuer, url.Values{"test_aud": {"https://other.example/mcp"}}), 401, "invalid_token", "another resource"},
		{"expired", mintJWT(t, issuer, url.Values{"test_aud": {te.mcpURL}, "test_exp": {"-120"}}), 401, "invalid_token", "expired"},
		{"bad signature", forged, 401, "invalid_token", "signature"},
		{"missing scope", mintJWT(t, issuer, url.Values{"test_aud": {te.mcpURL}, "test_scope": {"other"}}), 403, "insufficient_scope", "scope"},
	} {
		secrets[tc.name+" token"] = tc.token
		t.Run(tc.name, func(t *testing.T) {
			st, hdr, body := rawPost(t, "POST", te.mcpURL, map[string]string{"Content-Type": "application/json",
				"Accept": "application/json, text/event-stream", "Authorization": "Bearer " + tc.token},
				[]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}`))
			ch := hdr.Get("WWW-Authenticate")
			if st != tc.status || !strings.HasPrefix(ch, `Bearer resource_metadata="`+prm+`"`) ||
				!strings.Contains(ch, `error="`+tc.code+`"`) || !strings.Contains(ch, tc.desc) {
				t.Errorf("status %d, challenge %q (%s); want %d %s mentioning %q", st, ch, body, tc.status, tc.code, tc.desc)
			}
		})
	}
	assertNoSecretsLogged(t, &g.logs, secrets)
}
