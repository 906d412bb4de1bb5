package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: stack.mcpURL, authMode: relay.AuthOAuth}}})
	te := h.tunnel(0)
	out := runTSOAuthClient(t, te.mcpURL, nil)
	if out.OK || out.Token != "" {
		t.Fatalf("an audience-strict server accepted a token for the relay's URL: %+v", out)
	}
	if out.Authorize.Resource != te.mcpURL {
		t.Errorf("resource %q, want the relay's URL", out.Authorize.Resource)
	}
}
