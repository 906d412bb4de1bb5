package relay

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/wire"
)

// testAS is an authorization server for gateway tests: RFC 8414 metadata,
// a JWKS of the keys it currently publishes, and an introspection endpoint
// over the tokens it minted.
type testAS struct {
	t      testing.TB
	srv    *httptest.Server
	issuer string

	mu        sync.Mutex
	rsaKeys   map[string]*rsa.PrivateKey
	ecKeys    map[string]*ecdsa.PrivateKey
	published []string // kids in the JWKS
	active    map[string]map[string]any
	down      bool
	// mdIssuer, when set, is the issuer the metadata names instead of
	// the server's own.
	mdIssuer string

	jwksFetches  atomic.Int64
	introspected atomic.Int64
}

var (
	testRSAOnce sync.Once
	testRSA     [2]*rsa.PrivateKey
)

// testRSAKeys are generated once per test binary: 2048-bit generation is
// slow on small machines.
func testRSAKeys() [2]*rsa.PrivateKey {
	testRSAOnce.Do(func() {
		for i := range testRSA {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			testRSA[i] = k
		}
	})
	return testRSA
}

func newTestAS(t testing.TB) *testAS {
	t.Helper()
	ks := testRSAKeys()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	as := &testAS{t: t, rsaKeys: map[string]*rsa.PrivateKey{"rsa-1": ks[0], "rsa-2": ks[1]},
		ecKeys: map[string]*ecdsa.PrivateKey{"ec-1": ec}, published: []string{"rsa-1", "ec-1"}, active: map[string]map[string]any{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		if as.isDown(w) {
			return
		}
		as.mu.Lock()
		issuer := cmp.Or(as.mdIssuer, as.issuer)
		as.mu.Unlock()
		writeJSON(w, 200, map[string]any{"issuer": issuer, "jwks_uri": as.issuer + "/jwks",
			"authorization_endpoint": as.issuer + "/authorize", "token_endpoint": as.issuer + "/token"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		if as.isDown(w) {
			return
		}
		as.jwksFetches.Add(1)
		writeJSON(w, 200, as.jwks())
	})
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		if as.isDown(w) {
			return
		}
		as.introspected.Add(1)
		_ = r.ParseForm()
		as.mu.Lock()
		claims, ok := as.active[r.PostForm.Get("token")]
		as.mu.Unlock()
		if !ok {
			writeJSON(w, 200, map[string]any{"active": false})
			return
		}
		out := map[string]any{"active": true}
		for k, v := range claims {
			out[k] = v
		}
		writeJSON(w, 200, out)
	})
	as.srv = httptest.NewServer(mux)
	as.issuer = as.srv.URL
	t.Cleanup(as.srv.Close)
	return as
}

func (as *testAS) isDown(w http.ResponseWriter) bool {
	as.mu.Lock()
	defer as.mu.Unlock()
	if as.down {
		w.WriteHeader(http.StatusBadGateway)
	}
	return as.down
}

func (as *testAS) jwks() map[string]any {
	as.mu.Lock()
	defer as.mu.Unlock()
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	var keys []map[string]any
	for _, kid := range as.published {
		if k, ok := as.rsaKeys[kid]; ok {
			keys = append(keys, map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
				"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())})
		}
		if k, ok := as.ecKeys[kid]; ok {
			pt, _ := k.PublicKey.Bytes() // 0x04 || X || Y
			keys = append(keys, map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(pt[1:33]), "y": b64(pt[33:])})
		}
	}
	// An encryption key is never used to verify.
	keys = append(keys, map[string]any{"kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB"})
	return map[string]any{"keys": keys}
}

// mint signs claims with kid's key (RS256 or ES256), defaults filled in.
func (as *testAS) mint(kid string, claims jwt.MapClaims) string {
	as.t.Helper()
	c := jwt.MapClaims{"iss": as.issuer, "sub": "user-42", "exp": time.Now().Add(time.Hour).Unix(),
		"iat": time.Now().Unix(), "scope": "mcp:tools"}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	var tok *jwt.Token
	var key any
	if k, ok := as.rsaKeys[kid]; ok {
		tok, key = jwt.NewWithClaims(jwt.SigningMethodRS256, c), k
	} else {
		tok, key = jwt.NewWithClaims(jwt.SigningMethodES256, c), as.ecKeys[kid]
	}
	tok.Header["kid"] = kid
	tok.Header["typ"] = "at+jwt"
	s, err := tok.SignedString(key)
	if err != nil {
		as.t.Fatal(err)
	}
	return s
}

