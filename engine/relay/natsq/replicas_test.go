package natsq

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicemcp/sluice/engine/relay"
	"github.com/sluicemcp/sluice/engine/wire"
)

const (
	rtKey  = "rk-replicas"
	ckKey  = "ck-replicas"
	rtAuth = "Bearer " + rtKey
)

// replica is one relay of a test cluster, served on loopback.
type replica struct {
	r   *relay.Relay
	q   *Queue
	srv *httptest.Server
	url string
}

// startReplica starts a relay joined to the others through nc's server.
func startReplica(t *testing.T, nc *nats.Conn, queueSize int) *replica {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	q := newQueue(t, nc, Options{QueueSize: queueSize})
	r, srv := serve(t, ln, relay.Config{
		QueueSize: queueSize,
		Tunnels: []relay.Tunnel{{ID: tun, Name: "replicas", RuntimeKey: rtKey,
			ClientKeys: []relay.ClientKey{{Name: "c", Key: ckKey}}, ResponseTimeout: 10 * time.Second}},
	}, q)
	rep := &replica{r: r, q: q, srv: srv, url: srv.URL}
	t.Cleanup(rep.stop)
	return rep
}

// serve starts a relay with cfg (its public URL set from ln) on ln.
func serve(tb testing.TB, ln net.Listener, cfg relay.Config, cl relay.Cluster) (*relay.Relay, *httptest.Server) {
	tb.Helper()
	cfg.PublicURL = "http://" + ln.Addr().String()
	r, err := relay.New(cfg, relay.Options{Cluster: cl})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(r.Handler())
	r.ConfigureServer(srv.Config)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	return r, srv
}

// stop is a replica dying: it stops answering the others and its clients'
// connections break.
func (rp *replica) stop() {
	_ = rp.q.Close()
	rp.srv.CloseClientConnections()
	rp.srv.Close()
	rp.r.Close()
}

// agent is a minimal tunnel agent: it polls one replica and posts each
// command's answer (an echo of its JSON-RPC id) to another.
type agent struct {
	t          *testing.T
	instance   string
	pollURL    string
	respondURL string
	mu         sync.Mutex
	got        []string // request ids received
}

func (a *agent) run(ctx context.Context) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", a.pollURL+"/v1/tunnels/"+tun+"/poll?limit=5&timeout_ms=1000", nil)
		req.Header.Set("Authorization", rtAuth)
		req.Header.Set(wire.HeaderClientInstanceID, a.instance)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			continue
		}
		cmds, _, err := wire.DecodePoll(b)
		if err != nil {
			a.t.Errorf("decode poll: %v", err)
			return
		}
		for _, c := range cmds {
			a.mu.Lock()
			a.got = append(a.got, c.RequestID)
			a.mu.Unlock()
			go a.respond(c)
		}
	}
}

