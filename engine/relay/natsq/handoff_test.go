package natsq

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/relay"
	"github.com/sluicemcp/sluice/engine/wire"
)

// published is how many messages the work-queue stream ever took.
func published(t *testing.T, q *Queue) uint64 {
	t.Helper()
	s, err := q.js.Stream(context.Background(), q.stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// waitPublished waits until the stream took n commands.
func waitPublished(t *testing.T, q *Queue, n uint64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); published(t, q) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the shared queue took %d commands, want %d", published(t, q), n)
		}
	}
}

// A replica hands its own commands to its own polls without the shared
// queue: to a poll waiting there, and to the next poll of an agent between
// two polls.
func TestOwnPollSkipsTheQueue(t *testing.T) {
	conn := embedded(t)
	a := startReplica(t, conn(), 0)
	pollOnce(t, a.url, "agent-own") // the tunnel has an agent
	ag := &agent{t: t, instance: "agent-own", respondURL: a.url}
	answer := func(cmds []wire.Command) {
		t.Helper()
		for _, c := range cmds {
			if st := ag.respond(c); st != 200 {
				t.Fatalf("respond: %d", st)
			}
		}
	}
	res := make(chan string, 1)
	polled := make(chan []wire.Command, 1)
	go func() { polled <- pollOnce(t, a.url, "agent-own") }()
	time.Sleep(300 * time.Millisecond) // the poll waits
	go func() { st, body := call(t, a.url, 41); res <- fmt.Sprint(st, " ", body) }()
	cmds := <-polled
	if len(cmds) != 1 {
		t.Fatalf("the waiting poll got %d commands", len(cmds))
	}
	answer(cmds)
	if got := <-res; !strings.HasPrefix(got, "200 ") {
		t.Fatalf("call: %s", got)
	}
	if n := published(t, a.q); n != 0 {
		t.Fatalf("the shared queue took %d commands, want none", n)
	}
	// Between two polls: a call right after one ended waits for the next
	// (within lingerFor, which a loaded machine may miss: five tries).
	const tries = 5
	for i := range tries {
		go func() { st, body := call(t, a.url, 50+i); res <- fmt.Sprint(st, " ", body) }()
		time.Sleep(10 * time.Millisecond) // the call is on the doorstep
		var got []wire.Command
		for len(got) == 0 {
			got = pollOnce(t, a.url, "agent-own")
		}
		answer(got)
		if r := <-res; !strings.HasPrefix(r, "200 ") {
			t.Fatalf("call: %s", r)
		}
	}
	if n := published(t, a.q); n == tries {
		t.Errorf("every call made between two polls went through the shared queue")
	} else {
		t.Logf("%d of %d calls between two polls went through the shared queue", n, tries)
	}
}

// A replica without a poll of the tunnel offers its command to a replica
// that has one, without the shared queue; when no poll there takes it, the
// command goes to the shared queue, where a later poll finds it.
func TestCommandOfferedToAnotherReplica(t *testing.T) {
	conn := embedded(t)
	a, b := startReplica(t, conn(), 0), startReplica(t, conn(), 0)
	ctx, cancel := context.WithCancel(context.Background())
	other := &agent{t: t, instance: "agent-b", pollURL: b.url, respondURL: b.url}
	stopped := make(chan struct{})
	go func() { other.run(ctx); close(stopped) }()
	waitServing(t, []*replica{b})
	for i := range 5 {
		if st, body := call(t, a.url, 70+i); st != 200 || !strings.Contains(body, "agent-b") {
			cancel()
			t.Fatalf("call: %d %s", st, body)
		}
	}
	if n := published(t, a.q); n != 0 { // one stream for both
		t.Errorf("the shared queue took %d commands, want none", n)
	}
	// The agent on B stops polling: B takes no offer, the command is queued.
	cancel()
	<-stopped
	time.Sleep(200 * time.Millisecond)
	res := make(chan string, 1)
	go func() { st, body := call(t, a.url, 80); res <- fmt.Sprint(st, " ", body) }()
	time.Sleep(300 * time.Millisecond)
	if published(t, a.q) != 1 {
		t.Fatal("the command B did not take is not in the shared queue")
	}
	cmds := pollOnce(t, b.url, "agent-b")
	if len(cmds) != 1 {
		t.Fatalf("the next poll on B got %d commands", len(cmds))
	}
	other.respondURL = a.url
	if st := other.respond(cmds[0]); st != 200 {
		t.Fatalf("respond: %d", st)
	}
	if got := <-res; !strings.HasPrefix(got, "200 ") {
		t.Fatalf("call: %s", got)
	}
}