// gatewayHarness is a relay whose tunnel A is in oauth-gateway mode.
func gatewayHarness(t *testing.T, as *testAS, mutate func(*OAuthConfig)) *harness {
	t.Helper()
	return newHarness(t, func(c *Config) {
		c.Tunnels[0].AuthMode = AuthOAuthGateway
		c.Tunnels[0].ClientKeys = nil
		c.Tunnels[0].OAuth = OAuthConfig{Issuer: as.issuer, Scopes: []string{"mcp:tools"},
			UpstreamHeader: "X-Gateway-Secret", UpstreamSecret: "gw-s3cret"}
		if mutate != nil {
			mutate(&c.Tunnels[0].OAuth)
		}
	}, Options{})
}

// callWith posts a tools/call with token (none when "") and returns the
// response.
func (h *harness) callWith(t *testing.T, token string) <-chan *http.Response {
	auth := ""
	if token != "" {
		auth = "Bearer " + token
	}
	return h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`,
		map[string]string{"Authorization": auth})
}

// TestGatewayJWT: in oauth-gateway mode the relay validates JWT access
// tokens itself: a good one passes (its subject is the caller, no token is
// forwarded, the upstream header is added); a missing token, one for
// another resource, an expired one, one with a bad signature, one from
// another issuer, an HMAC or unsigned one are each refused with 401 and the
// RFC 6750 challenge, and one without the required scope with 403.
func TestGatewayJWT(t *testing.T) {
	as := newTestAS(t)
	h := gatewayHarness(t, as, nil)
	h.connect(tunA, runtimeA)
	resource := h.url + "/v1/mcp/" + tunA
	prm := h.url + "/.well-known/oauth-protected-resource/v1/mcp/" + tunA

	for _, kid := range []string{"rsa-1", "ec-1"} {
		got := h.callWith(t, as.mint(kid, jwt.MapClaims{"aud": resource}))
		c := h.nextWith(tunA, runtimeA, offerCaller)
		if c.Caller != "user-42" {
			t.Errorf("%s: caller %q, want the token's subject", kid, c.Caller)
		}
		if _, ok := c.Headers["Authorization"]; ok {
			t.Errorf("%s: the token was forwarded: %v", kid, c.Headers)
		}
		if v := c.Headers["X-Gateway-Secret"]; len(v) != 1 || v[0] != "gw-s3cret" {
			t.Errorf("%s: upstream header = %v", kid, v)
		}
		h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{}}`), RespCode: 200})
		if r := wait(t, got); r.StatusCode != 200 {
			t.Fatalf("%s: good token: %d %s", kid, r.StatusCode, readAll(t, r))
		}
	}

	other := newTestAS(t) // same key material is not shared: a foreign signer
	other.rsaKeys = map[string]*rsa.PrivateKey{"rsa-1": mustRSA(t)}
	hmac := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": as.issuer, "aud": resource, "sub": "x", "exp": time.Now().Add(time.Hour).Unix()})
	hs, _ := hmac.SignedString([]byte("the-public-key-bytes"))
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": as.issuer, "aud": resource, "sub": "x", "exp": time.Now().Add(time.Hour).Unix()})
	ns, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	forged := as.mint("rsa-1", jwt.MapClaims{"aud": resource})
	forged = forged[:strings.LastIndexByte(forged, '.')+1] + other.mint("rsa-1", jwt.MapClaims{"aud": resource})[strings.LastIndexByte(forged, '.')+1:]
	for _, tc := range []struct {
		name, token string
		status      int
		errCode     string
		desc        string
	}{
		{"missing", "", 401, "", ""},
		{"other resource", as.mint("rsa-1", jwt.MapClaims{"aud": "https://other.example/mcp"}), 401, "invalid_token", "another resource"},
		{"no audience", as.mint("rsa-1", jwt.MapClaims{"aud": nil}), 401, "invalid_token", "required claim"},
		{"expired", as.mint("rsa-1", jwt.MapClaims{"aud": resource, "exp": time.Now().Add(-time.Hour).Unix()}), 401, "invalid_token", "expired"},
		{"bad signature", forged, 401, "invalid_token", "signature"},
		{"other issuer", as.mint("rsa-1", jwt.MapClaims{"aud": resource, "iss": "https://evil.example"}), 401, "invalid_token", "another authorization server"},
		{"hmac", hs, 401, "invalid_token", ""},
		{"alg none", ns, 401, "invalid_token", ""},
		{"garbage", "not-a-jwt", 401, "invalid_token", "malformed"},
		{"missing scope", as.mint("rsa-1", jwt.MapClaims{"aud": resource, "scope": "other"}), 403, "insufficient_scope", "scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := wait(t, h.callWith(t, tc.token))
			body := readAll(t, r)
			if r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, tc.status, body)
			}
			ch := r.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(ch, `Bearer resource_metadata="`+prm+`"`) || !strings.Contains(ch, `scope="mcp:tools"`) {
				t.Errorf("challenge %q", ch)
			}
			if tc.errCode == "" && strings.Contains(ch, "error=") {
				t.Errorf("a request without a token must get no error code (RFC 6750 3.1): %q", ch)
			}
			if tc.errCode != "" && !strings.Contains(ch, `error="`+tc.errCode+`"`) {
				t.Errorf("challenge %q, want error %q", ch, tc.errCode)
			}
			if !strings.Contains(ch, tc.desc) {
				t.Errorf("challenge %q does not say %q", ch, tc.desc)
			}
			if tc.token != "" && strings.Contains(body, tc.token) {
				t.Errorf("the refusal echoes the token")
			}
		})
	}
	// Nothing refused reached the agent.
	if st, cmds := h.poll(tunA, runtimeA, 25, 50*time.Millisecond, nil); st != 204 {
		t.Errorf("refused calls were queued: %d %v", st, cmds)
	}
}

