package faults

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/faults/faultkit"
	"github.com/sluicemcp/sluice/engine/relay"
)

// revokedMessage is the relay's message for the calls held by an agent
// whose runtime key was revoked.
const revokedMessage = "the runtime key of the agent handling this call was revoked"

// adminCall makes one admin API request on relay r and decodes its answer.
func adminCall(t *testing.T, r *relayProc, key, method, path, body string, out any) {
	t.Helper()
	req, _ := http.NewRequest(method, r.adminURL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRuntimeKeyRevokedUnderLoad: a tunnel made through the admin API, its
// runtime key revoked mid-load. Every call its agent held is answered
// within 1 s of the revocation with a tunnel failure saying why (its result
// could never be posted), calls made after it get 503
// tunnel_client_not_connected at once instead of waiting for their
// response timeout, the agent's /readyz names the revocation, nothing hangs,
// nothing runs twice, and a new runtime key brings the tunnel back.
func TestRuntimeKeyRevokedUnderLoad(t *testing.T) {
	tp := newTopo(t)
	tp.startCountServer()
	adminKey := relay.NewKey("sk_adm_")
	adminFile := writeFile(t, tp.dir, "admin.key", adminKey)
	r := tp.startRelay(relayOptions{responseTimeout: 60 * time.Second, extraYAML: "admin-key: file:" + adminFile})

	var tn struct{ ID string }
	adminCall(t, r, adminKey, "POST", "/v1/tunnels", `{"name":"revoke-under-load"}`, &tn)
	var rk, ck struct{ ID, Value string }
	adminCall(t, r, adminKey, "POST", "/v1/tunnels/"+tn.ID+"/keys", `{"scope":"runtime","name":"agent"}`, &rk)
	adminCall(t, r, adminKey, "POST", "/v1/tunnels/"+tn.ID+"/keys", `{"scope":"client","name":"load"}`, &ck)
	tp.tun = tunnel{id: tn.ID, runtimeKey: rk.Value, clientKey: ck.Value,
		runtimeKeyFile: writeFile(t, tp.dir, "managed-runtime.key", rk.Value), clientKeyFile: writeFile(t, tp.dir, "managed-client.key", ck.Value)}
	agent := tp.startAgent(r, agentOptions{})
	tp.waitServing(r, 20*time.Second)

	var revokedAt time.Time
	after(2*time.Second, func() {
		revokedAt = time.Now()
		adminCall(t, r, adminKey, "DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+rk.ID, "", nil)
	})
	res := tp.runSound(faultkit.Load{Concurrency: 16, Duration: 6 * time.Second, SleepMS: 300}, r)

	held := res.Where(func(c *faultkit.Call) bool { return strings.Contains(c.Detail, revokedMessage) })
	if len(held) == 0 {
		t.Fatal("no call was held by the agent at the revocation: the fault did not happen")
	}
	latest := latestEnd(held, revokedAt)
	refused := res.Where(func(c *faultkit.Call) bool {
		return c.Kind == "http_503" && strings.Contains(c.Detail, "tunnel_client_not_connected")
	})
	slowest := time.Duration(0)
	for _, c := range refused {
		slowest = max(slowest, c.Duration())
	}
	t.Logf("%d calls held at the revocation, the last answered %s after it; %d later calls refused with 503, the slowest in %s",
		len(held), latest.Round(time.Millisecond), len(refused), slowest.Round(time.Millisecond))
	if latest > time.Second {
		t.Errorf("a call held at the revocation was answered %s after it (bar: 1 s)", latest)
	}
	if len(refused) == 0 {
		t.Error("no call after the revocation was refused: they waited instead")
	}
	if slowest > 5*time.Second {
		t.Errorf("a call after the revocation took %s to be refused (bar: 5 s, against a 60 s response timeout)", slowest)
	}
	for _, c := range res.Of(faultkit.ClassError) {
		if !strings.Contains(c.Detail, revokedMessage) && c.Kind != "http_503" {
			t.Errorf("call %s failed otherwise: %s %s", c.ID, c.Kind, c.Detail)
		}
		if c.Start.After(revokedAt.Add(100*time.Millisecond)) && c.Executed > 0 {
			t.Errorf("call %s, made after the revocation, was executed", c.ID)
		}
	}
	body, deadline := "", time.Now().Add(10*time.Second)
	for !strings.HasPrefix(body, "runtime key rejected: runtime key revoked at ") {
		if time.Now().After(deadline) {
			t.Fatalf("agent /readyz does not name the revocation: %q", body)
		}
		time.Sleep(50 * time.Millisecond)
		resp, err := http.Get(agent.healthURL + "/readyz")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 503 {
			body = string(b)
		}
	}
	t.Logf("agent /readyz: %s", strings.TrimSpace(body))

	// A new runtime key: the agent, restarted with it, serves again.
	var rk2 struct{ Value string }
	adminCall(t, r, adminKey, "POST", "/v1/tunnels/"+tn.ID+"/keys", `{"scope":"runtime","name":"agent-2"}`, &rk2)
	writeFile(t, tp.dir, "managed-runtime.key", rk2.Value)
	agent.Kill()
	tp.startAgent(r, agentOptions{})
	tp.waitServing(r, 20*time.Second)
}
