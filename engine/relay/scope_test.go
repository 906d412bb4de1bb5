package relay

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// scopeFixture is a relay with two stored tunnels, t and u, each with a
// runtime and a client key, one revoked runtime key on t, and an admin key.
type scopeFixture struct {
	r                  *Relay
	t, u               string
	keys               map[string]string // by row name
	revocable, adminID string
}

func newScopeFixture(tb testing.TB) *scopeFixture {
	tb.Helper()
	r, err := New(Config{PublicURL: "http://relay.test", AuthFailures: AuthLimit{Off: true}}, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Close)
	a := newAdmin(tb, r)
	f := &scopeFixture{r: r, keys: map[string]string{"none": "", "admin": a.key}}
	f.t = a.createTunnel(`{"name":"t"}`).ID
	f.u = a.createTunnel(`{"name":"u"}`).ID
	f.keys["runtime"] = a.createKey(f.t, ScopeRuntime, "rt").Value
	f.keys["client"] = a.createKey(f.t, ScopeClient, "ct").Value
	f.keys["runtime, other tunnel"] = a.createKey(f.u, ScopeRuntime, "ru").Value
	f.keys["client, other tunnel"] = a.createKey(f.u, ScopeClient, "cu").Value
	rv := a.createKey(f.t, ScopeRuntime, "old")
	a.call("DELETE", "/v1/tunnels/"+f.t+"/keys/"+rv.ID, "", nil)
	f.keys["revoked runtime"] = rv.Value
	f.keys["not a key"] = NewKey(prefixRuntime)
	f.revocable = a.createKey(f.t, ScopeClient, "spare").ID
	var l apiList
	a.call("GET", "/v1/organization/admin_api_keys", "", &l)
	f.adminID = l.Data[0].ID
	return f
}

// endpoint is one cell column: a request and the status it gets once
// authorized (not 401/403).
type endpoint struct {
	name   string
	admin  bool // served by the admin handler
	method string
	path   func(f *scopeFixture) string
	body   string
	hdr    map[string]string
	ok     int
}

var endpoints = []endpoint{
	{name: "tunnel metadata", method: "GET", path: func(f *scopeFixture) string { return "/v1/tunnels/" + f.t }, ok: 200},
	{name: "poll", method: "GET", path: func(f *scopeFixture) string { return "/v1/tunnels/" + f.t + "/poll?timeout_ms=1" }, ok: 204},
	{name: "response", method: "POST", path: func(f *scopeFixture) string { return "/v1/tunnels/" + f.t + "/response" },
		body: `{"request_id":"req_x","resp_json":{}}`, hdr: map[string]string{wire.HeaderShardToken: "st_x"}, ok: 404},
	{name: "MCP POST", method: "POST", path: func(f *scopeFixture) string { return "/v1/mcp/" + f.t },
		body: `{"jsonrpc":"2.0","id":1,"method":"ping"}`, hdr: map[string]string{"Content-Type": "application/json"}, ok: 503},
	{name: "MCP GET", method: "GET", path: func(f *scopeFixture) string { return "/v1/mcp/" + f.t },
		hdr: map[string]string{"Accept": "text/event-stream"}, ok: 503},
	{name: "MCP DELETE", method: "DELETE", path: func(f *scopeFixture) string { return "/v1/mcp/" + f.t }, ok: 400},
	{name: "admin: list tunnels", admin: true, method: "GET", path: func(*scopeFixture) string { return "/v1/tunnels" }, ok: 200},
	{name: "admin: create tunnel", admin: true, method: "POST", path: func(*scopeFixture) string { return "/v1/tunnels" }, body: `{"name":"n"}`, ok: 200},
	{name: "admin: get tunnel", admin: true, method: "GET", path: func(f *scopeFixture) string { return "/v1/tunnels/" + f.t }, ok: 200},
	{name: "admin: update tunnel", admin: true, method: "POST", path: func(f *scopeFixture) string { return "/v1/tunnels/" + f.t }, body: `{"name":"m"}`, ok: 200},
	{name: "admin: delete tunnel", admin: true, method: "DELETE", path: func(f *scopeFixture) string { return "/v1/tunnels/" + f.u }, ok: 200},
	{name: "admin: list keys", admin: true, method: "GET", path: func(f *scopeFixture) string { return "/v1/tunnels/" + f.t + "/keys" }, ok: 200},
	{name: "admin: create key", admin: true, method: "POST", path: func(f *scopeFixture) string { return "/v1/tunnels/" + f.t + "/keys" }, body: `{"scope":"client","name":"z"}`, ok: 200},
	{name: "admin: revoke key", admin: true, method: "DELETE", path: func(f *scopeFixture) string { return "/v1/tunnels/" + f.t + "/keys/" + f.revocable }, ok: 200},
	{name: "admin: list admin keys", admin: true, method: "GET", path: func(*scopeFixture) string { return "/v1/organization/admin_api_keys" }, ok: 200},
	{name: "admin: create admin key", admin: true, method: "POST", path: func(*scopeFixture) string { return "/v1/organization/admin_api_keys" }, body: `{"name":"a"}`, ok: 200},
	// The admin API is not on the public listener, whatever the key.
	{name: "admin API on the public listener", method: "POST", path: func(*scopeFixture) string { return "/v1/tunnels" }, body: `{"name":"n"}`, ok: -1},
}