func mustRSA(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestGatewayHidesUpstreamChallenge: in gateway mode the MCP server is no
// OAuth resource server; a challenge of its own (say, after the gateway
// secret rotated on one side only) is not passed to the client, whose
// authorization server is the relay's.
func TestGatewayHidesUpstreamChallenge(t *testing.T) {
	as := newTestAS(t)
	h := gatewayHarness(t, as, nil)
	h.connect(tunA, runtimeA)
	got := h.callWith(t, as.mint("rsa-1", jwt.MapClaims{"aud": h.url + "/v1/mcp/" + tunA}))
	c := h.next(tunA, runtimeA)
	h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespCode: 401,
		RespHeaders: map[string][]string{"WWW-Authenticate": {`Bearer resource_metadata="http://mcp.internal/.well-known/oauth-protected-resource"`}}})
	r := wait(t, got)
	readAll(t, r)
	if r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") != "" {
		t.Fatalf("status %d, challenge %q: the MCP server's challenge reached the client", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
}

// TestGatewayKeyRotation: a token signed with a key the relay has not seen
// makes it fetch the key set again (so a rotation is followed at once), but
// a burst of unknown kids fetches it at most once per refresh interval.
func TestGatewayKeyRotation(t *testing.T) {
	as := newTestAS(t)
	h := gatewayHarness(t, as, func(o *OAuthConfig) { o.UpstreamHeader, o.UpstreamSecret, o.Scopes = "", "", nil })
	gw := h.r.tunnel(tunA).conf.Load().gw
	gw.keys.minRefresh = 200 * time.Millisecond
	h.connect(tunA, runtimeA)
	resource := h.url + "/v1/mcp/" + tunA
	pass := func(tok string) int {
		got := h.callWith(t, tok)
		select {
		case r := <-got:
			readAll(t, r)
			return r.StatusCode
		case <-time.After(300 * time.Millisecond):
		}
		c := h.next(tunA, runtimeA)
		h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{}}`), RespCode: 200})
		r := wait(t, got)
		readAll(t, r)
		return r.StatusCode
	}
	if st := pass(as.mint("rsa-1", jwt.MapClaims{"aud": resource})); st != 200 {
		t.Fatalf("first token: %d", st)
	}
	// The AS rotates to rsa-2.
	as.mu.Lock()
	as.published = []string{"rsa-2"}
	as.mu.Unlock()
	time.Sleep(250 * time.Millisecond)
	before := as.jwksFetches.Load()
	if st := pass(as.mint("rsa-2", jwt.MapClaims{"aud": resource})); st != 200 {
		t.Fatalf("token of the new key: %d", st)
	}
	if n := as.jwksFetches.Load() - before; n != 1 {
		t.Errorf("rotation fetched the key set %d times, want 1", n)
	}
	// A burst of unknown kids within the refresh interval: at most one fetch.
	time.Sleep(250 * time.Millisecond)
	before = as.jwksFetches.Load()
	for i := range 20 {
		tok := as.mint("rsa-2", jwt.MapClaims{"aud": resource, "jti": i})
		p := jwt.NewParser()
		parsed, _, _ := p.ParseUnverified(tok, jwt.MapClaims{})
		parsed.Header["kid"] = "nope-" + string(rune('a'+i))
		forged, _ := parsed.SignedString(as.rsaKeys["rsa-2"])
		if st := pass(forged); st != 401 {
			t.Fatalf("unknown kid: %d", st)
		}
	}
	if n := as.jwksFetches.Load() - before; n > 1 {
		t.Errorf("20 unknown kids fetched the key set %d times, want at most 1 per interval", n)
	}
}

// TestGatewayIntrospection: with introspection-url the relay asks the
// authorization server about each token (RFC 7662): an active token for
// this resource passes with its subject as the caller, an inactive one, one
// for another resource and one from another issuer are refused; verdicts
// are remembered briefly, so a second call does not ask again.
func TestGatewayIntrospection(t *testing.T) {
	as := newTestAS(t)
	h := gatewayHarness(t, as, func(o *OAuthConfig) {
		o.IntrospectionURL = as.issuer + "/introspect"
		o.IntrospectionClientID, o.IntrospectionClientSecret = "relay", "relay-secret"
	})
	h.connect(tunA, runtimeA)
	resource := h.url + "/v1/mcp/" + tunA
	as.mu.Lock()
	as.active["good-token"] = map[string]any{"sub": "intro-user", "aud": []string{resource}, "scope": "mcp:tools", "iss": as.issuer,
		"exp": time.Now().Add(time.Hour).Unix()}
	as.active["foreign-token"] = map[string]any{"sub": "x", "aud": "https://other.example/mcp", "scope": "mcp:tools"}
	as.active["other-iss"] = map[string]any{"sub": "x", "aud": resource, "scope": "mcp:tools", "iss": "https://evil.example"}
	as.mu.Unlock()
	for range 2 {
		got := h.callWith(t, "good-token")
		c := h.nextWith(tunA, runtimeA, offerCaller)
		if c.Caller != "intro-user" {
			t.Errorf("caller %q", c.Caller)
		}
		h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{}}`), RespCode: 200})
		if r := wait(t, got); r.StatusCode != 200 {
			t.Fatalf("good token: %d", r.StatusCode)
		}
	}
	if n := as.introspected.Load(); n != 1 {
		t.Errorf("introspected %d times for two calls, want 1 (the verdict is remembered)", n)
	}
	for tok, desc := range map[string]string{"inactive-token": "not active", "foreign-token": "another resource", "other-iss": "another authorization server"} {
		r := wait(t, h.callWith(t, tok))
		readAll(t, r)
		if ch := r.Header.Get("WWW-Authenticate"); r.StatusCode != 401 || !strings.Contains(ch, `error="invalid_token"`) || !strings.Contains(ch, desc) {
			t.Errorf("%s: %d %q", tok, r.StatusCode, ch)
		}
	}
}

