package faults

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/faults/faultkit"
	"github.com/sluicemcp/sluice/engine/relay"
)

// TestManagedTunnelsSurviveSIGKILL: what the admin API answered is on disk
// in relay.data-dir. The relay is SIGKILLed right after its last answer (a
// tunnel, its keys, a revocation); restarted on the same directory it
// serves the tunnel to an agent and clients with those keys, and still
// refuses the revoked key, saying why.
func TestManagedTunnelsSurviveSIGKILL(t *testing.T) {
	tp := newTopo(t)
	tp.startCountServer()
	adminKey := relay.NewKey("sk_adm_")
	adminFile := writeFile(t, tp.dir, "admin.key", adminKey)
	r := tp.startRelay(relayOptions{extraYAML: "admin-key: file:" + adminFile})

	var tn struct{ ID string }
	adminCall(t, r, adminKey, "POST", "/v1/tunnels", `{"name":"durable"}`, &tn)
	var rk, ck, old struct{ ID, Value string }
	adminCall(t, r, adminKey, "POST", "/v1/tunnels/"+tn.ID+"/keys", `{"scope":"runtime","name":"agent"}`, &rk)
	adminCall(t, r, adminKey, "POST", "/v1/tunnels/"+tn.ID+"/keys", `{"scope":"client","name":"load"}`, &ck)
	adminCall(t, r, adminKey, "POST", "/v1/tunnels/"+tn.ID+"/keys", `{"scope":"runtime","name":"old"}`, &old)
	adminCall(t, r, adminKey, "DELETE", "/v1/tunnels/"+tn.ID+"/keys/"+old.ID, "", nil)
	r.Kill()
	r.restart(t)

	tp.tun = tunnel{id: tn.ID, runtimeKey: rk.Value, clientKey: ck.Value,
		runtimeKeyFile: writeFile(t, tp.dir, "managed-runtime.key", rk.Value), clientKeyFile: writeFile(t, tp.dir, "managed-client.key", ck.Value)}
	tp.startAgent(r, agentOptions{})
	tp.waitServing(r, 20*time.Second)
	res := tp.runSound(faultkit.Load{Concurrency: 8, Duration: 2 * time.Second}, r)
	if n := res.Count(faultkit.ClassError); n > 0 || res.Count(faultkit.ClassOK) == 0 {
		t.Errorf("after the restart: %d errors %v, %d ok", n, res.Kinds(), res.Count(faultkit.ClassOK))
	}

	req, _ := http.NewRequest("GET", r.URL+"/v1/tunnels/"+tn.ID+"/poll?timeout_ms=1", nil)
	req.Header.Set("Authorization", "Bearer "+old.Value)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), "runtime key revoked at ") {
		t.Fatalf("the key revoked before the kill, after the restart: %d %s", resp.StatusCode, b)
	}
}