// ghost is a replica reduced to its NATS side: it pulls and claims like a
// replica's poll (speaking the relay's messages between replicas), then
// dies before or after it says the poll's answer is written.
type ghost struct {
	t *testing.T
	q *Queue
}

// take pulls the next command of the tunnel and claims it from its owner
// for instance; it returns the command.
func (g *ghost) take(instance, claim string) wire.Command {
	t := g.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var items []relay.Pulled
	for len(items) == 0 && ctx.Err() == nil {
		items, _ = g.q.Pull(ctx, tun, []relay.Lane{relay.LaneCommands}, 1, time.Second)
	}
	if len(items) != 1 {
		t.Fatal("the ghost pulled nothing")
	}
	_ = items[0].Ack()
	var item struct {
		Owner string       `json:"o"`
		Cmd   wire.Command `json:"c"`
	}
	if err := json.Unmarshal(items[0].Data(), &item); err != nil {
		t.Fatal(err)
	}
	msg, _ := json.Marshal(map[string]any{"op": "claim", "t": tun, "i": instance, "c": claim, "f": g.q.ID(), "rs": []string{item.Cmd.RequestID}})
	ans, err := g.q.Call(ctx, item.Owner, msg)
	if err != nil || !strings.Contains(string(ans), `"ss":[200]`) {
		t.Fatalf("claim: %s %v", ans, err)
	}
	return item.Cmd
}

// handed says the poll's answer carrying rid is written.
func (g *ghost) handed(owner, instance, claim, rid string) {
	msg, _ := json.Marshal(map[string]any{"op": "handed", "t": tun, "i": instance, "c": claim, "f": g.q.ID(), "rs": []string{rid}})
	if err := g.q.Send(owner, msg); err != nil {
		g.t.Fatal(err)
	}
	_ = g.q.nc.Flush()
}

// A replica that dies between claiming a command and writing its poll's
// answer leaves the command's owner unsure whether the agent has it: the
// owner fails the call at once with the lost-agent answer (never sending
// it again) instead of letting its caller wait for the response timeout.
// A command the dead replica had said it handed out is left to its agent.
func TestTakerDiesBeforeHandingOut(t *testing.T) {
	conn := embedded(t)
	a, b := startReplica(t, conn(), 0), startReplica(t, conn(), 0)
	pollOnce(t, b.url, "agent-g") // A hears of an agent; nobody polls A
	time.Sleep(100 * time.Millisecond)

	res := make(chan string, 2)
	go func() { st, body := call(t, a.url, 51); res <- fmt.Sprint(st, " ", body) }()
	g := &ghost{t: t, q: newQueue(t, conn(), Options{})}
	g.take("agent-g", "claim-lost")
	_ = g.q.Close() // dies: no word, and no answer to the owner's questions
	start := time.Now()
	select {
	case got := <-res:
		if !strings.Contains(got, "agent_lost") {
			t.Fatalf("call: %s", got)
		}
		t.Logf("failed %s after its taker died", time.Since(start).Round(time.Millisecond))
	case <-time.After(6 * time.Second):
		t.Fatal("the call of a dead taker was not failed (it waits for its response timeout)")
	}

	go func() { st, body := call(t, a.url, 52); res <- fmt.Sprint(st, " ", body) }()
	g2 := &ghost{t: t, q: newQueue(t, conn(), Options{})}
	cmd := g2.take("agent-g", "claim-handed")
	g2.handed(a.q.ID(), "agent-g", "claim-handed", cmd.RequestID)
	_ = g2.q.Close()
	select {
	case got := <-res:
		t.Fatalf("a call handed out before its taker died ended early: %s", got)
	case <-time.After(4 * time.Second):
	}
	// The agent has it: its result, posted to B, reaches the caller.
	ag := &agent{t: t, instance: "agent-g", respondURL: b.url}
	if st := ag.respond(cmd); st != 200 {
		t.Fatalf("respond: %d", st)
	}
	if got := <-res; !strings.HasPrefix(got, "200 ") {
		t.Fatalf("call: %s", got)
	}
}

