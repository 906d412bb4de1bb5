package httpbinding

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicemcp/sluice/engine/wire"
)

// asWorld is an MCP server, its authorization server and a third origin,
// each recording what reached it.
type asWorld struct {
	mcp, as, other *httptest.Server
	mu             sync.Mutex
	asked          []string // "METHOD origin-less path?query" of every request to as and other
	asHeaders      []http.Header
	otherHits      atomic.Int64
	metaFetches    atomic.Int64
	metadata       func(w *asWorld) map[string]any
}

func newASWorld(t *testing.T) *asWorld {
	t.Helper()
	w := &asWorld{}
	w.other = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.otherHits.Add(1)
		rw.WriteHeader(200)
	}))
	t.Cleanup(w.other.Close)
	w.as = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		w.asked = append(w.asked, r.Method+" "+r.URL.RequestURI())
		w.asHeaders = append(w.asHeaders, r.Header.Clone())
		w.mu.Unlock()
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			w.metaFetches.Add(1)
			md := map[string]any{"issuer": w.as.URL, "authorization_endpoint": w.as.URL + "/authorize",
				"token_endpoint": w.as.URL + "/token", "jwks_uri": w.other.URL + "/jwks"}
			if w.metadata != nil {
				md = w.metadata(w)
			}
			_ = json.NewEncoder(rw).Encode(md)
		case "/authorize":
			if r.URL.Query().Get("login") == "1" {
				http.Redirect(rw, r, "/login?next=x", http.StatusFound)
				return
			}
			http.Redirect(rw, r, "https://app.example/cb?code=c0de&state="+r.URL.Query().Get("state"), http.StatusFound)
		case "/token":
			b, _ := io.ReadAll(r.Body)
			rw.Header().Set("Content-Type", "application/json")
			rw.Header().Set("Cache-Control", "no-store")
			rw.Header().Set("X-Internal-Trace", "secret-host-name")
			_, _ = rw.Write([]byte(`{"access_token":"at-` + strings.TrimPrefix(string(b), "grant_type=") + `","token_type":"Bearer"}`))
		default:
			http.NotFound(rw, r)
		}
	}))
	t.Cleanup(w.as.Close)
	w.mcp = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/oauth-protected-resource/mcp" {
			_ = json.NewEncoder(rw).Encode(map[string]any{"resource": w.mcp.URL + "/mcp", "authorization_servers": []string{w.as.URL}})
			return
		}
		rw.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(w.mcp.Close)
	return w
}