// allowed is the table's truth: the cells that pass. Everything else is
// refused.
var allowed = map[string][]string{
	"runtime": {"tunnel metadata", "poll", "response"},
	"client":  {"MCP POST", "MCP GET", "MCP DELETE"},
	"admin": {"admin: list tunnels", "admin: create tunnel", "admin: get tunnel", "admin: update tunnel", "admin: delete tunnel",
		"admin: list keys", "admin: create key", "admin: revoke key", "admin: list admin keys", "admin: create admin key"},
}

// TestScopeTable: every key kind against every endpoint, each on a fresh
// relay; exactly the allowed cells pass.
func TestScopeTable(t *testing.T) {
	rows := []string{"none", "runtime", "client", "admin", "runtime, other tunnel", "client, other tunnel", "revoked runtime", "not a key"}
	passed := map[string]bool{}
	for _, row := range rows {
		for _, ep := range endpoints {
			t.Run(row+" × "+ep.name, func(t *testing.T) {
				f := newScopeFixture(t)
				h := f.r.Handler()
				if ep.admin {
					h = f.r.AdminHandler()
				}
				req := httptest.NewRequest(ep.method, ep.path(f), strings.NewReader(ep.body))
				req.Host = "relay.test"
				for k, v := range ep.hdr {
					req.Header.Set(k, v)
				}
				if k := f.keys[row]; k != "" {
					req.Header.Set("Authorization", "Bearer "+k)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				want := contains(allowed[row], ep.name)
				got := rec.Code == ep.ok
				if got {
					passed[row+" × "+ep.name] = true
				}
				switch {
				case want && !got:
					t.Fatalf("allowed cell refused: %d %s", rec.Code, rec.Body)
				case !want && ep.ok == -1 && rec.Code != http.StatusNotFound:
					t.Fatalf("admin API answered on the public listener: %d %s", rec.Code, rec.Body)
				case !want && ep.ok != -1 && rec.Code != 401 && rec.Code != 403:
					t.Fatalf("refused cell got %d, want 401 or 403: %s", rec.Code, rec.Body)
				}
			})
		}
	}
	n := 0
	for _, eps := range allowed {
		n += len(eps)
	}
	if len(passed) != n {
		t.Fatalf("%d cells passed, want exactly %d: %v", len(passed), n, passed)
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
	for _, c := range []struct {
		ep        string
		status    int
		code, msg string
	}{
		{"tunnel metadata", 403, wire.CodeTunnelUseForbidden, "runtime key not valid for this tunnel"},
		{"poll", 401, wire.CodeTunnelUseForbidden, "runtime key not valid for this tunnel"},
		{"response", 401, wire.CodeTunnelUseForbidden, "runtime key not valid for this tunnel"},
		{"admin: list tunnels", 401, codeManagementRequired, "an admin key is required"},
	} {
		for _, ep := range endpoints {
			if ep.name != c.ep {
				continue
			}
			h := f.r.Handler()
			if ep.admin {
				h = f.r.AdminHandler()
			}
			req := httptest.NewRequest(ep.method, ep.path(f), strings.NewReader(ep.body))
			req.Header.Set("Authorization", "Bearer "+f.keys["client"])
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var e wire.APIError
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != c.status || e.Error.Code == nil ||
				*e.Error.Code != c.code || !strings.HasPrefix(e.Error.Message, c.msg) || e.Error.Type != "invalid_request_error" {
				t.Errorf("%s: %d %s", c.ep, rec.Code, rec.Body)
			}
		}
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
