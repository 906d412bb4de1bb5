package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/relay/store"
	"github.com/sluicemcp/sluice/engine/relay/store/filestore"
	"github.com/sluicemcp/sluice/engine/wire"
)

// admin calls a relay's admin API in process.
type admin struct {
	t   testing.TB
	r   *Relay
	key string
}

// newAdmin bootstraps the relay's first admin key.
func newAdmin(t testing.TB, r *Relay) *admin {
	t.Helper()
	key, err := r.Bootstrap(context.Background())
	if err != nil || !strings.HasPrefix(key, prefixAdmin) {
		t.Fatalf("bootstrap: %q %v", key, err)
	}
	return &admin{t: t, r: r, key: key}
}

// call sends one admin request with a's key and decodes the answer into
// out (when non-nil); it returns the status and the raw body.
func (a *admin) call(method, path, body string, out any) (int, string) {
	a.t.Helper()
	return a.callAs(a.key, method, path, body, out)
}

func (a *admin) callAs(key, method, path, body string, out any) (int, string) {
	a.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	rec := httptest.NewRecorder()
	a.r.AdminHandler().ServeHTTP(rec, req)
	if out != nil && rec.Code < 300 {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			a.t.Fatalf("%s %s: decode %s: %v", method, path, rec.Body, err)
		}
	}
	return rec.Code, rec.Body.String()
}

func (a *admin) createTunnel(body string) apiTunnel {
	a.t.Helper()
	var tn apiTunnel
	if st, b := a.call("POST", "/v1/tunnels", body, &tn); st != 200 {
		a.t.Fatalf("create tunnel: %d %s", st, b)
	}
	return tn
}

func (a *admin) createKey(tunnel, scope, name string) apiKey {
	a.t.Helper()
	var k apiKey
	body, _ := json.Marshal(keyInput{Scope: scope, Name: name})
	if st, b := a.call("POST", "/v1/tunnels/"+tunnel+"/keys", string(body), &k); st != 200 {
		a.t.Fatalf("create %s key: %d %s", scope, st, b)
	}
	return k
}

// errorOf decodes an API error body.
func errorOf(t testing.TB, body string) (code, msg, param string) {
	t.Helper()
	var e wire.APIError
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not an API error: %s", body)
	}
	if e.Error.Code != nil {
		code = *e.Error.Code
	}
	if e.Error.Param != nil {
		param = *e.Error.Param
	}
	return code, e.Error.Message, param
}

