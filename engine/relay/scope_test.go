package relay

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// scopeFixture is a relay with three stored tunnels (t and u in
// client-key mode, o in oauth mode) and the configuration's tunnel A (with
// its runtime and client key, and a configured admin key), and keys of
// every kind: each row of the scope table.
type scopeFixture struct {
	r       *Relay
	t, u, o string
	keys    map[string]string // by row name
	// ids of keys the admin cells read or revoke
	revocable, spareAdmin string
}

// cfgAdminKey is the fixture's admin key from the configuration
// (relay.admin-key).
const cfgAdminKey = "sk_adm_configuredForTheScopeTable"

func newScopeFixture(tb testing.TB) *scopeFixture {
	tb.Helper()
	cfg := baseConfig("http://relay.test")
	cfg.AuthFailures = AuthLimit{Off: true}
	cfg.AdminKeys = []string{cfgAdminKey}
	r, err := New(cfg, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Close)
	a := &admin{t: tb, r: r, key: cfgAdminKey}
	f := &scopeFixture{r: r, keys: map[string]string{"none": "", "configured admin": cfgAdminKey,
		"config runtime (A)": runtimeA, "config client (A)": clientKeyA}}
	f.t = a.createTunnel(`{"name":"t"}`).ID
	f.u = a.createTunnel(`{"name":"u"}`).ID
	f.o = a.createTunnel(`{"name":"o","auth_mode":"oauth"}`).ID
	f.keys["runtime (t)"] = a.createKey(f.t, ScopeRuntime, "rt").Value
	f.keys["client (t)"] = a.createKey(f.t, ScopeClient, "ct").Value
	f.keys["runtime (u)"] = a.createKey(f.u, ScopeRuntime, "ru").Value
	f.keys["client (u)"] = a.createKey(f.u, ScopeClient, "cu").Value
	for _, scope := range []string{ScopeRuntime, ScopeClient} {
		k := a.createKey(f.t, scope, "old")
		if st, b := a.call("DELETE", "/v1/tunnels/"+f.t+"/keys/"+k.ID, "", nil); st != 200 {
			tb.Fatalf("revoke: %d %s", st, b)
		}
		f.keys["revoked "+scope+" (t)"] = k.Value
	}
	f.keys["not a key"] = NewKey(prefixRuntime)
	f.revocable = a.createKey(f.t, ScopeClient, "spare").ID
	adminKey := func(name string) apiKey {
		var k apiKey
		if st, b := a.call("POST", "/v1/organization/admin_api_keys", `{"name":"`+name+`"}`, &k); st != 200 {
			tb.Fatalf("create admin key: %d %s", st, b)
		}
		return k
	}
	f.keys["admin"] = adminKey("ops").Value
	old := adminKey("old")
	if st, b := a.call("DELETE", "/v1/organization/admin_api_keys/"+old.ID, "", nil); st != 200 {
		tb.Fatalf("revoke admin key: %d %s", st, b)
	}
	f.keys["revoked admin"] = old.Value
	f.spareAdmin = adminKey("spare").ID
	return f
}

// scopeRow is a row of the scope table: a key, its scope, and the tunnel it
// belongs to ("t", "u" or "A"; "" for admin keys).
type scopeRow struct {
	name, scope, tunnel string
	valid               bool // an active key (not revoked, not made up)
}

var scopeRows = []scopeRow{
	{name: "none"},
	{name: "not a key"},
	{name: "runtime (t)", scope: ScopeRuntime, tunnel: "t", valid: true},
	{name: "client (t)", scope: ScopeClient, tunnel: "t", valid: true},
	{name: "runtime (u)", scope: ScopeRuntime, tunnel: "u", valid: true},
	{name: "client (u)", scope: ScopeClient, tunnel: "u", valid: true},
	{name: "revoked runtime (t)", scope: ScopeRuntime, tunnel: "t"},
	{name: "revoked client (t)", scope: ScopeClient, tunnel: "t"},
	{name: "config runtime (A)", scope: ScopeRuntime, tunnel: "A", valid: true},
	{name: "config client (A)", scope: ScopeClient, tunnel: "A", valid: true},
	{name: "admin", scope: ScopeAdmin, valid: true},
	{name: "configured admin", scope: ScopeAdmin, valid: true},
	{name: "revoked admin", scope: ScopeAdmin},
}