func (w *asWorld) binding(t *testing.T) *Binding {
	t.Helper()
	b, err := New(Config{URL: w.mcp.URL + "/mcp", ExtraHeaders: http.Header{"X-Mcp-Secret": {"for-the-mcp-server-only"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func oauthErr(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
		Desc  string `json:"error_description"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("refusal is not an OAuth error object: %s", body)
	}
	return e.Error + ": " + e.Desc
}

// TestOAuthASRequests: the binding makes an oauth-as request only to the URL
// the authorization server's metadata declares on the server's own origin:
// the token endpoint gets the client's body and credentials (but never the
// MCP server's extra headers); an endpoint declared on another origin is
// refused unfetched; a redirect to the client passes, one into the server
// (a login page) is refused without its address; the metadata is the
// document as fetched, and discovery is cached.
func TestOAuthASRequests(t *testing.T) {
	w := newASWorld(t)
	b := w.binding(t)
	ctx := context.Background()

	rep, err := b.OAuthAS(ctx, &wire.ASRequest{Endpoint: wire.ASToken, Method: "POST", Body: "grant_type=authorization_code"},
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Authorization": {"Basic Yzpz"}, "X-Evil": {"1"}})
	if err != nil || rep.Status != 200 || string(rep.Body) != `{"access_token":"at-authorization_code","token_type":"Bearer"}` {
		t.Fatalf("token: %v %+v %s", err, rep, rep.Body)
	}
	if rep.Header.Get("Cache-Control") != "no-store" || rep.Header.Get("X-Internal-Trace") != "" {
		t.Errorf("token answer headers %v: want the extension's selection only", rep.Header)
	}
	w.mu.Lock()
	last := w.asHeaders[len(w.asHeaders)-1]
	w.mu.Unlock()
	if last.Get("Authorization") != "Basic Yzpz" || last.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("the token endpoint did not get the client's credentials and content type: %v", last)
	}
	if last.Get("X-Mcp-Secret") != "" || last.Get("X-Evil") != "" {
		t.Errorf("the authorization server got headers it must not: %v", last)
	}

	rep, _ = b.OAuthAS(ctx, &wire.ASRequest{Endpoint: wire.ASJWKS, Method: "GET"}, nil)
	if rep.Status != 404 || w.otherHits.Load() != 0 {
		t.Errorf("jwks_uri off the issuer's origin: %d (%s), third origin hit %d times", rep.Status, rep.Body, w.otherHits.Load())
	}
	rep, _ = b.OAuthAS(ctx, &wire.ASRequest{Endpoint: wire.ASRegistration, Method: "POST"}, nil)
	if rep.Status != 404 {
		t.Errorf("an undeclared endpoint: %d", rep.Status)
	}

	rep, _ = b.OAuthAS(ctx, &wire.ASRequest{Endpoint: wire.ASAuthorization, Method: "GET", Query: "state=s1&response_type=code"}, nil)
	if rep.Status != 302 || rep.Header.Get("Location") != "https://app.example/cb?code=c0de&state=s1" {
		t.Errorf("authorize: %d %v", rep.Status, rep.Header)
	}
	rep, _ = b.OAuthAS(ctx, &wire.ASRequest{Endpoint: wire.ASAuthorization, Method: "GET", Query: "login=1"}, nil)
	if rep.Status != 502 || rep.Header.Get("Location") != "" || strings.Contains(string(rep.Body), w.as.URL) {
		t.Errorf("redirect into the authorization server: %d %v %s", rep.Status, rep.Header, rep.Body)
	}
	if e := oauthErr(t, rep.Body); !strings.Contains(e, "only the agent's network can reach") {
		t.Errorf("refusal %q", e)
	}

	rep, _ = b.OAuthAS(ctx, &wire.ASRequest{Endpoint: wire.ASMetadata, Method: "GET"}, nil)
	var md map[string]any
	if rep.Status != 200 || json.Unmarshal(rep.Body, &md) != nil || md["issuer"] != w.as.URL {
		t.Errorf("metadata: %d %s", rep.Status, rep.Body)
	}
	if n := w.metaFetches.Load(); n != 1 {
		t.Errorf("the metadata was fetched %d times for six requests, want 1 (cached)", n)
	}
}

// TestOAuthASDiscoveryRefusals: metadata that names another issuer, and
// protected-resource metadata without an authorization server, are
// refused (502) without a request to any endpoint.
func TestOAuthASDiscoveryRefusals(t *testing.T) {
	w := newASWorld(t)
	w.metadata = func(w *asWorld) map[string]any {
		return map[string]any{"issuer": "https://impostor.example", "token_endpoint": w.as.URL + "/token"}
	}
	rep, err := w.binding(t).OAuthAS(context.Background(), &wire.ASRequest{Endpoint: wire.ASToken, Method: "POST"}, nil)
	if err != nil || rep.Status != 502 || !strings.Contains(oauthErr(t, rep.Body), "another issuer") {
		t.Fatalf("issuer mismatch: %v %+v", err, rep)
	}
	w.mu.Lock()
	for _, a := range w.asked {
		if strings.HasPrefix(a, "POST /token") {
			t.Errorf("the token endpoint of a mismatched issuer was called")
		}
	}
	w.mu.Unlock()

	bare := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/oauth-protected-resource") {
			_, _ = rw.Write([]byte(`{"resource":"x"}`))
			return
		}
		rw.WriteHeader(401)
	}))
	defer bare.Close()
	b, _ := New(Config{URL: bare.URL + "/mcp"}, Options{})
	defer b.Close()
	rep, _ = b.OAuthAS(context.Background(), &wire.ASRequest{Endpoint: wire.ASMetadata, Method: "GET"}, nil)
	if rep.Status != 502 || !strings.Contains(oauthErr(t, rep.Body), "names no authorization server") {
		t.Errorf("no authorization server: %+v %s", rep, rep.Body)
	}
}
