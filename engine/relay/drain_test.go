package relay

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// TestDrain: a draining relay lets the call an agent already took finish,
// answers the call no agent took with a retryable 503 (and never hands it
// out), refuses new calls and new polls with 503 and Retry-After, and sends
// polling agents away.
func TestDrain(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a := newAgentClient(h, "agent-1")
	delivered, cmd := a.take(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`)
	queued := h.clientPost(tunA, `{"jsonrpc":"2.0","id":2,"method":"tools/call"}`, nil)
	for h.r.tunnel(tunA).inflight() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	drained := make(chan struct{})
	go func() {
		h.r.Drain(context.Background())
		close(drained)
	}()
	resp := wait(t, queued)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"id":2`) {
		t.Fatalf("queued call: %d %v %s, want 503 with Retry-After and its id", resp.StatusCode, resp.Header, body)
	}
	// New calls and polls are refused.
	r := h.do("POST", "/v1/mcp/"+tunA, []byte(`{"jsonrpc":"2.0","id":3,"method":"ping"}`),
		map[string]string{"Authorization": "Bearer " + clientKeyA, "Content-Type": "application/json"})
	r.Body.Close()
	if r.StatusCode != 503 || r.Header.Get("Retry-After") == "" {
		t.Errorf("new call during the drain: %d %v", r.StatusCode, r.Header)
	}
	pr := a.do("GET", "/v1/tunnels/"+tunA+"/poll?limit=1&timeout_ms=10", nil, nil)
	pr.Body.Close()
	if pr.StatusCode != 503 || pr.Header.Get("Retry-After") == "" || !pr.Close {
		t.Errorf("poll during the drain: %d %v close=%v, want 503, Retry-After, Connection: close", pr.StatusCode, pr.Header, pr.Close)
	}
	// Past the lost-agent delay, with its poll connection closed by the
	// relay: the agent is busy, not lost.
	select {
	case <-drained:
		t.Fatal("the drain ended while a delivered call was running")
	case <-time.After(agentLostAfter + 500*time.Millisecond):
	}
	// The delivered call's result is still taken, and reaches its client.
	if st := a.respond(cmd, `{"jsonrpc":"2.0","id":1,"result":{"done":true}}`); st != 200 {
		t.Fatalf("result during the drain: %d", st)
	}
	resp = wait(t, delivered)
	if b := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(b, `"done":true`) {
		t.Fatalf("delivered call: %d %s", resp.StatusCode, b)
	}
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("the drain did not end once the delivered call finished")
	}
	if n := h.r.tunnel(tunA).inflight(); n != 0 {
		t.Errorf("%d commands left after the drain", n)
	}
}

// TestDrainTimeout: a delivered call that does not finish within the drain
// ends with 503 when the relay closes.
func TestDrainTimeout(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a := newAgentClient(h, "agent-1")
	got, cmd := a.take(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	h.r.Drain(ctx)
	h.r.Close()
	resp := wait(t, got)
	if b := readAll(t, resp); resp.StatusCode != 503 || !strings.Contains(b, `"id":1`) {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	b, _ := json.Marshal(wire.Response{RequestID: cmd.RequestID, RespCode: 200, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{}}`)})
	late := a.do("POST", "/v1/tunnels/"+tunA+"/response", b, map[string]string{wire.HeaderShardToken: cmd.ShardToken})
	late.Body.Close()
	if late.StatusCode != 404 {
		t.Errorf("late result: %d", late.StatusCode)
	}
}

// TestDrainEndsOutstandingPolls: a poll waiting when the drain starts ends
// at once, so the agent reconnects (through a load balancer, elsewhere).
func TestDrainEndsOutstandingPolls(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a := newAgentClient(h, "agent-1")
	done := make(chan int, 1)
	go func() {
		resp := a.do("GET", "/v1/tunnels/"+tunA+"/poll?limit=1&timeout_ms=20000", nil, nil)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	for !h.r.tunnel(tunA).connected(time.Now(), time.Minute) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	h.r.Drain(context.Background())
	select {
	case st := <-done:
		if st != http.StatusNoContent {
			t.Errorf("outstanding poll ended with %d, want 204", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the outstanding poll did not end")
	}
}
