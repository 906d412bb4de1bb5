package relay

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// maxInstances bounds the per-tunnel table of agent instance ids.
const maxInstances = 256

// tunnelState is the live state of one tunnel: its queue, its pending
// commands and its agents' liveness. It survives SetTunnels when the id stays.
type tunnelState struct {
	id   string
	conf atomic.Pointer[tunnelConf]
	// queue and streams (below) are made with the first command (queues,
	// makeQueues): a tunnel that never had one costs no buffer, so a relay
	// with many idle tunnels stays small.
	queue chan *pending
	qsize int
	qmade chan struct{} // closed once the queues exist
	qonce sync.Once
	done  chan struct{} // closed when the tunnel is removed
	once  sync.Once

	polls atomic.Uint64 // polls served, for metrics
	// response POSTs: single ones, batches, and the responses in batches
	singlePosts, batchPosts, batched atomic.Uint64

	mu          sync.Mutex
	pending     map[string]*pending // request_id → command, queued or in flight
	outstanding int                 // polls being held right now
	lastPoll    time.Time
	agents      map[string]*agentState // by X-Tunnel-Client-Instance-Id
	serverInfo  string                 // latest X-Tunnel-MCP-Server-Info

	// lost is called when an agent instance is lost with the number of calls
	// it held (nil: no lost detection, for tests of the queue alone).
	lost func(instance string, held int)
	// lostCalls counts the calls failed because their agent was lost.
	lostCalls atomic.Uint64
	// revokedCalls is called with the number of calls failed because
	// their agent's key was revoked (nil: not told).
	revokedCalls func(n int)

	// held are the polls being held, each with its key's hash, so a
	// revocation ends them at once (pollwatch.go; t.mu).
	held map[*pollWatch]struct{}

	// The get-stream extension (getstream.go): get_stream commands queue
	// apart, for the polls that offered it only.
	streams     chan *pending
	offering    int          // polls being held that offered GET streams
	lastOffer   time.Time    // when such a poll last started or ended
	openStreams atomic.Int64 // client GET streams open
}

func newTunnelState(c *tunnelConf, queueSize int) *tunnelState {
	t := &tunnelState{
		id:      c.id,
		qsize:   queueSize,
		qmade:   make(chan struct{}),
		done:    make(chan struct{}),
		pending: make(map[string]*pending),
		agents:  make(map[string]*agentState),
	}
	t.conf.Store(c)
	return t
}

// makeQueues makes the tunnel's queues if they do not exist yet.
func (t *tunnelState) makeQueues() {
	t.qonce.Do(func() {
		t.queue = make(chan *pending, t.qsize)
		t.streams = make(chan *pending, t.qsize)
		close(t.qmade)
	})
}

// queues returns the tunnel's queues, or nils when no command was ever
// queued (t.qmade is closed when they appear).
func (t *tunnelState) queues() (queue, streams chan *pending) {
	select {
	case <-t.qmade:
		return t.queue, t.streams
	default:
		return nil, nil
	}
}

func (t *tunnelState) close() { t.once.Do(func() { close(t.done) }) }

// connected reports whether an agent is polling or polled within timeout.
func (t *tunnelState) connected(now time.Time, timeout time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.outstanding > 0 || (!t.lastPoll.IsZero() && now.Sub(t.lastPoll) < timeout)
}

// pollStart records the start of a poll.
func (t *tunnelState) pollStart(now time.Time, instance, serverInfo string) {
	t.mu.Lock()
	t.outstanding++
	t.lastPoll = now
	if serverInfo != "" && len(serverInfo) <= 4096 {
		t.serverInfo = serverInfo
	}
	t.mu.Unlock()
	if instance != "" && len(instance) <= 128 {
		t.agentRequest(instance, 1, now)
	}
}

// pollEnd records the end of a poll: the agent was alive until now.
func (t *tunnelState) pollEnd(now time.Time, instance string) {
	t.mu.Lock()
	t.outstanding--
	t.lastPoll = now
	t.mu.Unlock()
	if instance != "" && len(instance) <= 128 {
		t.agentRequest(instance, -1, now)
	}
}

func (t *tunnelState) latestServerInfo() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.serverInfo
}

func (t *tunnelState) inflight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}

// register adds p to the pending table and enqueues it (a get_stream
// command in the stream queue). It reports false when the queue is full (p
// is then not registered).
func (t *tunnelState) register(p *pending) bool {
	t.mu.Lock()
	t.pending[p.cmd.RequestID] = p
	t.mu.Unlock()
	if !t.requeue(p) {
		t.forget(p)
		return false
	}
	return true
}

// forget removes p: a later response POST for it gets 404.
func (t *tunnelState) forget(p *pending) {
	t.mu.Lock()
	if t.pending[p.cmd.RequestID] == p {
		delete(t.pending, p.cmd.RequestID)
	}
	t.mu.Unlock()
	p.mu.Lock()
	p.gone = true
	p.mu.Unlock()
}

// deliverResult is what a response POST gets.
type deliverResult int

const (
	deliverOK deliverResult = iota
	deliverNotFound
	deliverMismatch
)

// deliver hands one agent message to the waiting caller. A final message
// ends the command.
func (t *tunnelState) deliver(token string, resp *wire.Response) deliverResult {
	final := resp.Final()
	t.mu.Lock()
	p := t.pending[resp.RequestID]
	if p == nil {
		t.mu.Unlock()
		return deliverNotFound
	}
	if !constantTimeEqual(token, p.cmd.ShardToken) {
		t.mu.Unlock()
		return deliverMismatch
	}
	if final {
		delete(t.pending, resp.RequestID)
	}
	t.mu.Unlock()

	p.mu.Lock()
	if p.gone {
		p.mu.Unlock()
		return deliverNotFound
	}
	p.msgs = append(p.msgs, resp)
	if final {
		p.gone = true
	}
	p.mu.Unlock()
	select {
	case p.signal <- struct{}{}:
	default:
	}
	return deliverOK
}

// pending is one command from enqueue to its final response.
type pending struct {
	cmd      wire.Command
	deadline time.Time // the relay gives up on the client then
	signal   chan struct{}
	// holder is the agent instance that took the command (t.mu); a command
	// is handed to one agent at most, and never again.
	holder string

	mu   sync.Mutex
	msgs []*wire.Response
	gone bool // forgotten (client left, timed out) or finished
}

func newPending(cmdType, channel string, headers map[string][]string, body []byte, timeout time.Duration, now time.Time) *pending {
	return &pending{
		cmd: wire.Command{
			RequestID:   "req_" + randHex(16),
			ShardToken:  "st_" + randHex(16),
			CommandType: cmdType,
			Channel:     channel,
			CreatedAt:   now.UTC().Format(time.RFC3339Nano),
			Headers:     headers,
			JSONRPC:     body,
		},
		deadline: now.Add(timeout),
		signal:   make(chan struct{}, 1),
	}
}

// fail ends p with a final message of the relay's own (it was removed from
// the pending table by the caller): the waiting caller gets it, and a later
// POST for p gets 404.
func (p *pending) fail(m *wire.Response) {
	p.mu.Lock()
	if p.gone {
		p.mu.Unlock()
		return
	}
	p.msgs = append(p.msgs, m)
	p.gone = true
	p.mu.Unlock()
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// take returns the messages delivered since the last call.
func (p *pending) take() []*wire.Response {
	p.mu.Lock()
	m := p.msgs
	p.msgs = nil
	p.mu.Unlock()
	return m
}

func (p *pending) isGone() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gone
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func constantTimeEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := 0; i < len(a); i++ {
		v |= a[i] ^ b[i]
	}
	return v == 0
}