// TestAdminTunnelLifecycle: a tunnel and its keys made through the admin
// API work at once on the public endpoints, keys are shown once, and a
// revoked or deleted one stops working with a reason.
func TestAdminTunnelLifecycle(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a := newAdmin(t, h.r)

	tn := a.createTunnel(`{"name":"prod","description":"the prod MCP server","response_timeout":"30s"}`)
	if !wire.ValidTunnelID(tn.ID) || tn.Name != "prod" || tn.AuthMode != AuthClientKey || tn.ResponseTimeout != "30s" || tn.ReadOnly || tn.CreatedAt == 0 {
		t.Fatalf("created %+v", tn)
	}
	var got apiTunnel
	if st, b := a.call("GET", "/v1/tunnels/"+tn.ID, "", &got); st != 200 || got.ID != tn.ID || got.Description != "the prod MCP server" {
		t.Fatalf("get: %d %s", st, b)
	}
	var list apiTunnels
	a.call("GET", "/v1/tunnels", "", &list)
	if len(list.Tunnels) != 3 {
		t.Fatalf("list: %+v", list)
	}
	for _, x := range list.Tunnels {
		if x.ReadOnly != (x.ID == tunA || x.ID == tunB) {
			t.Fatalf("read-only flags: %+v", list.Tunnels)
		}
	}
	var upd apiTunnel
	if st, b := a.call("POST", "/v1/tunnels/"+tn.ID, `{"name":"prod-2"}`, &upd); st != 200 || upd.Name != "prod-2" || upd.Description != "the prod MCP server" {
		t.Fatalf("update: %d %s", st, b)
	}

	rk := a.createKey(tn.ID, ScopeRuntime, "agent-1")
	ck := a.createKey(tn.ID, ScopeClient, "carol")
	if !strings.HasPrefix(rk.Value, prefixRuntime) || !strings.HasPrefix(ck.Value, prefixClient) || !wire.ValidKey(rk.Value) || len(rk.Value) != len(prefixRuntime)+40 {
		t.Fatalf("keys: %+v %+v", rk, ck)
	}
	if !strings.HasPrefix(rk.RedactedValue, prefixRuntime) || strings.Contains(rk.RedactedValue, rk.Value[len(prefixRuntime)+4:len(rk.Value)-4]) {
		t.Fatalf("redacted value shows too much: %q of %q", rk.RedactedValue, rk.Value)
	}
	// The value is shown once: never in a list or a get.
	var keys apiList
	_, raw := a.call("GET", "/v1/tunnels/"+tn.ID+"/keys", "", &keys)
	if len(keys.Data) != 2 || strings.Contains(raw, rk.Value) || strings.Contains(raw, ck.Value) || keys.Data[0].Value != "" {
		t.Fatalf("key list %s", raw)
	}
	if _, raw := a.call("GET", "/v1/tunnels/"+tn.ID+"/keys/"+rk.ID, "", nil); strings.Contains(raw, rk.Value) || !strings.Contains(raw, rk.RedactedValue) {
		t.Fatalf("key get %s", raw)
	}

	// The agent polls with its runtime key, the client calls with its client
	// key and is known by the key's name.
	h.connect(tn.ID, rk.Value)
	got1 := h.client(context.Background(), "POST", tn.ID, `{"jsonrpc":"2.0","id":1,"method":"ping"}`,
		map[string]string{"Content-Type": "application/json"}, map[string]string{"Authorization": "Bearer " + ck.Value})
	cmd := h.nextWith(tn.ID, rk.Value, offerCaller)
	if cmd.Caller != "carol" {
		t.Fatalf("the client key's name is not the caller on the command: %q", cmd.Caller)
	}
	if st, _ := h.respond(tn.ID, rk.Value, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{}}`)}); st != 200 {
		t.Fatalf("respond %d", st)
	}
	if resp := wait(t, got1); resp.StatusCode != 200 {
		t.Fatalf("call through the new tunnel: %d", resp.StatusCode)
	}
	// A key works only on its own tunnel and in its own scope.
	if st, _ := h.poll(tunA, rk.Value, 1, time.Millisecond, nil); st != 401 {
		t.Fatalf("runtime key on another tunnel: %d", st)
	}
	if st, _ := h.poll(tn.ID, ck.Value, 1, time.Millisecond, nil); st != 401 {
		t.Fatalf("client key as a runtime key: %d", st)
	}

	// Revoked: the agent is told why on its next poll.
	var del apiDeleted
	if st, b := a.call("DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+rk.ID, "", &del); st != 200 || !del.Deleted || del.ID != rk.ID || del.Object != "tunnel.key.deleted" {
		t.Fatalf("revoke: %d %s", st, b)
	}
	resp := h.do("GET", "/v1/tunnels/"+tn.ID+"/poll?timeout_ms=1", nil, map[string]string{"Authorization": "Bearer " + rk.Value})
	body := readAll(t, resp)
	code, msg, _ := errorOf(t, body)
	if resp.StatusCode != 401 || code != wire.CodeTunnelUseForbidden || !strings.Contains(msg, "runtime key revoked at ") {
		t.Fatalf("poll with a revoked key: %d %s", resp.StatusCode, body)
	}
	var k apiKey
	if a.call("GET", "/v1/tunnels/"+tn.ID+"/keys/"+rk.ID, "", &k); k.RevokedAt == nil {
		t.Fatalf("revoked key not marked: %+v", k)
	}
	// Revoking twice is no error.
	if st, _ := a.call("DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+rk.ID, "", nil); st != 200 {
		t.Fatalf("revoke twice: %d", st)
	}

	// Deleted: the tunnel and its keys are gone.
	var gone apiTunnel
	if st, b := a.call("DELETE", "/v1/tunnels/"+tn.ID, "", &gone); st != 200 || !gone.Deleted || gone.ID != tn.ID {
		t.Fatalf("delete: %d %s", st, b)
	}
	if st, _ := a.call("GET", "/v1/tunnels/"+tn.ID, "", nil); st != 404 {
		t.Fatalf("get a deleted tunnel: %d", st)
	}
	r2 := wait(t, h.client(context.Background(), "POST", tn.ID, `{"jsonrpc":"2.0","id":1,"method":"ping"}`,
		map[string]string{"Content-Type": "application/json"}, map[string]string{"Authorization": "Bearer " + ck.Value}))
	r2.Body.Close()
	if r2.StatusCode != 401 {
		t.Fatalf("client key of a deleted tunnel: %d", r2.StatusCode)
	}
	if st, _ := a.call("DELETE", "/v1/tunnels/"+tn.ID, "", nil); st != 404 {
		t.Fatalf("delete twice: %d", st)
	}
}

// TestAdminRevokedClientKey: a revoked client key gets 401 saying so.
func TestAdminRevokedClientKey(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a := newAdmin(t, h.r)
	tn := a.createTunnel(`{"name":"x"}`)
	ck := a.createKey(tn.ID, ScopeClient, "dave")
	a.call("DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+ck.ID, "", nil)
	resp := wait(t, h.client(context.Background(), "POST", tn.ID, `{"jsonrpc":"2.0","id":1,"method":"ping"}`,
		map[string]string{"Content-Type": "application/json"}, map[string]string{"Authorization": "Bearer " + ck.Value}))
	body := readAll(t, resp)
	if _, msg, _ := errorOf(t, body); resp.StatusCode != 401 || !strings.Contains(msg, "client key revoked at ") || resp.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("revoked client key: %d %s", resp.StatusCode, body)
	}
}

// TestAdminReadOnlyConfigTunnels: configuration tunnels are listed, served
// and refused to every change with a clear error.
func TestAdminReadOnlyConfigTunnels(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a := newAdmin(t, h.r)
	var tn apiTunnel
	if st, _ := a.call("GET", "/v1/tunnels/"+tunA, "", &tn); st != 200 || !tn.ReadOnly || tn.Name != "alpha" || tn.ResponseTimeout != "10s" {
		t.Fatalf("config tunnel: %d %+v", st, tn)
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/tunnels/" + tunA, `{"name":"renamed"}`},
		{"DELETE", "/v1/tunnels/" + tunA, ""},
		{"POST", "/v1/tunnels/" + tunA + "/keys", `{"scope":"runtime","name":"x"}`},
		{"DELETE", "/v1/tunnels/" + tunA + "/keys/cfg_runtime", ""},
	} {
		st, body := a.call(c.method, c.path, c.body, nil)
		if _, msg, _ := errorOf(t, body); st != 409 || !strings.Contains(msg, "relay.tunnels") || !strings.Contains(msg, "read-only") {
			t.Errorf("%s %s: %d %s", c.method, c.path, st, body)
		}
	}
	var keys apiList
	a.call("GET", "/v1/tunnels/"+tunA+"/keys", "", &keys)
	if len(keys.Data) != 2 || !keys.Data[0].ReadOnly || keys.Data[0].Scope != ScopeRuntime || keys.Data[1].Name != "alice" || keys.Data[1].RedactedValue != "" {
		t.Fatalf("config keys %+v", keys.Data)
	}
	// Still served with its configured keys.
	h.connect(tunA, runtimeA)
}

// TestAdminInput: malformed input gets 400 naming the field, and changes
// nothing.
func TestAdminInput(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a := newAdmin(t, h.r)
	tn := a.createTunnel(`{"name":"x"}`)
	for _, c := range []struct{ method, path, body, param, code string }{
		{"POST", "/v1/tunnels", `{"name":"x"`, "", wire.CodeInvalidJSONPayload},
		{"POST", "/v1/tunnels", ``, "", wire.CodeInvalidJSONPayload},
		{"POST", "/v1/tunnels", `{"name":"x","workspace_ids":"w"}`, "", wire.CodeInvalidJSONPayload},
		{"POST", "/v1/tunnels", `{"name":"x","organization_ids":[1]}`, "", wire.CodeInvalidJSONPayload},
		{"POST", "/v1/tunnels", `{"name":"x","owner":"me"}`, "", wire.CodeInvalidJSONPayload},
		{"POST", "/v1/tunnels", `{"name":"x"} {}`, "", wire.CodeInvalidJSONPayload},
		{"POST", "/v1/tunnels", `{"description":"no name"}`, "name", ""},
		{"POST", "/v1/tunnels", `{"name":"  "}`, "name", ""},
		{"POST", "/v1/tunnels", `{"name":"` + strings.Repeat("n", 257) + `"}`, "name", ""},
		{"POST", "/v1/tunnels", `{"name":"a\u0007b"}`, "name", ""},
		{"POST", "/v1/tunnels", `{"name":"x","auth_mode":"none"}`, "auth_mode", ""},
		{"POST", "/v1/tunnels", `{"name":"x","response_timeout":"2h"}`, "response_timeout", ""},
		{"POST", "/v1/tunnels", `{"name":"x","response_timeout":"soon"}`, "response_timeout", ""},
		{"POST", "/v1/tunnels/" + tn.ID, `{"auth_mode":"nope"}`, "auth_mode", ""},
		{"POST", "/v1/tunnels/" + tn.ID + "/keys", `{"scope":"admin","name":"x"}`, "scope", ""},
		{"POST", "/v1/tunnels/" + tn.ID + "/keys", `{"scope":"client","name":"has space"}`, "name", ""},
		{"POST", "/v1/tunnels/" + tn.ID + "/keys", `{"scope":"client"}`, "name", ""},
		{"POST", "/v1/organization/admin_api_keys", `{"scope":"runtime"}`, "scope", ""},
		{"GET", "/v1/tunnels?limit=0", ``, "limit", ""},
		{"GET", "/v1/tunnels/tunnel_bad", ``, "", wire.CodeInvalidTunnelIDFormat},
	} {
		st, body := a.call(c.method, c.path, c.body, nil)
		code, _, param := errorOf(t, body)
		if st != 400 || param != c.param || code != c.code {
			t.Errorf("%s %s %s: %d %s", c.method, c.path, c.body, st, body)
		}
	}
	var list apiTunnels
	a.call("GET", "/v1/tunnels", "", &list)
	if len(list.Tunnels) != 3 {
		t.Fatalf("refused input created tunnels: %d", len(list.Tunnels))
	}
	var k apiList
	if a.call("GET", "/v1/tunnels/"+tn.ID+"/keys", "", &k); len(k.Data) != 0 {
		t.Fatalf("refused input created keys: %+v", k.Data)
	}
	if st, _ := a.call("GET", "/v1/tunnels/"+NewTunnelID(), "", nil); st != 404 {
		t.Fatalf("unknown tunnel: %d", st)
	}
	if st, _ := a.call("GET", "/v1/tunnels/"+tn.ID+"/keys/key_nope", "", nil); st != 404 {
		t.Fatalf("unknown key: %d", st)
	}
}

// TestAdminKeys: admin keys are created, listed and revoked at OpenAI's
// admin key paths; the last one cannot be revoked; a revoked one is told so.
func TestAdminKeys(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a := newAdmin(t, h.r)
	var list apiList
	a.call("GET", "/v1/organization/admin_api_keys", "", &list)
	if list.Object != "list" || len(list.Data) != 1 || list.Data[0].Object != objAdminKey || list.Data[0].Name != "bootstrap" {
		t.Fatalf("admin keys: %+v", list)
	}
	first := list.Data[0].ID
	st, body := a.call("DELETE", "/v1/organization/admin_api_keys/"+first, "", nil)
	if _, msg, _ := errorOf(t, body); st != 409 || !strings.Contains(msg, "last admin key") {
		t.Fatalf("revoke the last admin key: %d %s", st, body)
	}
	var second apiKey
	if st, b := a.call("POST", "/v1/organization/admin_api_keys", `{"name":"ops"}`, &second); st != 200 || !strings.HasPrefix(second.Value, prefixAdmin) || second.Scope != ScopeAdmin {
		t.Fatalf("create admin key: %d %s", st, b)
	}
	if st, _ := a.call("DELETE", "/v1/organization/admin_api_keys/"+first, "", nil); st != 200 {
		t.Fatalf("revoke the first admin key with another left: %d", st)
	}
	st, body = a.call("GET", "/v1/tunnels", "", nil)
	if _, msg, _ := errorOf(t, body); st != 401 || !strings.Contains(msg, "admin key revoked at ") {
		t.Fatalf("revoked admin key: %d %s", st, body)
	}
	if st, _ := a.callAs(second.Value, "GET", "/v1/tunnels", "", nil); st != 200 {
		t.Fatalf("second admin key: %d", st)
	}
	// An admin key's id is not a tunnel key's.
	tn := (&admin{t: t, r: h.r, key: second.Value}).createTunnel(`{"name":"x"}`)
	if st, _ := a.callAs(second.Value, "DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+second.ID, "", nil); st != 404 {
		t.Fatalf("admin key revoked through a tunnel's path: %d", st)
	}
}

// TestBootstrap: the first admin key is minted once per store, never when
// the configuration has one, and never again after a restart.
func TestBootstrap(t *testing.T) {
	st := store.NewMemory()
	r1, err := New(baseConfig("http://127.0.0.1:1"), Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	k, _ := r1.Bootstrap(context.Background())
	again, _ := r1.Bootstrap(context.Background())
	if k == "" || again != "" {
		t.Fatalf("bootstrap %q then %q", k, again)
	}
	// Another replica (or a restart) on the same store: nothing.
	r2, err := New(baseConfig("http://127.0.0.1:1"), Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if k2, err := r2.Bootstrap(context.Background()); k2 != "" || err != nil {
		t.Fatalf("second relay bootstrap %q %v", k2, err)
	}
	if st, _ := (&admin{t: t, r: r2, key: k}).call("GET", "/v1/tunnels", "", nil); st != 200 {
		t.Fatalf("bootstrap key on the other replica: %d", st)
	}
	// With an admin key in the configuration: nothing.
	cfg := baseConfig("http://127.0.0.1:1")
	cfg.AdminKeys = []string{"sk_adm_configured"}
	r3, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	if k3, _ := r3.Bootstrap(context.Background()); k3 != "" {
		t.Fatalf("bootstrap with a configured admin key: %q", k3)
	}
	if st, _ := (&admin{t: t, r: r3, key: "sk_adm_configured"}).call("GET", "/v1/organization/admin_api_keys", "", nil); st != 200 {
		t.Fatalf("configured admin key: %d", st)
	}
}

// TestAdminKeyConfigClash: a configured admin key may not equal a tunnel key.
func TestAdminKeyConfigClash(t *testing.T) {
	cfg := baseConfig("http://127.0.0.1:1")
	cfg.AdminKeys = []string{runtimeA}
	_, err := New(cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), "admin-key[0]") || strings.Contains(err.Error(), runtimeA) {
		t.Fatalf("admin key equal to a runtime key: %v", err)
	}
}

// TestRestartSurvival: tunnels and keys made through the admin API, and
// revocations, survive a restart on the same data-dir.
func TestRestartSurvival(t *testing.T) {
	dir := t.TempDir()
	open := func() (*harness, func()) {
		st, err := filestore.Open(dir, filestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, nil, Options{Store: st})
		return h, func() { h.r.Close(); h.srv.Close(); _ = st.Close() }
	}
	h, stop := open()
	a := newAdmin(t, h.r)
	tn := a.createTunnel(`{"name":"durable"}`)
	rk := a.createKey(tn.ID, ScopeRuntime, "a1")
	old := a.createKey(tn.ID, ScopeRuntime, "a0")
	a.call("DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+old.ID, "", nil)
	stop()

	h, stop = open()
	defer stop()
	if k, _ := h.r.Bootstrap(context.Background()); k != "" {
		t.Fatal("a restart printed a new admin key")
	}
	a.r = h.r
	var got apiTunnel
	if st, _ := a.call("GET", "/v1/tunnels/"+tn.ID, "", &got); st != 200 || got.Name != "durable" {
		t.Fatalf("tunnel after restart: %d %+v", st, got)
	}
	h.connect(tn.ID, rk.Value)
	if st, _ := h.poll(tn.ID, old.Value, 1, time.Millisecond, nil); st != 401 {
		t.Fatalf("revoked key after restart: %d", st)
	}
}

// TestMatchKeyPositions: every key of a list matches wherever it is, and
// nothing else does.
func TestMatchKeyPositions(t *testing.T) {
	var keys []hashedKey
	for i := range 5 {
		k := NewKey("sk_")
		keys = append(keys, hashedKey{id: string(rune('a' + i)), sum: sha(k)})
		for j, want := range keys {
			got, ok := matchKey(want.sum, keys)
			if !ok || got.id != want.id {
				t.Fatalf("key %d of %d: %v %q", j, len(keys), ok, got.id)
			}
		}
	}
	if _, ok := matchKey(sha("other"), keys); ok {
		t.Fatal("an unknown key matched")
	}
}

func sha(s string) [32]byte {
	return hashedKeyOf(s).sum
}

func hashedKeyOf(s string) hashedKey {
	c, _ := validateTunnels([]Tunnel{{ID: tunA, RuntimeKey: s, AuthMode: AuthPublic}})
	return c[0].runtimeKeys[0]
}

// Keep the helper types in use for vet.
var _ = http.StatusOK

// TestRevocationSharedStore: two relays on one store (in process: the
// memory store notifies its watchers); a revocation on one reaches the
// other through the watch, not a poll.
func TestRevocationSharedStore(t *testing.T) {
	st := store.NewMemory()
	defer st.Close()
	h1 := newHarness(t, nil, Options{Store: st})
	h2 := newHarness(t, nil, Options{Store: st})
	a := newAdmin(t, h1.r)
	tn := a.createTunnel(`{"name":"x"}`)
	rk := a.createKey(tn.ID, ScopeRuntime, "agent")
	deadline := time.Now().Add(time.Second)
	for {
		if st, _ := h2.poll(tn.ID, rk.Value, 1, time.Millisecond, nil); st == 204 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second relay never saw the key")
		}
	}
	start := time.Now()
	a.call("DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+rk.ID, "", nil)
	for {
		if st, _ := h2.poll(tn.ID, rk.Value, 1, time.Millisecond, nil); st == 401 {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("the second relay accepts a key revoked on the first")
		}
	}
}

// TestRevocationEndsHeldPoll: a poll held when its key is revoked ends at
// once with the 401 saying why, and no command reaches it afterwards.
func TestRevocationEndsHeldPoll(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a := newAdmin(t, h.r)
	tn := a.createTunnel(`{"name":"x"}`)
	rk := a.createKey(tn.ID, ScopeRuntime, "agent")
	other := a.createKey(tn.ID, ScopeRuntime, "agent-2")
	type result struct {
		status int
		body   string
	}
	held := make(chan result, 1)
	go func() {
		resp := h.do("GET", "/v1/tunnels/"+tn.ID+"/poll?timeout_ms=20000", nil, map[string]string{"Authorization": "Bearer " + rk.Value})
		held <- result{resp.StatusCode, readAll(t, resp)}
	}()
	// Another agent's held poll, on a key that stays.
	kept := make(chan int, 1)
	go func() {
		st, _ := h.poll(tn.ID, other.Value, 1, 1500*time.Millisecond, nil)
		kept <- st
	}()
	deadline := time.Now().Add(5 * time.Second)
	for h.r.tunnel(tn.ID).heldPolls() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("polls not held")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	a.call("DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+rk.ID, "", nil)
	select {
	case r := <-held:
		if r.status != 401 || !strings.Contains(r.body, "runtime key revoked at") {
			t.Fatalf("held poll after revocation: %d %s", r.status, r.body)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("held poll ended %v after the revocation", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held poll outlived its key's revocation")
	}
	if st := <-kept; st != 204 {
		t.Fatalf("a poll on a key that stays: %d", st)
	}
}

// TestRevocationFailsHeldCalls: the calls an agent holds when its key is
// revoked fail at once (its results could not be posted anyway), and the
// tunnel stops counting as connected, so new calls get 503 at once.
func TestRevocationFailsHeldCalls(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a := newAdmin(t, h.r)
	tn := a.createTunnel(`{"name":"x","response_timeout":"30s"}`)
	rk := a.createKey(tn.ID, ScopeRuntime, "agent")
	ck := a.createKey(tn.ID, ScopeClient, "c")
	inst := map[string]string{wire.HeaderClientInstanceID: "inst-1"}
	if st, _ := h.poll(tn.ID, rk.Value, 1, time.Millisecond, inst); st != 204 {
		t.Fatalf("connect: %d", st)
	}
	call := func() <-chan *http.Response {
		return h.client(context.Background(), "POST", tn.ID, `{"jsonrpc":"2.0","id":7,"method":"tools/call"}`,
			map[string]string{"Content-Type": "application/json"}, map[string]string{"Authorization": "Bearer " + ck.Value})
	}
	got := call()
	cmd := h.nextWith(tn.ID, rk.Value, inst)
	start := time.Now()
	a.call("DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+rk.ID, "", nil)
	resp := wait(t, got)
	body := readAll(t, resp)
	if !strings.Contains(body, `"id":7`) || !strings.Contains(body, "-32603") || !strings.Contains(body, "agent_key_revoked") {
		t.Fatalf("held call after revocation: %d %s", resp.StatusCode, body)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("held call failed %v after the revocation", d)
	}
	if st, code := h.respond(tn.ID, rk.Value, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{}`)}); st != 401 || code != wire.CodeTunnelUseForbidden {
		t.Fatalf("a late result on the revoked key: %d %s", st, code)
	}
	next := wait(t, call())
	if code := apiCode(next); next.StatusCode != 503 || code != wire.CodeTunnelClientNotConnected {
		t.Fatalf("a new call with only a revoked agent: %d %s", next.StatusCode, code)
	}
}

