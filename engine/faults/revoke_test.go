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

// managed is a relay with an admin key and a tunnel made through its
// admin API.
type managed struct {
	relay        *relayProc
	adminKey     string
	tunnelID     string
	runtimeKeyID string // the agent's runtime key
}

// startManaged starts a relay with an admin key (and o) and makes a
// tunnel named name through its admin API, with a runtime key "agent" and
// a client key "load": the scenario's tunnel from then on.
func (tp *topo) startManaged(o relayOptions, name string) *managed {
	t := tp.t
	t.Helper()
	m := &managed{adminKey: relay.NewKey("sk_adm_")}
	if o.extraYAML != "" && !strings.HasSuffix(o.extraYAML, "\n") {
		o.extraYAML += "\n"
	}
	o.extraYAML += "admin-key: file:" + writeFile(t, tp.dir, "admin.key", m.adminKey) + "\n"
	m.relay = tp.startRelay(o)
	tp.manage(m, name)
	return m
}

// manage makes a tunnel named name through m's relay's admin API, with a
// runtime key "agent" and a client key "load": the scenario's tunnel from
// then on.
func (tp *topo) manage(m *managed, name string) {
	t := tp.t
	t.Helper()
	var tn struct{ ID string }
	m.call(t, "POST", "/v1/tunnels", `{"name":"`+name+`"}`, &tn)
	m.tunnelID = tn.ID
	var runtimeKey, clientKey string
	m.runtimeKeyID, runtimeKey = m.newKey(t, "runtime", "agent")
	_, clientKey = m.newKey(t, "client", "load")
	tp.tun = tunnel{id: tn.ID, runtimeKey: runtimeKey, clientKey: clientKey,
		runtimeKeyFile: writeFile(t, tp.dir, "managed-runtime.key", runtimeKey), clientKeyFile: writeFile(t, tp.dir, "managed-client.key", clientKey)}
}

// newKey makes a key of scope ("runtime" or "client") named name on the
// tunnel and returns its id and value.
func (m *managed) newKey(t *testing.T, scope, name string) (id, value string) {
	t.Helper()
	var k struct{ ID, Value string }
	m.call(t, "POST", "/v1/tunnels/"+m.tunnelID+"/keys", `{"scope":"`+scope+`","name":"`+name+`"}`, &k)
	return k.ID, k.Value
}

// revoke revokes the tunnel's key id.
func (m *managed) revoke(t *testing.T, id string) {
	t.Helper()
	m.call(t, "DELETE", "/v1/tunnels/"+m.tunnelID+"/keys/"+id, "", nil)
}

// call makes one admin API request with the admin key and decodes its
// answer into out (unless nil); any status but 200 fails the test.
func (m *managed) call(t *testing.T, method, path, body string, out any) {
	t.Helper()
	req, _ := http.NewRequest(method, m.relay.adminURL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+m.adminKey)
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
	m := tp.startManaged(relayOptions{responseTimeout: 60 * time.Second}, "revoke-under-load")
	r := m.relay
	agent := tp.startAgent(r, agentOptions{})
	tp.waitServing(r, 20*time.Second)

	var revokedAt time.Time
	after(2*time.Second, func() {
		revokedAt = time.Now()
		m.revoke(t, m.runtimeKeyID)
	})
	res := tp.runSound(faultkit.Load{Concurrency: 16, Duration: 6 * time.Second, SleepMS: 300}, r)

	assertRevoked(t, res, revokedAt)
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
	_, rk2 := m.newKey(t, "runtime", "agent-2")
	writeFile(t, tp.dir, "managed-runtime.key", rk2)
	agent.Kill()
	tp.startAgent(r, agentOptions{})
	tp.waitServing(r, 20*time.Second)
}

// TestRuntimeKeyRevokedOnReplicas: the same revocation on three replicas
// sharing a 3-node NATS cluster, the tunnel and its keys kept in NATS, two
// agents behind a load balancer, calls on every replica. Every call the
// agents held is answered within 1 s with the revocation's failure, on its
// own replica whichever replica's poll handed it out; calls after it are
// refused at once on every replica (no replica counts the agents connected
// on another's word); nothing hangs, nothing runs twice.
func TestRuntimeKeyRevokedOnReplicas(t *testing.T) {
	tp := newTopo(t)
	m := &managed{adminKey: relay.NewKey("sk_adm_")}
	rs := tp.startReplicas(60*time.Second, "admin-key: file:"+writeFile(t, tp.dir, "admin.key", m.adminKey)+"\n")
	m.relay = rs.replicas[0]
	tp.manage(m, "revoke-on-replicas")
	rs.startAgents(tp)

	var revokedAt time.Time
	after(2*time.Second, func() {
		revokedAt = time.Now()
		on1 := *m // through another replica than the tunnel's maker
		on1.relay = rs.replicas[1]
		on1.revoke(t, m.runtimeKeyID)
	})
	// 12 clients: the agents' result posts refused after the revocation count
	// as failed authentications from 127.0.0.1, the clients' address too,
	// and 20 of them on one replica would refuse the clients (429).
	res := rs.sound(tp, faultkit.Load{Concurrency: 12, Duration: 6 * time.Second, SleepMS: 300})

	held := assertRevoked(t, res, revokedAt)
	perReplica := map[string]int{}
	for _, c := range held {
		perReplica[c.URL]++
	}
	t.Logf("the calls held at the revocation were on %d replicas", len(perReplica))
	if len(perReplica) < 2 {
		t.Errorf("calls held on %d replica(s) only: the revocation did not span replicas", len(perReplica))
	}
}

// assertRevoked checks a load through a runtime key's revocation at
// revokedAt and returns the calls its agents held then: each answered
// within 1 s with a failure saying why, later calls refused at once (503
// tunnel_client_not_connected, within 5 s against a 60 s response
// timeout), no other error, nothing made after it executed.
func assertRevoked(t *testing.T, res *faultkit.Result, revokedAt time.Time) []*faultkit.Call {
	t.Helper()
	held := res.Where(func(c *faultkit.Call) bool { return strings.Contains(c.Detail, revokedMessage) })
	if len(held) == 0 {
		t.Fatal("no call was held by an agent at the revocation: the fault did not happen")
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
	return held
}