// A runtime key revoked while its agent holds calls fails them at once on
// every replica: on the replica that owns them too, though the agent polled
// another; and no replica counts that agent connected any more.
func TestRevocationFailsCallsOwnedElsewhere(t *testing.T) {
	conn := embedded(t)
	a, b := startReplica(t, conn(), 0), startReplica(t, conn(), 0)
	cmds, res := callTakenVia(t, http.DefaultClient, a.url, b.url, "agent-r", 61)
	if len(cmds) != 1 || !strings.Contains(cmds[0].ShardToken, a.q.ID()) {
		t.Fatalf("the agent on B took %v, want A's call", cmds)
	}
	start := time.Now()
	for _, rp := range []*replica{a, b} {
		if err := rp.r.SetTunnels([]relay.Tunnel{{ID: tun, Name: "replicas", RuntimeKey: "rk-replicas-2",
			ClientKeys: []relay.ClientKey{{Name: "c", Key: ckKey}}, ResponseTimeout: 10 * time.Second}}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case got := <-res:
		if !strings.Contains(got, "agent_key_revoked") {
			t.Fatalf("call: %s", got)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("failed %s after the revocation (bar: 1 s)", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call held by the revoked agent was not failed on its owner")
	}
	// A heard of that agent from B only: it no longer counts it connected.
	start = time.Now()
	if st, body := call(t, a.url, 62); st != http.StatusServiceUnavailable || !strings.Contains(body, wire.CodeTunnelClientNotConnected) {
		t.Fatalf("a call after the revocation: %d %s", st, body)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a call after the revocation was refused after %s", d)
	}
}

// offerCounter is a ClusterHandler that counts the offers it receives and
// answers nothing: a replica that went silent.
type offerCounter struct{ n atomic.Int32 }

func (o *offerCounter) HandleCall(msg []byte) []byte {
	if strings.Contains(string(msg), `"op":"offers"`) {
		o.n.Add(1)
	}
	return nil
}
func (o *offerCounter) HandleBroadcast([]byte) {}
func (o *offerCounter) HandleAsk([]byte) bool  { return false }

// A replica that said it has polls and then neither claims nor declines an
// offer gets no more offers until it speaks again: the commands go to the
// shared queue at once.
func TestSilentReplicaGetsNoMoreOffers(t *testing.T) {
	conn := embedded(t)
	a := startReplica(t, conn(), 0)
	g := newQueue(t, conn(), Options{})
	counter := &offerCounter{}
	g.Handle(counter)
	live, _ := json.Marshal(map[string]any{"op": "live", "f": g.ID(), "l": []map[string]any{{"t": tun}}})
	if err := g.Broadcast(live); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // A hears it
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	send := func(id int) {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, id)
		req, _ := http.NewRequestWithContext(ctx, "POST", a.url+"/v1/mcp/"+tun, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+ckKey)
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	go send(91)
	waitPublished(t, a.q, 1)
	if n := counter.n.Load(); n != 1 {
		t.Fatalf("the silent replica got %d offers for the first command, want 1", n)
	}
	go send(92)
	waitPublished(t, a.q, 2)
	if n := counter.n.Load(); n != 1 {
		t.Errorf("the silent replica got %d offers, want no more after the unanswered one", n)
	}
}
