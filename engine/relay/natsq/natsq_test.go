package natsq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicemcp/sluice/engine/relay"
	"github.com/sluicemcp/sluice/engine/relay/natsconn"
)

// embedded starts a NATS server for one test and returns a connector.
func embedded(t testing.TB) func() *nats.Conn {
	t.Helper()
	s, err := natsconn.StartServer(natsconn.ServerOptions{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return func() *nats.Conn {
		nc, err := natsconn.Connect(context.Background(), natsconn.Config{URL: s.ClientURL()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
}

func newQueue(t testing.TB, nc *nats.Conn, o Options) *Queue {
	t.Helper()
	q, err := New(context.Background(), nc, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

const tun = "tunnel_0123456789abcdef0123456789abcdef"

// pull pulls and acknowledges, returning the items' data as strings.
func pull(ctx context.Context, q *Queue, lanes []relay.Lane, limit int, wait time.Duration) ([]string, error) {
	items, err := q.Pull(ctx, tun, lanes, limit, wait)
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = string(it.Data())
		_ = it.Ack()
	}
	return out, err
}

func TestStreamName(t *testing.T) {
	for in, want := range map[string]string{
		"": DefaultStream, DefaultPrefix: DefaultStream, "team.a": "TEAM_A_WORK", "prod-eu": "PROD-EU_WORK",
	} {
		if got := StreamName(in); got != want {
			t.Errorf("StreamName(%q) = %q, want %q", in, got, want)
		}
	}
}

// Two relay clusters on one NATS, told apart by prefix, each keep their own
// stream: neither reconfigures the other's, and work stays in its cluster.
func TestPrefixesShareNothing(t *testing.T) {
	conn := embedded(t)
	a := newQueue(t, conn(), Options{})
	b := newQueue(t, conn(), Options{Prefix: "team.b"})
	ctx := context.Background()
	if err := a.Push(ctx, tun, relay.LaneCommands, []byte("for-a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx, tun, relay.LaneCommands, []byte("for-b")); err != nil {
		t.Fatal(err)
	}
	gotB, err := pull(ctx, b, []relay.Lane{relay.LaneCommands}, 5, 300*time.Millisecond)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	gotA, err := pull(ctx, a, []relay.Lane{relay.LaneCommands}, 5, 300*time.Millisecond)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	if fmt.Sprint(gotA) != "[for-a]" || fmt.Sprint(gotB) != "[for-b]" {
		t.Fatalf("cluster a got %q, cluster b got %q", gotA, gotB)
	}
}

func TestPushPullAndQueueFull(t *testing.T) {
	conn := embedded(t)
	q := newQueue(t, conn(), Options{QueueSize: 3})
	ctx := context.Background()
	for i := range 3 {
		if err := q.Push(ctx, tun, relay.LaneCommands, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Push(ctx, tun, relay.LaneCommands, []byte("x")); !errors.Is(err, relay.ErrQueueFull) {
		t.Fatalf("4th push: %v, want ErrQueueFull", err)
	}
	// Another lane and another tunnel have bounds of their own.
	if err := q.Push(ctx, tun, relay.LaneStreams, []byte("s")); err != nil {
		t.Fatal(err)
	}
	items, err := pull(ctx, q, []relay.Lane{relay.LaneCommands}, 2, time.Second)
	if err != nil || len(items) != 2 || items[0] != "0" || items[1] != "1" {
		t.Fatalf("pull = %q, %v", items, err)
	}
	// A poll that did not offer streams never sees the stream lane.
	items, _ = pull(ctx, q, []relay.Lane{relay.LaneCommands}, 25, time.Second)
	if len(items) != 1 || items[0] != "2" {
		t.Fatalf("pull = %q", items)
	}
	items, _ = pull(ctx, q, []relay.Lane{relay.LaneCommands, relay.LaneStreams}, 25, time.Second)
	if len(items) != 1 || items[0] != "s" {
		t.Fatalf("pull with streams = %q", items)
	}
	// Taken items are off the queue: room again.
	if err := q.Push(ctx, tun, relay.LaneCommands, []byte("y")); err != nil {
		t.Fatal(err)
	}
}

func TestPullWaitsForTheFirstItem(t *testing.T) {
	conn := embedded(t)
	q := newQueue(t, conn(), Options{})
	ctx := context.Background()
	start := time.Now()
	items, err := pull(ctx, q, []relay.Lane{relay.LaneCommands}, 5, 300*time.Millisecond)
	if err != nil || len(items) != 0 {
		t.Fatalf("empty pull = %q, %v", items, err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("empty pull returned after %s, before its wait", d)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = q.Push(ctx, tun, relay.LaneStreams, []byte("late"))
	}()
	items, err = pull(ctx, q, []relay.Lane{relay.LaneCommands, relay.LaneStreams}, 5, 10*time.Second)
	if err != nil || len(items) != 1 || items[0] != "late" {
		t.Fatalf("pull = %q, %v", items, err)
	}
}

// An item that arrives for a poll that has ended is not lost: the next
// puller gets it at once.
func TestItemForAnEndedPollGoesBack(t *testing.T) {
	conn := embedded(t)
	a := newQueue(t, conn(), Options{})
	b := newQueue(t, conn(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = pull(ctx, a, []relay.Lane{relay.LaneCommands}, 1, 4*time.Second)
	}()
	time.Sleep(200 * time.Millisecond)
	cancel() // its pull request is still held by the server
	<-done
	if err := b.Push(context.Background(), tun, relay.LaneCommands, []byte("one")); err != nil {
		t.Fatal(err)
	}
	items, err := pull(context.Background(), b, []relay.Lane{relay.LaneCommands}, 1, 3*time.Second)
	if err != nil || len(items) != 1 || items[0] != "one" {
		t.Fatalf("pull = %q, %v", items, err)
	}
}

// Many pullers on several replicas: every item is taken exactly once.
func TestEveryItemTakenOnce(t *testing.T) {
	conn := embedded(t)
	qs := []*Queue{newQueue(t, conn(), Options{QueueSize: 10000}), newQueue(t, conn(), Options{QueueSize: 10000}), newQueue(t, conn(), Options{QueueSize: 10000})}
	const n = 2000
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 12 {
		q := qs[i%3]
		wg.Go(func() {
			for ctx.Err() == nil {
				items, _ := pull(ctx, q, []relay.Lane{relay.LaneCommands}, 1+i%5, 500*time.Millisecond)
				mu.Lock()
				for _, it := range items {
					seen[it]++
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		if err := qs[i%3].Push(context.Background(), tun, relay.LaneCommands, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		if got == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d of %d items taken", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("item %s taken %d times", k, c)
		}
	}
}

type echoHandler struct {
	name string
	mu   sync.Mutex
	got  []string
	yes  atomic.Bool
}

func (h *echoHandler) HandleCall(msg []byte) []byte { return append([]byte(h.name+":"), msg...) }
func (h *echoHandler) HandleBroadcast(msg []byte) {
	h.mu.Lock()
	h.got = append(h.got, string(msg))
	h.mu.Unlock()
}
func (h *echoHandler) HandleAsk([]byte) bool { return h.yes.Load() }

func (h *echoHandler) broadcasts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}

func TestCallBroadcastAsk(t *testing.T) {
	conn := embedded(t)
	a, b := newQueue(t, conn(), Options{}), newQueue(t, conn(), Options{})
	if a.ID() == b.ID() {
		t.Fatal("two replicas share an id")
	}
	ha, hb := &echoHandler{name: "a"}, &echoHandler{name: "b"}
	a.Handle(ha)
	b.Handle(hb)
	ctx := context.Background()
	ans, err := a.Call(ctx, b.ID(), []byte("hi"))
	if err != nil || string(ans) != "b:hi" {
		t.Fatalf("call = %q, %v", ans, err)
	}
	if _, err := a.Call(ctx, "0123456789ab", []byte("hi")); !errors.Is(err, relay.ErrNoReplica) {
		t.Fatalf("call to a gone replica: %v, want ErrNoReplica", err)
	}
	if err := a.Broadcast([]byte("news")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(hb.broadcasts()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := hb.broadcasts(); len(got) != 1 || got[0] != "news" {
		t.Fatalf("b heard %q", got)
	}
	if got := ha.broadcasts(); len(got) != 0 {
		t.Fatalf("a heard its own broadcast: %q", got)
	}
	// Only a yes is an answer; the asker's own yes does not count.
	ha.yes.Store(true)
	if yes, err := a.Ask(ctx, []byte("?"), 200*time.Millisecond); err != nil || yes {
		t.Fatalf("ask with no other yes = %v, %v", yes, err)
	}
	hb.yes.Store(true)
	if yes, err := a.Ask(ctx, []byte("?"), 2*time.Second); err != nil || !yes {
		t.Fatalf("ask with b's yes = %v, %v", yes, err)
	}
}

// An item pulled and never acknowledged (its puller died) is delivered
// again; an acknowledged one is not.
func TestUnacknowledgedItemComesBack(t *testing.T) {
	conn := embedded(t)
	a, b := newQueue(t, conn(), Options{}), newQueue(t, conn(), Options{})
	ctx := context.Background()
	for _, s := range []string{"acked", "dropped"} {
		if err := a.Push(ctx, tun, relay.LaneCommands, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	items, err := a.Pull(ctx, tun, []relay.Lane{relay.LaneCommands}, 2, time.Second)
	if err != nil || len(items) != 2 {
		t.Fatalf("pull: %d items, %v", len(items), err)
	}
	_ = items[0].Ack() // "acked"; "dropped" is never acknowledged
	got, err := pull(ctx, b, []relay.Lane{relay.LaneCommands}, 5, 2*ackWait)
	if err != nil || len(got) != 1 || got[0] != "dropped" {
		t.Fatalf("after the ack wait: %q, %v", got, err)
	}
}

// TestCallWaitsOutAReconnect: a replica whose NATS node died has no
// responder while it reconnects elsewhere; a call to it in that window
// waits for it instead of counting it gone (a claim or a delivery counted
// gone is dropped, and its caller waits for the response timeout). A
// replica that stays away is gone after the grace, and at once after that
// until a broadcast of it arrives.
func TestCallWaitsOutAReconnect(t *testing.T) {
	conn := embedded(t)
	a, b := newQueue(t, conn(), Options{}), newQueue(t, conn(), Options{})
	a.Handle(&echoHandler{name: "a"})
	time.AfterFunc(noRespondersGrace/3, func() { b.Handle(&echoHandler{name: "b"}) })
	ctx := context.Background()
	ans, err := a.Call(ctx, b.ID(), []byte("hi"))
	if err != nil || string(ans) != "b:hi" {
		t.Fatalf("call while the replica was not subscribed yet = %q, %v; want its answer", ans, err)
	}

	const absent = "0123456789ab"
	start := time.Now()
	if _, err := a.Call(ctx, absent, nil); !errors.Is(err, relay.ErrNoReplica) {
		t.Fatalf("call to an absent replica: %v, want ErrNoReplica", err)
	}
	if d := time.Since(start); d < noRespondersGrace {
		t.Errorf("absent replica counted gone after %s, before the grace (%s)", d, noRespondersGrace)
	}
	start = time.Now()
	if _, err := a.Call(ctx, absent, nil); !errors.Is(err, relay.ErrNoReplica) || time.Since(start) >= noRespondersGrace {
		t.Errorf("second call to a gone replica: %v after %s, want ErrNoReplica at once", err, time.Since(start))
	}
	// A broadcast from it: it is back, and a call waits for it again.
	a.heard(absent)
	a.silentMu.Lock()
	_, silent := a.silent[absent]
	a.silentMu.Unlock()
	if silent {
		t.Error("a replica heard from still counts as gone")
	}
	ctx, cancel := context.WithTimeout(ctx, noRespondersGrace/4)
	defer cancel()
	if _, err := a.Call(ctx, absent, nil); errors.Is(err, relay.ErrNoReplica) || err == nil {
		t.Errorf("call to a replica heard from, ended by its context: %v, want the context's error", err)
	}
}