// TestGatewayASDown: when the authorization server cannot be reached the
// relay cannot judge a token: 503 with Retry-After, never 401 (which would
// send the client into a new authorization for nothing).
func TestGatewayASDown(t *testing.T) {
	as := newTestAS(t)
	as.down = true
	h := gatewayHarness(t, as, nil)
	h.connect(tunA, runtimeA)
	r := wait(t, h.callWith(t, as.mint("rsa-1", jwt.MapClaims{"aud": h.url + "/v1/mcp/" + tunA})))
	readAll(t, r)
	if r.StatusCode != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
}

// TestGatewayMetadataNamesAnotherIssuer: authorization server metadata
// that names an issuer other than the configured one (RFC 8414 section
// 3.3: an impostor's document, or a misconfigured path) is not trusted: no
// key set is fetched from the jwks_uri it names, and a token, even one
// signed by the keys there, is neither accepted nor called invalid: 503.
func TestGatewayMetadataNamesAnotherIssuer(t *testing.T) {
	as := newTestAS(t)
	as.mdIssuer = "https://impostor.example"
	h := gatewayHarness(t, as, nil)
	h.connect(tunA, runtimeA)
	r := wait(t, h.callWith(t, as.mint("rsa-1", jwt.MapClaims{"aud": h.url + "/v1/mcp/" + tunA})))
	body := readAll(t, r)
	if r.StatusCode != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d (Retry-After %q): %s", r.StatusCode, r.Header.Get("Retry-After"), body)
	}
	if n := as.jwksFetches.Load(); n != 0 {
		t.Fatalf("the key set of metadata naming another issuer was fetched %d times", n)
	}
	if st, cmds := h.poll(tunA, runtimeA, 25, 50*time.Millisecond, nil); st != 204 {
		t.Errorf("the call was queued: %d %v", st, cmds)
	}
}