// Where an endpoint is served.
const (
	onPublic = iota // the public listener (Handler)
	onAdmin         // the admin listener (AdminHandler)
)

// endpoint is one column of the scope table: a request, the scope (and
// tunnel) a key needs for it, and the status it gets once authorized. An
// endpoint with no scope is open: every row, with any key or none, must
// get exactly status ok (a key neither opens nor closes it).
type endpoint struct {
	name     string
	listener int
	scope    string // "" = open to everyone: the answer does not depend on the key
	tunnel   string // the tunnel the path names ("t", "A", "u", "o"), for runtime and client scopes
	method   string
	path     func(f *scopeFixture) string
	body     string
	hdr      map[string]string
	ok       int
}

// tunnelEndpoints are the endpoints a tunnel's keys open, for tunnel x.
func tunnelEndpoints(x string) []endpoint {
	id := func(f *scopeFixture) string {
		switch x {
		case "t":
			return f.t
		case "u":
			return f.u
		case "o":
			return f.o
		}
		return tunA
	}
	return []endpoint{
		{name: "tunnel metadata", scope: ScopeRuntime, method: "GET", path: func(f *scopeFixture) string { return "/v1/tunnels/" + id(f) }, ok: 200},
		{name: "poll", scope: ScopeRuntime, method: "GET", path: func(f *scopeFixture) string { return "/v1/tunnels/" + id(f) + "/poll?timeout_ms=1" }, ok: 204},
		{name: "response", scope: ScopeRuntime, method: "POST", path: func(f *scopeFixture) string { return "/v1/tunnels/" + id(f) + "/response" },
			body: `{"request_id":"req_x","resp_json":{}}`, hdr: map[string]string{wire.HeaderShardToken: "st_x"}, ok: 404},
		{name: "response batch", scope: ScopeRuntime, method: "POST", path: func(f *scopeFixture) string { return "/v1/tunnels/" + id(f) + wire.BatchPath },
			body: `{"responses":[{"request_id":"req_x","resp_json":{}}]}`, hdr: map[string]string{wire.HeaderShardToken: "st_x"}, ok: 200},
		{name: "MCP POST", scope: ScopeClient, method: "POST", path: func(f *scopeFixture) string { return "/v1/mcp/" + id(f) },
			body: `{"jsonrpc":"2.0","id":1,"method":"ping"}`, hdr: map[string]string{"Content-Type": "application/json"}, ok: 503},
		{name: "MCP GET", scope: ScopeClient, method: "GET", path: func(f *scopeFixture) string { return "/v1/mcp/" + id(f) },
			hdr: map[string]string{"Accept": "text/event-stream"}, ok: 503},
		{name: "MCP DELETE", scope: ScopeClient, method: "DELETE", path: func(f *scopeFixture) string { return "/v1/mcp/" + id(f) }, ok: 400},
	}
}

