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
	revokedHeld int                 // of those, polls whose key was revoked (ending)
	revokeC     chan struct{}       // closed at a revocation (revocations)
	lastPoll    time.Time
	agents      map[string]*agentState // by X-Tunnel-Client-Instance-Id
	serverInfo  string                 // latest X-Tunnel-MCP-Server-Info

	// lost is called when an agent instance is lost with the number of calls
	// it held (nil: no lost detection, for tests of the queue alone).
	lost func(instance string, held int)
	// elsewhere, in a Cluster, asks the other replicas whether an agent
	// instance this one lost sight of is alive there; announce tells them
	// it is lost, so they fail the calls it held for their clients.
	elsewhere func(instance string) bool
	announce  func(instance string)
	// lostCalls counts the calls failed because their agent was lost.
	lostCalls atomic.Uint64
	// revokedCalls is called with the number of calls failed because
	// their agent's key was revoked (nil: not told).
	revokedCalls func(n int)

	// held are the polls being held, each with its key's hash, so a
	// revocation ends them at once (pollwatch.go; t.mu; woken through
	// revokeC).
	held map[*pollWatch]struct{}

	// With a Cluster (local.go): the commands waiting for a poll here
	// (oldest first), the polls here waiting for a command, and the other
	// replicas that said they have polls of the tunnel, with when
	// (offer.go).
	doorstep     []*localItem
	waiters      []*localWaiter
	pollReplicas map[string]time.Time
	offerNext    int
	// handOuts are the commands another replica's poll took whose answer
	// that replica has not yet said it wrote, by request id (handout.go).
	handOuts map[string]handOut

	// The get-stream extension (getstream.go): get_stream commands queue
	// apart, for the polls that offered it only.
	streams     chan *pending
	offering    int          // polls being held that offered GET streams
	lastOffer   time.Time    // when such a poll last started or ended
	openStreams atomic.Int64 // client GET streams open

	// With a Cluster: when another replica last said it has polls on this
	// tunnel (one that offered GET streams), and when this one last said so;
	// remoteKeys: when the other replicas last said they have polls made
	// with a key, by its fingerprint ("": a word without keys).
	remotePoll, remoteOffer, lastLive time.Time
	remoteKeys                        map[string]time.Time

	// Process affinity (affinity.go): sessions pinned to an agent instance
	// (a cache when shared, in a Cluster), instances lost, and the queues of
	// commands pinned to an instance (alone).
	pins       map[string]string
	gone       map[string]time.Time
	instQueues map[string]chan *pending
	queueSize  int
	shared     bool
	// onFinal, when set, sees each final response before its caller does.
	onFinal func(p *pending, resp *wire.Response)
}

func newTunnelState(c *tunnelConf, queueSize int) *tunnelState {
	t := &tunnelState{
		id:      c.id,
		qmade:   make(chan struct{}),
		done:    make(chan struct{}),
		pending: make(map[string]*pending),
		agents:  make(map[string]*agentState),

		pins:       make(map[string]string),
		gone:       make(map[string]time.Time),
		instQueues: make(map[string]chan *pending),
		queueSize:  queueSize,
	}
	t.conf.Store(c)
	return t
}

