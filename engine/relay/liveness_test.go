package relay

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// agentClient is one agent process: its own connections and instance id.
type agentClient struct {
	h        *harness
	instance string
	tr       *http.Transport
	c        *http.Client
}

func newAgentClient(h *harness, instance string) *agentClient {
	tr := &http.Transport{}
	return &agentClient{h: h, instance: instance, tr: tr, c: &http.Client{Transport: tr}}
}

func (a *agentClient) do(method, path string, body []byte, hdr map[string]string) *http.Response {
	a.h.t.Helper()
	req, _ := http.NewRequest(method, a.h.url+path, strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+runtimeA)
	req.Header.Set(wire.HeaderClientInstanceID, a.instance)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.h.t.Fatal(err)
	}
	return resp
}

// poll polls once and returns the commands.
func (a *agentClient) poll(timeout time.Duration) []wire.Command {
	a.h.t.Helper()
	resp := a.do("GET", "/v1/tunnels/"+tunA+"/poll?limit=5&timeout_ms="+strconv.FormatInt(timeout.Milliseconds(), 10), nil, nil)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 204 {
		return nil
	}
	cmds, _, err := wire.DecodePoll(b)
	if err != nil {
		a.h.t.Fatal(err)
	}
	return cmds
}

func (a *agentClient) respond(cmd wire.Command, body string) int {
	b, _ := json.Marshal(wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(body), RespCode: 200})
	resp := a.do("POST", "/v1/tunnels/"+tunA+"/response", b, map[string]string{wire.HeaderShardToken: cmd.ShardToken, "Content-Type": "application/json"})
	resp.Body.Close()
	return resp.StatusCode
}

// take has the agent take one client call: it polls once, so that the
// tunnel has an agent and the call is queued rather than refused, posts
// body as a client, and polls again for the call's command. It returns the
// client's answer to come and the command, and fails the test unless the
// second poll took exactly that one command.
func (a *agentClient) take(body string) (<-chan *http.Response, wire.Command) {
	a.h.t.Helper()
	a.poll(time.Millisecond)
	got := a.h.clientPost(tunA, body, nil)
	cmds := a.poll(5 * time.Second)
	if len(cmds) != 1 {
		a.h.t.Fatalf("agent %q took %d commands, want the call's one", a.instance, len(cmds))
	}
	return got, cmds[0]
}

// die closes every connection of the agent, as the kernel does for a
// killed process.
func (a *agentClient) die() { a.tr.CloseIdleConnections() }

// TestLostAgentFailsItsCalls: an agent takes a call and dies (it stops
// polling and its connections close). The call is answered at once with a
// tunnel failure saying the agent was lost, instead of waiting for its
// response timeout, and it is not handed to another agent.
func TestLostAgentFailsItsCalls(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Tunnels[0].ResponseTimeout = time.Minute }, Options{})
	dying, other := newAgentClient(h, "dying"), newAgentClient(h, "other")
	got, cmd := dying.take(`{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"slow"}}`)
	// The other agent keeps polling: it must never see that command.
	stop := make(chan struct{})
	otherGot := make(chan int, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				otherGot <- n
				return
			default:
			}
			n += len(other.poll(200 * time.Millisecond))
		}
	}()
	dying.die()
	died := time.Now()
	resp := wait(t, got)
	took := time.Since(died)
	b := readAll(t, resp)
	close(stop)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(b, `"id":41`) || !strings.Contains(b, `"transport_error_kind":"agent_lost"`) {
		t.Fatalf("got %d %s, want 502 with an agent_lost tunnel failure", resp.StatusCode, b)
	}
	t.Logf("answered %s after the agent's connections closed", took.Round(time.Millisecond))
	if took > 4*time.Second {
		t.Errorf("the lost agent's call took %s to fail", took)
	}
	if n := <-otherGot; n != 0 {
		t.Errorf("the lost agent's command was handed to another agent %d times", n)
	}
	// A result that arrives after all is refused: the call is over.
	if st := other.respond(cmd, `{"jsonrpc":"2.0","id":41,"result":{}}`); st != 404 {
		t.Errorf("late result: %d, want 404", st)
	}
}

// TestQuietConnectedAgentIsNotLost: an agent that holds a call and neither
// polls nor posts for a while, but keeps its connection, is busy, not lost:
// its result is delivered.
func TestQuietConnectedAgentIsNotLost(t *testing.T) {
	h := newHarness(t, nil, Options{})
	a := newAgentClient(h, "busy")
	got, cmd := a.take(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`)
	time.Sleep(agentLostAfter + time.Second) // its keep-alive connection stays open
	if st := a.respond(cmd, `{"jsonrpc":"2.0","id":1,"result":{"ok":true}}`); st != 200 {
		t.Fatalf("respond: %d", st)
	}
	resp := wait(t, got)
	if b := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(b, `"ok":true`) {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	if n := h.r.tunnel(tunA).lostCalls.Load(); n != 0 {
		t.Errorf("%d calls counted lost", n)
	}
}

// TestAgentWithoutInstanceIDIsNeverLost: lost detection keys on
// X-Tunnel-Client-Instance-Id; without it the relay cannot tell agents
// apart and leaves their calls to the response timeout.
func TestAgentWithoutInstanceIDIsNeverLost(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Tunnels[0].ResponseTimeout = 4 * time.Second }, Options{})
	a := newAgentClient(h, "")
	got, _ := a.take(`{"jsonrpc":"2.0","id":1,"method":"x"}`)
	a.die()
	resp := wait(t, got)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("got %d, want the response timeout's 504", resp.StatusCode)
	}
}