// TestGatewayCallerInRelayChain: the verified token's subject is the caller
// the relay's own chain sees (a relay-side policy per token subject, as
// toolguard's callers), on the request and on the response, and a stage
// that refuses one subject leaves another's call alone.
func TestGatewayCallerInRelayChain(t *testing.T) {
	as := newTestAS(t)
	var mu sync.Mutex
	var seen []string
	policy := &fnStage{name: "per-subject", hooks: map[engine.Hook]bool{engine.HookRequest: true, engine.HookResponse: true},
		fn: func(m *engine.Message) engine.Result {
			mu.Lock()
			seen = append(seen, m.Hook.String()+":"+m.Caller)
			mu.Unlock()
			if m.Hook == engine.HookRequest && m.Caller == "mallory" {
				return engine.Result{Action: engine.Reject, Status: 403, Error: &engine.RPCError{Code: -32001, Message: "denied for this subject"}}
			}
			return engine.Result{}
		}}
	h := newHarness(t, func(c *Config) {
		c.Tunnels[0].AuthMode = AuthOAuthGateway
		c.Tunnels[0].ClientKeys = nil
		c.Tunnels[0].OAuth = OAuthConfig{Issuer: as.issuer, UpstreamHeader: "X-Gateway-Secret", UpstreamSecret: "gw-s3cret"}
	}, Options{Pipeline: pipelineOf(policy)})
	h.connect(tunA, runtimeA)
	resource := h.url + "/v1/mcp/" + tunA

	r := wait(t, h.callWith(t, as.mint("rsa-1", jwt.MapClaims{"aud": resource, "sub": "mallory"})))
	if body := readAll(t, r); r.StatusCode != 403 || !strings.Contains(body, "denied for this subject") {
		t.Fatalf("mallory: %d %s", r.StatusCode, body)
	}
	got := h.callWith(t, as.mint("rsa-1", jwt.MapClaims{"aud": resource, "sub": "alice@example"}))
	c := h.next(tunA, runtimeA)
	h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{}}`), RespCode: 200})
	if r := wait(t, got); r.StatusCode != 200 {
		t.Fatalf("alice: %d %s", r.StatusCode, readAll(t, r))
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"request:mallory", "request:alice@example", "response:alice@example"}; !slices.Equal(seen, want) {
		t.Fatalf("the relay's chain saw callers %q, want %q", seen, want)
	}
}

// TestGatewayMetadata: the protected-resource metadata of a gateway tunnel
// is the relay's own (the relay is the resource; the configured issuer its
// authorization server), served without the tunnel.
func TestGatewayMetadata(t *testing.T) {
	as := newTestAS(t)
	h := gatewayHarness(t, as, nil)
	resp := h.do("GET", "/.well-known/oauth-protected-resource/v1/mcp/"+tunA, nil, nil)
	var md map[string]any
	_ = json.Unmarshal([]byte(readAll(t, resp)), &md)
	if resp.StatusCode != 200 || md["resource"] != h.url+"/v1/mcp/"+tunA {
		t.Fatalf("%d %v", resp.StatusCode, md)
	}
	if as, _ := md["authorization_servers"].([]any); len(as) != 1 || as[0] != h.r.tunnel(tunA).conf.Load().oauth.Issuer {
		t.Errorf("authorization_servers = %v", md["authorization_servers"])
	}
}

// TestGatewayConfig: gateway settings are checked at load, each error
// naming its field.
func TestGatewayConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode string
		o    OAuthConfig
		want string
	}{
		{"no issuer", AuthOAuthGateway, OAuthConfig{}, "oauth.issuer: required"},
		{"http issuer off loopback", AuthOAuthGateway, OAuthConfig{Issuer: "http://as.example"}, "oauth.issuer: must be https"},
		{"both validations", AuthOAuthGateway, OAuthConfig{Issuer: "https://as.example", JWKSURL: "https://as.example/k", IntrospectionURL: "https://as.example/i"}, "exclude each other"},
		{"secret without header", AuthOAuthGateway, OAuthConfig{Issuer: "https://as.example", UpstreamSecret: "x"}, "upstream-secret: needs upstream-header"},
		{"header without secret", AuthOAuthGateway, OAuthConfig{Issuer: "https://as.example", UpstreamHeader: "X-Gw"}, "upstream-secret: required"},
		{"forwarded header", AuthOAuthGateway, OAuthConfig{Issuer: "https://as.example", UpstreamHeader: "Mcp-Session-Id", UpstreamSecret: "x"}, "upstream-header"},
		{"gateway keys in oauth mode", AuthOAuth, OAuthConfig{Issuer: "https://as.example"}, "oauth-gateway only"},
		{"tunnel AS in gateway mode", AuthOAuthGateway, OAuthConfig{Issuer: "https://as.example", AuthorizationServer: ASTunnel}, "needs auth-mode oauth"},
		{"bad scope", AuthOAuthGateway, OAuthConfig{Issuer: "https://as.example", Scopes: []string{"a b"}}, "scopes[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig("http://127.0.0.1:1")
			cfg.Tunnels[0].AuthMode, cfg.Tunnels[0].OAuth = tc.mode, tc.o
			_, err := New(cfg, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want %q", err, tc.want)
			}
			if tc.o.UpstreamSecret != "" && strings.Contains(err.Error(), tc.o.UpstreamSecret+`"`) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