// TestIdleTunnelsAreSmall: a tunnel that never had a command holds no
// queue buffer, and its first command still reaches a poll that was held
// before the queue existed.
func TestIdleTunnelsAreSmall(t *testing.T) {
	h := newHarness(t, nil, Options{})
	tun := h.r.tunnel(tunA)
	if q, s := tun.queues(); q != nil || s != nil {
		t.Fatal("a tunnel without commands has queues")
	}
	// One poll held for 10 s: the command must reach it, not the next one.
	got := make(chan wire.Command, 1)
	go func() {
		st, cmds := h.poll(tunA, runtimeA, 1, 10*time.Second, nil)
		if st != 200 || len(cmds) != 1 {
			t.Errorf("held poll: %d %v", st, cmds)
			close(got)
			return
		}
		got <- cmds[0]
	}()
	deadline := time.Now().Add(5 * time.Second)
	for tun.heldPolls() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("poll not held")
		}
		time.Sleep(time.Millisecond)
	}
	resp := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
	sent := time.Now()
	cmd, ok := <-got
	if !ok {
		t.FailNow()
	}
	if d := time.Since(sent); d > 5*time.Second {
		t.Fatalf("the held poll got the first command only after %v (at the end of its wait)", d)
	}
	h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{}}`)})
	if r := wait(t, resp); r.StatusCode != 200 {
		t.Fatalf("first call: %d", r.StatusCode)
	}
	if q, _ := tun.queues(); cap(q) != DefaultQueueSize {
		t.Fatalf("queue after the first command: cap %d", cap(q))
	}
}

// TestRevocationWithdrawsQueuedCalls: a call queued while the tunnel's only
// agent was between polls is withdrawn with 503 tunnel_client_not_connected
// when that agent's key is revoked (nothing ran it; the client may retry),
// instead of waiting for a poll that cannot come until its response
// timeout. While an agent with a valid key remains, it keeps waiting.
func TestRevocationWithdrawsQueuedCalls(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AgentTimeout = time.Hour }, Options{})
	a := newAdmin(t, h.r)
	tn := a.createTunnel(`{"name":"x","response_timeout":"1m"}`)
	rk := a.createKey(tn.ID, ScopeRuntime, "agent")
	rk2 := a.createKey(tn.ID, ScopeRuntime, "agent-2")
	ck := a.createKey(tn.ID, ScopeClient, "dave")
	poll := func(key, instance string) {
		if st, cmds := h.poll(tn.ID, key, 1, time.Millisecond, map[string]string{wire.HeaderClientInstanceID: instance}); st != 204 || len(cmds) != 0 {
			t.Fatalf("poll: %d %v", st, cmds)
		}
	}
	call := func() <-chan *http.Response {
		return h.client(context.Background(), "POST", tn.ID, `{"jsonrpc":"2.0","id":1,"method":"ping"}`,
			map[string]string{"Content-Type": "application/json"}, map[string]string{"Authorization": "Bearer " + ck.Value})
	}
	waitQueued := func(n int) {
		ts := h.r.tunnel(tn.ID)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			ts.mu.Lock()
			got := len(ts.pending)
			ts.mu.Unlock()
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d calls queued, want %d", got, n)
			}
		}
	}

	// Two agents between polls; revoking one key leaves the other: the call
	// waits on.
	poll(rk.Value, "agent-1")
	poll(rk2.Value, "agent-2")
	first := call()
	waitQueued(1)
	a.call("DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+rk.ID, "", nil)
	select {
	case resp := <-first:
		t.Fatalf("call answered %d although an agent with a valid key remains", resp.StatusCode)
	case <-time.After(300 * time.Millisecond):
	}
	// The last key revoked: the queued call is withdrawn at once.
	start := time.Now()
	a.call("DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+rk2.ID, "", nil)
	resp := wait(t, first)
	body := readAll(t, resp)
	if code, _, _ := errorOf(t, body); resp.StatusCode != 503 || code != wire.CodeTunnelClientNotConnected || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("queued call after the last revocation: %d %s", resp.StatusCode, body)
	}
	t.Logf("withdrawn %s after the revocation", time.Since(start).Round(time.Millisecond))
	waitQueued(0)
	// And a new call is refused at once.
	resp = wait(t, call())
	if body := readAll(t, resp); resp.StatusCode != 503 {
		t.Fatalf("call after the revocation: %d %s", resp.StatusCode, body)
	}
}

// storedSecrets checks that blob (a store's bytes) holds none of keys, not
// even the part of a key its redacted form hides, and does hold each key's
// SHA-256 (so blob is where the keys are kept).
func storedSecrets(t *testing.T, blob []byte, keys []string) {
	t.Helper()
	for _, k := range keys {
		body := k[strings.LastIndexByte(k, '_')+1:]
		if bytes.Contains(blob, []byte(k)) || bytes.Contains(blob, []byte(body[4:len(body)-4])) {
			t.Errorf("the store holds the key %.11s…", k)
		}
		sum := sha256.Sum256([]byte(k))
		if !bytes.Contains(blob, []byte(hex.EncodeToString(sum[:]))) {
			t.Errorf("the store does not hold the hash of %.11s…: looked at the wrong bytes?", k)
		}
	}
}

// TestStoreHoldsOnlyHashes: after tunnels and keys of every scope were made
// (and one revoked), no file of the data directory holds a key: only their
// SHA-256.
func TestStoreHoldsOnlyHashes(t *testing.T) {
	dir := t.TempDir()
	st, err := filestore.Open(dir, filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := newHarness(t, nil, Options{Store: st})
	a := newAdmin(t, h.r)
	tn := a.createTunnel(`{"name":"secrets"}`)
	var second apiKey
	if code, b := a.call("POST", "/v1/organization/admin_api_keys", `{"name":"ops"}`, &second); code != 200 {
		t.Fatalf("admin key: %d %s", code, b)
	}
	rk, ck := a.createKey(tn.ID, ScopeRuntime, "agent"), a.createKey(tn.ID, ScopeClient, "carol")
	old := a.createKey(tn.ID, ScopeRuntime, "old")
	a.call("DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+old.ID, "", nil)
	var blob []byte
	files, _ := os.ReadDir(dir)
	for _, fi := range files {
		b, err := os.ReadFile(filepath.Join(dir, fi.Name()))
		if err != nil {
			t.Fatal(err)
		}
		blob = append(blob, b...)
	}
	storedSecrets(t, blob, []string{a.key, second.Value, rk.Value, ck.Value, old.Value})
}

// TestAdminAcceptsOpenAIClientFields: OpenAI's admin client sends
// workspace_ids and organization_ids with every tunnel it creates; the
// relay accepts them (it has neither) so that client works against it.
func TestAdminAcceptsOpenAIClientFields(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a := newAdmin(t, h.r)
	tn := a.createTunnel(`{"name":"from-openai-cli","description":"d","workspace_ids":["ws_1"],"organization_ids":["org_1"]}`)
	if !wire.ValidTunnelID(tn.ID) || tn.Name != "from-openai-cli" {
		t.Fatalf("created %+v", tn)
	}
}