// makeQueues makes the tunnel's queues if they do not exist yet.
func (t *tunnelState) makeQueues() {
	t.qonce.Do(func() {
		t.queue = make(chan *pending, t.queueSize)
		t.streams = make(chan *pending, t.queueSize)
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
	return t.livePollsLocked() > 0 || (!t.lastPoll.IsZero() && now.Sub(t.lastPoll) < timeout) ||
		(!t.remotePoll.IsZero() && now.Sub(t.remotePoll) < timeout)
}

// remoteLive notes replica's word that it has polls on t, made with the
// runtime keys whose fingerprints are keys (none: not said). A word about
// keys revoked here meanwhile (said before the revocation reached that
// replica, heard after it reached this one) is not believed: it would
// count an agent connected that can no longer poll, and calls would wait
// for it instead of getting 503.
func (t *tunnelState) remoteLive(now time.Time, offer bool, replica string, keys []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(keys) == 0 {
		keys = []string{""}
	} else if keys = t.validFingerprintsLocked(keys); len(keys) == 0 {
		return
	}
	t.remotePoll = now
	t.notePollReplicaLocked(replica, now)
	if t.remoteKeys == nil {
		t.remoteKeys = make(map[string]time.Time)
	}
	for _, k := range keys {
		if len(t.remoteKeys) < maxInstances || !t.remoteKeys[k].IsZero() {
			t.remoteKeys[k] = now
		}
	}
	if offer {
		t.remoteOffer = now
	}
}

// validFingerprintsLocked keeps the fingerprints among fps of the runtime
// keys t holds now (t.mu held: setConf stores the configuration before it
// takes t.mu to forget revoked keys, so a word heard after that sees the
// revocation).
func (t *tunnelState) validFingerprintsLocked(fps []string) []string {
	keys := t.conf.Load().runtimeKeys
	valid := fps[:0:0]
	for _, fp := range fps {
		var prefix [8]byte // keyFingerprint is the hex of a hash's first 8 bytes
		if len(fp) != 2*len(prefix) {
			continue
		}
		if _, err := hex.Decode(prefix[:], []byte(fp)); err != nil {
			continue
		}
		for _, k := range keys {
			if [8]byte(k.sum[:8]) == prefix {
				valid = append(valid, fp)
				break
			}
		}
	}
	return valid
}

// pollsHere reports whether polls are being held here, whether one of
// them offered GET streams, and the fingerprints of their keys.
func (t *tunnelState) pollsHere() (polls, offer bool, keys []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[[32]byte]bool{}
	for w := range t.held {
		if !w.revoked && !seen[w.sum] {
			seen[w.sum] = true
			keys = append(keys, keyFingerprint(w.sum))
		}
	}
	return t.livePollsLocked() > 0, t.offering > 0, keys
}

// keyFingerprint is what replicas say of a poll's key: the start of its
// hash, enough to tell a tunnel's keys apart.
func keyFingerprint(sum [32]byte) string { return hex.EncodeToString(sum[:8]) }

// liveDue reports whether this replica should say now that it has polls on
// t (it has not said so for half a liveEvery), and notes that it does.
func (t *tunnelState) liveDue(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.lastLive.IsZero() && now.Sub(t.lastLive) < liveEvery/2 {
		return false
	}
	t.lastLive = now
	return true
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

// register adds p to the pending table.
func (t *tunnelState) register(p *pending) {
	t.mu.Lock()
	t.pending[p.cmd.RequestID] = p
	t.mu.Unlock()
}

// taker is who takes a pending command: the agent instance its poll
// named, and what the relay keeps of that poll.
type taker struct {
	instance string
	// claimID identifies the hand-out: a retried claim with the same
	// non-empty id gets the same answer.
	claimID  string
	affinity bool // the agent keeps the command's channel's sessions in process
	// key is the hash of the runtime key the poll authenticated with (keyed:
	// known), so that revoking it fails the command wherever it is owned.
	key   [32]byte
	keyed bool
	// replica, in a Cluster, is the other replica whose poll hands the
	// command out ("" for this one).
	replica string
}

// claim hands the pending command requestID to tk.instance: it returns nil
// when the command is unknown, withdrawn, forgotten, expired or already
// handed to an agent (a command reaches one agent at most, and never
// again). A claim repeated with the same non-empty claim id (its answer was
// lost on the way) gets the same answer.
func (t *tunnelState) claim(requestID string, tk taker) *pending {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pending[requestID]
	if p != nil && p.holder != "" && tk.claimID != "" && p.claimID == tk.claimID {
		return p
	}
	if p == nil || p.holder != "" {
		return nil
	}
	if p.isGone() || !time.Now().Before(p.deadline) {
		return nil
	}
	if tk.keyed {
		if _, ok := matchKey(tk.key, t.conf.Load().runtimeKeys); !ok {
			return nil // revoked since the poll began: it could not post the result
		}
	}
	p.holder, p.claimID, p.affinity = tk.instance, tk.claimID, tk.affinity
	if tk.instance == "" {
		p.holder = anonymousHolder
	}
	p.key, p.keyed, p.taker = tk.key, tk.keyed, tk.replica
	settleOfferLocked(p)
	if tk.replica != "" {
		t.awaitHandOutLocked(p)
	}
	return p
}

// anonymousHolder holds commands handed to an agent without an instance id.
const anonymousHolder = "-"

// unclaim undoes claim for a command instance never received (its poll
// ended before the answer was written), so it can be queued again.
func (t *tunnelState) unclaim(requestID, instance string) bool {
	if instance == "" {
		instance = anonymousHolder
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pending[requestID]
	if p == nil || p.holder != instance {
		return false
	}
	p.holder, p.claimID, p.taker = "", "", ""
	delete(t.handOuts, requestID)
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
	if final && t.onFinal != nil && !p.isGone() {
		t.onFinal(p, resp)
	}

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
	// claimID identifies the hand-out that set holder (t.mu).
	claimID string
	// affinity: the holder keeps this command's channel's sessions in its
	// process (proc_affinity); pinnedTo: the instance alone that may take
	// it ("" for any).
	affinity bool
	pinnedTo string
	// key is the hash of the runtime key of the poll that took it (keyed:
	// known), t.mu.
	key   [32]byte
	keyed bool
	// taker, in a Cluster, is the other replica whose poll took it ("" for
	// this one; t.mu).
	taker string
	// lane is the lane it travels in, in a Cluster; offer, while it is
	// offered to another replica, is closed when that replica's poll claims
	// it or that replica declines it (offer.go; t.mu).
	lane  Lane
	offer chan struct{}

	mu   sync.Mutex
	msgs []*wire.Response
	gone bool // forgotten (client left, timed out) or finished
}

// newPending returns a command; replica names the replica that owns it
// ("" for a relay alone) in its shard token, so that a response POST to
// another replica finds its way back.
func newPending(replica, cmdType, channel string, headers map[string][]string, body []byte, timeout time.Duration, now time.Time) *pending {
	token := "st_" + randHex(16)
	if replica != "" {
		token = "st_" + replica + "_" + randHex(16)
	}
	return &pending{
		cmd: wire.Command{
			RequestID:   "req_" + randHex(16),
			ShardToken:  token,
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
