package faults

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/faults/faultkit"
)

// TestManagedTunnelsSurviveSIGKILL: what the admin API answered is on disk
// in relay.data-dir. The relay is SIGKILLed right after its last answer (a
// tunnel, its keys, a revocation); restarted on the same directory it
// serves the tunnel to an agent and clients with those keys, and still
// refuses the revoked key, saying why.
func TestManagedTunnelsSurviveSIGKILL(t *testing.T) {
	tp := newTopo(t)
	tp.startCountServer()
	m := tp.startManaged(relayOptions{}, "durable")
	r := m.relay
	oldID, oldKey := m.newKey(t, "runtime", "old")
	m.revoke(t, oldID)
	r.Kill()
	r.restart(t)

	tp.startAgent(r, agentOptions{})
	tp.waitServing(r, 20*time.Second)
	res := tp.runSound(faultkit.Load{Concurrency: 8, Duration: 2 * time.Second}, r)
	if n := res.Count(faultkit.ClassError); n > 0 || res.Count(faultkit.ClassOK) == 0 {
		t.Errorf("after the restart: %d errors %v, %d ok", n, res.Kinds(), res.Count(faultkit.ClassOK))
	}

	req, _ := http.NewRequest("GET", r.URL+"/v1/tunnels/"+m.tunnelID+"/poll?timeout_ms=1", nil)
	req.Header.Set("Authorization", "Bearer "+oldKey)
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