// scopeEndpoints are the columns: every endpoint of both listeners.
func scopeEndpoints() []endpoint {
	var eps []endpoint
	for _, x := range []string{"t", "A"} {
		for _, ep := range tunnelEndpoints(x) {
			ep.name += " (" + x + ")"
			ep.tunnel = x
			eps = append(eps, ep)
		}
	}
	adm := func(name, method string, path func(*scopeFixture) string, body string) endpoint {
		return endpoint{name: "admin: " + name, listener: onAdmin, scope: ScopeAdmin, method: method, path: path, body: body, ok: 200}
	}
	fixed := func(p string) func(*scopeFixture) string { return func(*scopeFixture) string { return p } }
	eps = append(eps,
		adm("list tunnels", "GET", fixed("/v1/tunnels"), ""),
		adm("create tunnel", "POST", fixed("/v1/tunnels"), `{"name":"n"}`),
		adm("get tunnel", "GET", func(f *scopeFixture) string { return "/v1/tunnels/" + f.t }, ""),
		adm("get config tunnel", "GET", fixed("/v1/tunnels/"+tunA), ""),
		adm("update tunnel", "POST", func(f *scopeFixture) string { return "/v1/tunnels/" + f.t }, `{"name":"m"}`),
		adm("delete tunnel", "DELETE", func(f *scopeFixture) string { return "/v1/tunnels/" + f.u }, ""),
		adm("list keys", "GET", func(f *scopeFixture) string { return "/v1/tunnels/" + f.t + "/keys" }, ""),
		adm("list config keys", "GET", fixed("/v1/tunnels/"+tunA+"/keys"), ""),
		adm("create key", "POST", func(f *scopeFixture) string { return "/v1/tunnels/" + f.t + "/keys" }, `{"scope":"client","name":"z"}`),
		adm("get key", "GET", func(f *scopeFixture) string { return "/v1/tunnels/" + f.t + "/keys/" + f.revocable }, ""),
		adm("revoke key", "DELETE", func(f *scopeFixture) string { return "/v1/tunnels/" + f.t + "/keys/" + f.revocable }, ""),
		adm("list admin keys", "GET", fixed("/v1/organization/admin_api_keys"), ""),
		adm("create admin key", "POST", fixed("/v1/organization/admin_api_keys"), `{"name":"a"}`),
		adm("get admin key", "GET", func(f *scopeFixture) string { return "/v1/organization/admin_api_keys/" + f.spareAdmin }, ""),
		adm("revoke admin key", "DELETE", func(f *scopeFixture) string { return "/v1/organization/admin_api_keys/" + f.spareAdmin }, ""),
		// Open by design, the same for every caller: OAuth protected-resource
		// metadata (RFC 9728: clients fetch it before they have a token; a
		// client-key tunnel has none, an oauth tunnel fetches it through its
		// agent, here not connected), and the admin listener's health and
		// metrics (loopback).
		endpoint{name: "OAuth metadata (t)", method: "GET", path: func(f *scopeFixture) string { return "/.well-known/oauth-protected-resource/v1/mcp/" + f.t }, ok: 404},
		endpoint{name: "OAuth metadata (oauth tunnel o)", method: "GET", path: func(f *scopeFixture) string { return "/.well-known/oauth-protected-resource/v1/mcp/" + f.o }, ok: 503},
		endpoint{name: "healthz", listener: onAdmin, method: "GET", path: fixed("/healthz"), ok: 200},
		endpoint{name: "metrics", listener: onAdmin, method: "GET", path: fixed("/metrics"), ok: 200},
		// Not served on the other listener, whatever the key: the admin API
		// is not on the public listener, the tunnel endpoints are not on the
		// admin listener.
		endpoint{name: "admin API on the public listener", method: "POST", path: fixed("/v1/tunnels"), body: `{"name":"n"}`, ok: 404},
		endpoint{name: "admin keys on the public listener", method: "GET", path: fixed("/v1/organization/admin_api_keys"), ok: 404},
		endpoint{name: "poll on the admin listener", listener: onAdmin, method: "GET", path: func(f *scopeFixture) string { return "/v1/tunnels/" + f.t + "/poll?timeout_ms=1" }, ok: 404},
		endpoint{name: "MCP POST on the admin listener", listener: onAdmin, method: "POST", path: func(f *scopeFixture) string { return "/v1/mcp/" + f.t },
			body: `{"jsonrpc":"2.0","id":1,"method":"ping"}`, hdr: map[string]string{"Content-Type": "application/json"}, ok: 404},
	)
	return eps
}

// allowedCell is the table's truth: a key passes exactly where its scope is
// the endpoint's and, for a tunnel's keys, its tunnel is the one the path
// names; only active keys pass. Open endpoints are not cells.
func allowedCell(row scopeRow, ep endpoint) bool {
	if !row.valid || row.scope != ep.scope {
		return false
	}
	return ep.scope == ScopeAdmin || row.tunnel == ep.tunnel
}