// respond posts c's final answer and returns the status.
func (a *agent) respond(c wire.Command) int {
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	_ = json.Unmarshal(c.JSONRPC, &m)
	body, _ := json.Marshal(wire.Response{RequestID: c.RequestID, RespCode: 200, RespType: wire.RespJSONRPCResponse,
		RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{"by":"` + a.instance + `"}}`)})
	req, _ := http.NewRequest("POST", a.respondURL+"/v1/tunnels/"+tun+"/response", bytes.NewReader(body))
	req.Header.Set("Authorization", rtAuth)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(wire.HeaderShardToken, c.ShardToken)
	req.Header.Set(wire.HeaderClientInstanceID, a.instance)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (a *agent) received() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.got...)
}

// call makes one tools/call through replica url and returns the status and
// body.
func call(t *testing.T, url string, id int) (int, string) {
	t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"x"}}`, id)
	req, _ := http.NewRequest("POST", url+"/v1/mcp/"+tun, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+ckKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A call on replica A reaches an agent polling replica B, whose answer,
// posted to replica C, comes back to A's client.
func TestCallCrossesReplicas(t *testing.T) {
	conn := embedded(t)
	a, b, c := startReplica(t, conn(), 0), startReplica(t, conn(), 0), startReplica(t, conn(), 0)

	// No agent anywhere yet: 503, as for a relay alone.
	if st, body := call(t, a.url, 1); st != http.StatusServiceUnavailable || !strings.Contains(body, wire.CodeTunnelClientNotConnected) {
		t.Fatalf("before any agent: %d %s", st, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ag := &agent{t: t, instance: "agent-one", pollURL: b.url, respondURL: c.url}
	go ag.run(ctx)
	// Replica A learns from B that the tunnel's agent is connected.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, body := call(t, a.url, 2)
		if st == 200 {
			if !strings.Contains(body, `"id":2`) || !strings.Contains(body, "agent-one") {
				t.Fatalf("answer = %s", body)
			}
			break
		}
		if st != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("call through A: %d %s", st, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Two agents on two replicas, calls on three: each command reaches one
// agent, once, and every caller gets its own answer.
func TestRedundantAgentsGetDistinctCommands(t *testing.T) {
	conn := embedded(t)
	reps := []*replica{startReplica(t, conn(), 0), startReplica(t, conn(), 0), startReplica(t, conn(), 0)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agents := []*agent{
		{t: t, instance: "agent-a", pollURL: reps[0].url, respondURL: reps[1].url},
		{t: t, instance: "agent-b", pollURL: reps[1].url, respondURL: reps[2].url},
	}
	for _, ag := range agents {
		go ag.run(ctx)
	}
	waitServing(t, reps)
	const n = 150
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			id := 1000 + i
			st, body := call(t, reps[i%3].url, id)
			if st != 200 || !strings.Contains(body, fmt.Sprintf(`"id":%d`, id)) {
				errs <- fmt.Sprintf("call %d: %d %s", id, st, body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	seen := map[string]int{}
	for _, ag := range agents {
		for _, id := range ag.received() {
			seen[id]++
		}
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("command %s delivered %d times", id, c)
		}
	}
	if len(agents[0].received()) == 0 || len(agents[1].received()) == 0 {
		t.Errorf("one agent got nothing: %d / %d", len(agents[0].received()), len(agents[1].received()))
	}
}

// waitServing waits until a call through each replica succeeds.
func waitServing(t *testing.T, reps []*replica) {
	t.Helper()
	for i, rp := range reps {
		deadline := time.Now().Add(5 * time.Second)
		for {
			st, _ := call(t, rp.url, 1)
			if st == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d not serving: %d", i, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// pollOnce polls url once as instance and returns the commands.
func pollOnce(t *testing.T, url, instance string) []wire.Command {
	t.Helper()
	return pollWith(t, http.DefaultClient, url, instance)
}

// callTakenVia makes call id on replica url a while an agent (instance,
// through client) polls replica url b, once before the call so that a
// knows of it, then until the command arrives (5 s at most); it returns
// what the agent got and the channel the call's "status body" comes on.
func callTakenVia(t *testing.T, client *http.Client, a, b, instance string, id int) ([]wire.Command, <-chan string) {
	t.Helper()
	pollWith(t, client, b, instance)
	time.Sleep(100 * time.Millisecond)
	res := make(chan string, 2)
	go func() { st, body := call(t, a, id); res <- fmt.Sprint(st, " ", body) }()
	var cmds []wire.Command
	for deadline := time.Now().Add(5 * time.Second); len(cmds) == 0 && time.Now().Before(deadline); {
		cmds = pollWith(t, client, b, instance)
	}
	return cmds, res
}

func pollWith(t *testing.T, client *http.Client, url, instance string) []wire.Command {
	t.Helper()
	return pollHeaders(t, client, url, 3*time.Second, map[string]string{wire.HeaderClientInstanceID: instance})
}

// pollHeaders polls url once with the runtime key and extra headers and
// returns the commands.
func pollHeaders(t *testing.T, client *http.Client, url string, timeout time.Duration, hdr map[string]string) []wire.Command {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/v1/tunnels/"+tun+"/poll?limit=5&timeout_ms="+fmt.Sprint(timeout.Milliseconds()), nil)
	req.Header.Set("Authorization", rtAuth)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil
	}
	cmds, _, err := wire.DecodePoll(b)
	if err != nil {
		t.Fatal(err)
	}
	return cmds
}

// A replica that dies loses only its own clients' calls: its client sees a
// broken connection, and the agent's result for a command it owned is
// answered 404 (dropped). The other replica's calls are untouched.
func TestKilledReplicaLosesOnlyItsCalls(t *testing.T) {
	conn := embedded(t)
	a, b := startReplica(t, conn(), 0), startReplica(t, conn(), 0)
	if cmds := pollOnce(t, b.url, "agent-k"); len(cmds) != 0 {
		t.Fatalf("unexpected commands %v", cmds)
	}
	time.Sleep(100 * time.Millisecond) // A hears that B has an agent
	resA := make(chan int, 1)
	go func() { st, _ := call(t, a.url, 7); resA <- st }()
	resB := make(chan string, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		st, body := call(t, b.url, 8)
		resB <- fmt.Sprint(st, " ", body)
	}()
	var cmds []wire.Command
	deadline := time.Now().Add(5 * time.Second)
	for len(cmds) < 2 && time.Now().Before(deadline) {
		cmds = append(cmds, pollOnce(t, b.url, "agent-k")...)
	}
	if len(cmds) != 2 {
		t.Fatalf("agent took %d commands, want 2", len(cmds))
	}
	a.stop()
	if st := <-resA; st != 0 {
		t.Fatalf("the killed replica's client got status %d, want a broken connection", st)
	}
	ag := &agent{t: t, instance: "agent-k", respondURL: b.url}
	for _, c := range cmds {
		st := ag.respond(c)
		owner := strings.Split(c.ShardToken, "_")[1]
		switch {
		case owner == a.q.ID() && st != http.StatusNotFound:
			t.Errorf("result for the dead replica's call: %d, want 404", st)
		case owner == b.q.ID() && st != http.StatusOK:
			t.Errorf("result for B's call: %d, want 200", st)
		}
	}
	select {
	case got := <-resB:
		if !strings.HasPrefix(got, "200 ") || !strings.Contains(got, `"id":8`) {
			t.Fatalf("call on B: %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("call on B hung")
	}
}

// Commands a dead replica owned and nobody took yet are dropped when
// pulled, never handed to an agent.
func TestQueuedCommandsOfADeadReplicaNeverRun(t *testing.T) {
	conn := embedded(t)
	a, b := startReplica(t, conn(), 0), startReplica(t, conn(), 0)
	// An agent polled B a moment ago, so A takes calls; now none polls.
	ag := &agent{t: t, instance: "agent-q", pollURL: b.url, respondURL: b.url}
	pctx, pcancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	ag.run(pctx)
	pcancel()
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() { call(t, a.url, 100+i) })
	}
	time.Sleep(500 * time.Millisecond) // queued, owned by A
	a.stop()
	wg.Wait()
	before := len(ag.received())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ag.run(ctx)
	if got := ag.received()[before:]; len(got) != 0 {
		t.Fatalf("the agent received %d commands of a dead replica", len(got))
	}
}

// The queue bound holds across replicas: a full queue answers 429 on any.
func TestQueueFullAcrossReplicas(t *testing.T) {
	conn := embedded(t)
	a, b := startReplica(t, conn(), 2), startReplica(t, conn(), 2)
	ag := &agent{t: t, instance: "agent-f", pollURL: b.url, respondURL: b.url}
	pctx, pcancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	ag.run(pctx) // connected, then silent: nothing drains the queue
	pcancel()
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "POST", a.url+"/v1/mcp/"+tun, strings.NewReader(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i)))
			req.Header.Set("Authorization", "Bearer "+ckKey)
			req.Header.Set("Content-Type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	st, body := call(t, b.url, 3)
	if st != http.StatusTooManyRequests || !strings.Contains(body, wire.CodeTunnelQueueFull) {
		t.Fatalf("third call on B: %d %s", st, body)
	}
	cancel()
	wg.Wait()
}

// An agent that dies holding a command another replica owns is found lost
// by the replica it polled, which tells the owner: the client gets the
// agent_lost failure in seconds, not at its response timeout. An agent that
// only moved to another replica is not lost.
func TestLostAgentAcrossReplicas(t *testing.T) {
	conn := embedded(t)
	a, b, c := startReplica(t, conn(), 0), startReplica(t, conn(), 0), startReplica(t, conn(), 0)
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}

	// The agent moves from B to C (its connection to B closes) and keeps
	// polling there: its call on A is not failed.
	cmds, res := callTakenVia(t, client, a.url, b.url, "agent-moves", 21)
	if len(cmds) != 1 {
		t.Fatal("no command")
	}
	tr.CloseIdleConnections()
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			pollWith(t, client, c.url, "agent-moves")
		}
	}()
	select {
	case got := <-res:
		t.Fatalf("a live agent's call ended early: %s", got)
	case <-time.After(3500 * time.Millisecond):
	}
	ag := &agent{t: t, instance: "agent-moves", respondURL: c.url}
	if st := ag.respond(cmds[0]); st != 200 {
		t.Fatalf("respond: %d", st)
	}
	if got := <-res; !strings.HasPrefix(got, "200 ") {
		t.Fatalf("call: %s", got)
	}
	close(stop)

	// A second agent takes a call on A from B and dies.
	tr2 := &http.Transport{}
	client2 := &http.Client{Transport: tr2}
	start := time.Now()
	cmds, res = callTakenVia(t, client2, a.url, b.url, "agent-dies", 22)
	if len(cmds) != 1 {
		t.Fatal("no command for the second agent")
	}
	tr2.CloseIdleConnections()
	select {
	case got := <-res:
		if !strings.Contains(got, "agent_lost") {
			t.Fatalf("call held by a dead agent: %s", got)
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("lost after %s", d)
		}
	case <-time.After(9 * time.Second):
		t.Fatal("the call held by a dead agent was not failed")
	}
}

// pollAs polls url once as instance, declaring proc_affinity on main.
func pollAs(t *testing.T, url, instance string, timeout time.Duration) []wire.Command {
	t.Helper()
	return pollHeaders(t, http.DefaultClient, url, timeout, map[string]string{wire.HeaderClientInstanceID: instance,
		wire.HeaderServerInfo: `{"version":1,"channels":[{"name":"main","proc_affinity":true}]}`})
}

// A session created through an agent with proc_affinity is pinned for
// every replica: its later calls, on any replica, reach that agent alone.
func TestProcAffinityAcrossReplicas(t *testing.T) {
	conn := embedded(t)
	r0, r1, r2 := startReplica(t, conn(), 0), startReplica(t, conn(), 0), startReplica(t, conn(), 0)
	pollAs(t, r1.url, "agent-b", time.Millisecond)
	time.Sleep(100 * time.Millisecond)

	// initialize on r0, taken by agent a polling r2, answered through r1.
	initRes := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("POST", r0.url+"/v1/mcp/"+tun, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
		req.Header.Set("Authorization", "Bearer "+ckKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			initRes <- err.Error()
			return
		}
		resp.Body.Close()
		initRes <- resp.Header.Get("Mcp-Session-Id")
	}()
	var cmds []wire.Command
	for deadline := time.Now().Add(5 * time.Second); len(cmds) == 0 && time.Now().Before(deadline); {
		cmds = pollAs(t, r2.url, "agent-a", time.Second)
	}
	if len(cmds) != 1 {
		t.Fatal("agent a got no initialize")
	}
	body, _ := json.Marshal(wire.Response{RequestID: cmds[0].RequestID, RespCode: 200, RespType: wire.RespJSONRPCResponse,
		RespHeaders: map[string][]string{"Mcp-Session-Id": {"pinned-session"}}, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{}}`)})
	req, _ := http.NewRequest("POST", r1.url+"/v1/tunnels/"+tun+"/response", bytes.NewReader(body))
	req.Header.Set("Authorization", rtAuth)
	req.Header.Set(wire.HeaderShardToken, cmds[0].ShardToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("respond: %v %v", resp, err)
	}
	if sid := <-initRes; sid != "pinned-session" {
		t.Fatalf("initialize answer: session %q", sid)
	}

	// The session's next call, on r1, while agent b polls r1 itself.
	callRes := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", r1.url+"/v1/mcp/"+tun, strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"ping"}`))
		req.Header.Set("Authorization", "Bearer "+ckKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Mcp-Session-Id", "pinned-session")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			callRes <- 0
			return
		}
		resp.Body.Close()
		callRes <- resp.StatusCode
	}()
	if got := pollAs(t, r1.url, "agent-b", 700*time.Millisecond); len(got) != 0 {
		t.Fatalf("agent b got a command of agent a's session: %s", got[0].JSONRPC)
	}
	cmds = nil
	for deadline := time.Now().Add(5 * time.Second); len(cmds) == 0 && time.Now().Before(deadline); {
		cmds = pollAs(t, r2.url, "agent-a", time.Second)
	}
	if len(cmds) != 1 || !strings.Contains(string(cmds[0].JSONRPC), `"id":2`) {
		t.Fatalf("agent a got %v", cmds)
	}
	ag := &agent{t: t, instance: "agent-a", respondURL: r0.url}
	if st := ag.respond(cmds[0]); st != 200 {
		t.Fatalf("respond: %d", st)
	}
	if st := <-callRes; st != 200 {
		t.Fatalf("pinned call: %d", st)
	}
}

// A replica that drains withdraws the calls it queued that no agent took
// (503, retry: nothing ran them, and a poll on another replica that pulls
// one drops it), and lets the one an agent took on another replica finish.
func TestDrainAcrossReplicas(t *testing.T) {
	conn := embedded(t)
	a, b := startReplica(t, conn(), 0), startReplica(t, conn(), 0)
	cmds, taken := callTakenVia(t, http.DefaultClient, a.url, b.url, "agent-d", 31)
	if len(cmds) != 1 {
		t.Fatal("no command")
	}
	// A second call on A stays queued: nobody polls.
	queued := make(chan int, 1)
	go func() { st, _ := call(t, a.url, 32); queued <- st }()
	time.Sleep(300 * time.Millisecond)

	drained := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.r.Drain(ctx)
		close(drained)
	}()
	if st := <-queued; st != http.StatusServiceUnavailable {
		t.Fatalf("queued call at the drain: %d, want 503", st)
	}
	select {
	case <-drained:
		t.Fatal("drain ended with a delivered call still running")
	case <-time.After(300 * time.Millisecond):
	}
	// The withdrawn command is never handed out by another replica.
	if got := pollOnce(t, b.url, "agent-d"); len(got) != 0 {
		t.Fatalf("a withdrawn command was handed out: %s", got[0].JSONRPC)
	}
	ag := &agent{t: t, instance: "agent-d", respondURL: b.url}
	if st := ag.respond(cmds[0]); st != 200 {
		t.Fatalf("respond: %d", st)
	}
	if got := <-taken; !strings.HasPrefix(got, "200 ") {
		t.Fatalf("delivered call during the drain: %s", got)
	}
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not end after its last call")
	}
}

// A client's standalone GET stream on one replica is carried by an agent
// that offered GET streams on another, and its messages, posted to a third,
// stream to the client.
func TestGetStreamAcrossReplicas(t *testing.T) {
	conn := embedded(t)
	a, b, c := startReplica(t, conn(), 0), startReplica(t, conn(), 0), startReplica(t, conn(), 0)
	poll := func() []wire.Command {
		return pollHeaders(t, http.DefaultClient, b.url, time.Second, map[string]string{
			wire.HeaderClientInstanceID: "agent-g", wire.HeaderExtensions: wire.ExtGetStream})
	}
	poll()
	time.Sleep(100 * time.Millisecond) // A hears of B's offering poll

	type got struct {
		status int
		ct     string
		body   string
	}
	res := make(chan got, 1)
	go func() {
		req, _ := http.NewRequest("GET", a.url+"/v1/mcp/"+tun, nil)
		req.Header.Set("Authorization", "Bearer "+ckKey)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			res <- got{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		res <- got{resp.StatusCode, resp.Header.Get("Content-Type"), string(body)}
	}()
	var cmds []wire.Command
	for deadline := time.Now().Add(5 * time.Second); len(cmds) == 0 && time.Now().Before(deadline); {
		cmds = poll()
	}
	if len(cmds) != 1 || cmds[0].CommandType != wire.CommandGetStream {
		select {
		case g := <-res:
			t.Fatalf("agent got %v; the client got %d %q", cmds, g.status, g.body)
		default:
			t.Fatalf("agent got %v", cmds)
		}
	}
	post := func(resp wire.Response) {
		body, _ := json.Marshal(resp)
		req, _ := http.NewRequest("POST", c.url+"/v1/tunnels/"+tun+"/response", bytes.NewReader(body))
		req.Header.Set("Authorization", rtAuth)
		req.Header.Set(wire.HeaderShardToken, cmds[0].ShardToken)
		r, err := http.DefaultClient.Do(req)
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("post: %v %v", r, err)
		}
		r.Body.Close()
	}
	rid := cmds[0].RequestID
	post(wire.Response{RequestID: rid, RespType: wire.RespJSONRPCNotify, RespCode: 200,
		RespHeaders: map[string][]string{"Content-Type": {"text/event-stream"}}})
	post(wire.Response{RequestID: rid, RespType: wire.RespJSONRPCNotify, RespCode: 200,
		RespJSON: json.RawMessage(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hello"}}`)})
	post(wire.Response{RequestID: rid, RespType: wire.RespJSONRPCResponse, RespCode: 200})
	select {
	case g := <-res:
		if g.status != 200 || !strings.HasPrefix(g.ct, "text/event-stream") || !strings.Contains(g.body, `"data":"hello"`) {
			t.Fatalf("GET stream: %d %s %q", g.status, g.ct, g.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("GET stream did not end")
	}
}

// TestRevocationEndsHeldPollInCluster: a poll held by a replica (waiting on
// the shared queue) ends with 401 as soon as its runtime key is replaced,
// not at the end of its wait; a change that keeps its key does not end it.
func TestRevocationEndsHeldPollInCluster(t *testing.T) {
	conn := embedded(t)
	a := startReplica(t, conn(), 0)
	type result struct {
		status int
		took   time.Duration
	}
	held := make(chan result, 1)
	start := time.Now()
	go func() {
		req, _ := http.NewRequest("GET", a.url+"/v1/tunnels/"+tun+"/poll?timeout_ms=20000", nil)
		req.Header.Set("Authorization", rtAuth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			held <- result{}
			return
		}
		resp.Body.Close()
		held <- result{resp.StatusCode, time.Since(start)}
	}()
	tunnel := func(key, name string) []relay.Tunnel {
		return []relay.Tunnel{{ID: tun, Name: name, RuntimeKey: key,
			ClientKeys: []relay.ClientKey{{Name: "c", Key: ckKey}}, ResponseTimeout: 10 * time.Second}}
	}
	time.Sleep(300 * time.Millisecond) // the poll is held
	// A change that keeps the key: the poll stays.
	if err := a.r.SetTunnels(tunnel(rtKey, "renamed")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-held:
		t.Fatalf("a change that kept the key ended the poll: %d after %v", r.status, r.took)
	case <-time.After(500 * time.Millisecond):
	}
	if err := a.r.SetTunnels(tunnel("rk-replaced", "renamed")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-held:
		if r.status != http.StatusUnauthorized {
			t.Fatalf("held poll after its key was replaced: %d", r.status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held poll outlived its key")
	}
}