// BenchmarkGatewayVerify is the cost of validating one bearer token with a
// cached key set: "jwt" checks the signature and claims every time (a token
// not seen before), "remembered" is a token seen within the last minute
// (every later call with the same token), and "signature" is the bare
// signature verification with crypto/* in the same run, the floor of "jwt"
// on this machine.
func BenchmarkGatewayVerify(b *testing.B) {
	as := newTestAS(b)
	aud := "https://relay.example/v1/mcp/" + tunA
	for _, kid := range []string{"rsa-1", "ec-1"} {
		g := newGateway(OAuthConfig{Issuer: as.issuer, Scopes: []string{"mcp:tools"}}, aud, defaultASClient())
		tok := as.mint(kid, jwt.MapClaims{"aud": aud})
		if _, err := g.verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
		dot := strings.LastIndexByte(tok, '.')
		sig, _ := base64.RawURLEncoding.DecodeString(tok[dot+1:])
		b.Run(kid+"/signature", func(b *testing.B) {
			for b.Loop() {
				h := sha256.Sum256([]byte(tok[:dot]))
				if k, ok := as.rsaKeys[kid]; ok {
					if rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, h[:], sig) != nil {
						b.Fatal("bad signature")
					}
				} else if !ecdsa.Verify(&as.ecKeys[kid].PublicKey, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
					b.Fatal("bad signature")
				}
			}
		})
		b.Run(kid+"/jwt", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, err := g.verifyJWT(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(kid+"/remembered", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.verify(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