// serve sends ep's request with key to a fresh fixture's listener.
func (f *scopeFixture) serve(ep endpoint, key string) *httptest.ResponseRecorder {
	h := f.r.Handler()
	if ep.listener == onAdmin {
		h = f.r.AdminHandler()
	}
	req := httptest.NewRequest(ep.method, ep.path(f), strings.NewReader(ep.body))
	req.Host = "relay.test"
	for k, v := range ep.hdr {
		req.Header.Set(k, v)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestScopeTable: every kind of key (stored and configured, active, revoked
// and made up) against every endpoint of both listeners, each cell on a
// fresh relay: exactly the allowed cells pass, every other key-guarded cell
// is refused with 401 or 403, and open endpoints answer every row alike.
func TestScopeTable(t *testing.T) {
	eps := scopeEndpoints()
	passed, want := map[string]bool{}, 0
	for _, ep := range eps {
		for _, row := range scopeRows {
			if ep.scope != "" && allowedCell(row, ep) {
				want++
			}
		}
	}
	for _, row := range scopeRows {
		for _, ep := range eps {
			cell := row.name + " × " + ep.name
			t.Run(cell, func(t *testing.T) {
				f := newScopeFixture(t)
				rec := f.serve(ep, f.keys[row.name])
				switch {
				case ep.scope == "":
					if rec.Code != ep.ok {
						t.Fatalf("open endpoint: %d, want %d for every caller: %s", rec.Code, ep.ok, rec.Body)
					}
				case allowedCell(row, ep):
					if rec.Code != ep.ok {
						t.Fatalf("allowed cell refused: %d %s", rec.Code, rec.Body)
					}
					passed[cell] = true
				case rec.Code != 401 && rec.Code != 403:
					t.Fatalf("refused cell got %d, want 401 or 403: %s", rec.Code, rec.Body)
				}
			})
		}
	}
	if len(passed) != want || want == 0 {
		t.Fatalf("%d cells passed, want exactly %d", len(passed), want)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TestRefusalCodes: refusals carry the OpenAPI error shape and the codes the
// contract lists for each endpoint.
func TestRefusalCodes(t *testing.T) {
	f := newScopeFixture(t)
	byName := map[string]endpoint{}
	for _, ep := range scopeEndpoints() {
		byName[ep.name] = ep
	}
	for _, c := range []struct {
		ep        string
		status    int
		code, msg string
	}{
		{"tunnel metadata (t)", 403, wire.CodeTunnelUseForbidden, "runtime key not valid for this tunnel"},
		{"poll (t)", 401, wire.CodeTunnelUseForbidden, "runtime key not valid for this tunnel"},
		{"response (t)", 401, wire.CodeTunnelUseForbidden, "runtime key not valid for this tunnel"},
		{"response batch (t)", 401, wire.CodeTunnelUseForbidden, "runtime key not valid for this tunnel"},
		{"admin: list tunnels", 401, codeManagementRequired, "an admin key is required"},
	} {
		ep, ok := byName[c.ep]
		if !ok {
			t.Fatalf("no endpoint %q in the scope table", c.ep)
		}
		rec := f.serve(ep, f.keys["client (t)"])
		var e wire.APIError
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != c.status || e.Error.Code == nil ||
			*e.Error.Code != c.code || !strings.HasPrefix(e.Error.Message, c.msg) || e.Error.Type != "invalid_request_error" {
			t.Errorf("%s: %d %s", c.ep, rec.Code, rec.Body)
		}
	}
	// The MCP endpoint refuses with 401 and a Bearer challenge, so an MCP
	// client knows to authenticate.
	rec := f.serve(byName["MCP POST (t)"], f.keys["runtime (t)"])
	if rec.Code != 401 || rec.Header().Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("MCP POST with a runtime key: %d %q %s", rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body)
	}
}

// TestAuthRateLimit: an address that keeps failing gets 429 with
// Retry-After, even with a right key, while other addresses are served; a
// tunnel flooded from many addresses refuses those that failed, not its
// agents.
func TestAuthRateLimit(t *testing.T) {
	r, err := New(Config{PublicURL: "http://relay.test", AuthFailures: AuthLimit{AddrBurst: 3, AddrEvery: time.Hour, TunnelBurst: 5, TunnelEvery: time.Hour}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a := newAdmin(t, r)
	tn := a.createTunnel(`{"name":"t"}`).ID
	good := a.createKey(tn, ScopeRuntime, "rt").Value
	poll := func(addr, key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/v1/tunnels/"+tn+"/poll?timeout_ms=1", nil)
		req.RemoteAddr = addr + ":4000"
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		r.Handler().ServeHTTP(rec, req)
		return rec
	}
	for i := range 3 {
		if c := poll("198.51.100.1", "wrong").Code; c != 401 {
			t.Fatalf("failure %d: %d", i, c)
		}
	}
	rec := poll("198.51.100.1", good)
	if code, _, _ := errorOf(t, rec.Body.String()); rec.Code != 429 || code != wire.CodeRateLimitExceeded || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("after the address's burst: %d %s (Retry-After %q)", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
	if c := poll("198.51.100.2", good).Code; c != 204 {
		t.Fatalf("another address with the right key: %d", c)
	}
	// Two more failing addresses exhaust the tunnel's budget (3+1+1 = 5).
	poll("198.51.100.3", "wrong")
	poll("198.51.100.4", "wrong")
	if c := poll("198.51.100.3", "wrong").Code; c != 429 {
		t.Fatalf("an address that failed, once the tunnel's budget is gone: %d", c)
	}
	if c := poll("198.51.100.3", good).Code; c != 429 {
		t.Fatalf("even with the right key, that address waits: %d", c)
	}
	if c := poll("198.51.100.5", good).Code; c != 204 {
		t.Fatalf("a clean address with the right key while the tunnel is flooded: %d", c)
	}
	if c := poll("198.51.100.6", "wrong").Code; c != 401 {
		t.Fatalf("a new address gets its one try: %d", c)
	}
	if c := poll("198.51.100.6", "wrong").Code; c != 429 {
		t.Fatalf("and no second while the tunnel is flooded: %d", c)
	}
	// The MCP endpoint draws on the same budgets (here on a tunnel whose
	// own budget is whole): a client address that keeps failing is refused
	// before its key is looked at.
	tn2 := a.createTunnel(`{"name":"t2"}`).ID
	ck := a.createKey(tn2, ScopeClient, "c").Value
	mcp := func(addr, key string) int {
		req := httptest.NewRequest("POST", "/v1/mcp/"+tn2, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Host = "relay.test"
		req.RemoteAddr = addr + ":4000"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		r.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	for range 3 {
		if c := mcp("203.0.113.1", "wrong"); c != 401 {
			t.Fatalf("MCP with a wrong key: %d", c)
		}
	}
	if c := mcp("203.0.113.1", ck); c != 429 {
		t.Fatalf("MCP after the address's burst: %d", c)
	}
	if c := mcp("203.0.113.2", ck); c == 401 || c == 429 {
		t.Fatalf("MCP from a clean address with the right key: %d", c)
	}
	// And on the tunnel's budget: two more failing addresses spend it
	// (3+1+1 = 5); then an address that failed waits even with the right
	// key, while a clean one is served.
	mcp("203.0.113.3", "wrong")
	mcp("203.0.113.4", "wrong")
	if c := mcp("203.0.113.3", ck); c != 429 {
		t.Fatalf("MCP from an address that failed, once the tunnel's budget is gone: %d", c)
	}
	if c := mcp("203.0.113.5", ck); c == 401 || c == 429 {
		t.Fatalf("MCP from a clean address while the tunnel is flooded: %d", c)
	}
	// The admin API has its own budget per address.
	for range 3 {
		a.callAs("wrong", "GET", "/v1/tunnels", "", nil)
	}
	if st, _ := a.callAs(a.key, "GET", "/v1/tunnels", "", nil); st != 429 {
		t.Fatalf("admin API after 3 failures from one address: %d", st)
	}
}

// TestAuthLimiterRefill: budgets refill over time and buckets that refilled
// are forgotten.
func TestAuthLimiterRefill(t *testing.T) {
	l := newAuthLimiter(AuthLimit{AddrBurst: 2, AddrEvery: time.Second, TunnelBurst: 100, TunnelEvery: time.Millisecond})
	now := time.Unix(1000, 0)
	l.fail("a", "t", now)
	l.fail("a", "t", now)
	if w := l.allow("a", "t", now); w != time.Second {
		t.Fatalf("wait after the burst: %v", w)
	}
	if w := l.allow("a", "t", now.Add(999*time.Millisecond)); w <= 0 {
		t.Fatal("allowed before a token refilled")
	}
	if w := l.allow("a", "t", now.Add(time.Second)); w != 0 {
		t.Fatalf("refused after a refill: %v", w)
	}
	for i := range sweepAbove + 10 {
		l.fail(fmt.Sprint("x", i), "t", now.Add(2*time.Second))
	}
	l.fail("y", "t", now.Add(time.Hour))
	if n := len(l.addrs); n > 2 {
		t.Fatalf("%d address buckets kept after they refilled", n)
	}
}
