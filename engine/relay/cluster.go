package relay

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// Cluster joins relay replicas that serve the same tunnels behind one load
// balancer: a work queue they share, and messages between them. A relay
// without one (Options.Cluster nil) is alone: its queue is in process.
//
// Any replica takes any call. The replica that holds the MCP client's
// connection (the owner) keeps the call's pending state; the command goes
// to a poll of the owner's when one is there, else to one of a replica
// with polls (an offer) or through the queue to an agent poll on any
// replica, which claims it from the owner before handing it out (so a
// command reaches at most one agent, even if it was offered and queued or
// the queue delivered it twice); the agent's messages reach the owner
// through Call, from whichever replica the agent posts them to.
// engine/relay/natsq implements it on NATS JetStream.
type Cluster interface {
	// ID is this replica's id: unique among the replicas and new for each
	// process ([a-z0-9]{1,32}), so a restarted replica is a new one.
	ID() string
	// Push appends item to the tunnel's lane. It returns ErrQueueFull when
	// the lane holds its bound.
	Push(ctx context.Context, tunnel string, lane Lane, item []byte) error
	// Pull waits up to wait for the first item of any of lanes, then takes
	// whatever else is ready, up to limit in all (a wait of 0 takes only
	// what is ready at once). Each item it returns is
	// held for this puller until it is acknowledged (then it is off the
	// queue) or its holder dies (then it is delivered again). An item that
	// arrives after ctx ends goes back to the queue for another puller.
	Pull(ctx context.Context, tunnel string, lanes []Lane, limit int, wait time.Duration) ([]Pulled, error)
	// Call sends msg to replica and returns its handler's answer; it returns
	// ErrNoReplica when no replica of that id has been there for a while
	// (one reconnecting to another NATS node is not gone; one counted gone
	// once may be answered at once after that).
	Call(ctx context.Context, replica string, msg []byte) ([]byte, error)
	// Send sends msg to replica's HandleCall without waiting for an answer
	// (its answer is dropped, and nothing says whether it arrived).
	Send(replica string, msg []byte) error
	// Broadcast sends msg to the handlers of every other replica.
	Broadcast(msg []byte) error
	// Ask sends msg to every other replica and reports whether any answered
	// yes within wait.
	Ask(ctx context.Context, msg []byte, wait time.Duration) (bool, error)
	// Handle installs the handler of the other replicas' messages; New
	// calls it once, before any traffic.
	Handle(h ClusterHandler)
	// PinSession records that an MCP session of a tunnel lives in one agent
	// instance's process (proc_affinity), for every replica to see.
	PinSession(ctx context.Context, tunnel, session, instance string) error
	// SessionPin returns the instance a session is pinned to ("" for none).
	SessionPin(ctx context.Context, tunnel, session string) (string, error)
}

// Pulled is an item Pull returned.
type Pulled interface {
	// Data is the item as pushed.
	Data() []byte
	// Ack takes the item off the queue.
	Ack() error
	// Nak puts the item back for another puller at once.
	Nak() error
}

// ClusterHandler receives the other replicas' messages. Its methods are
// safe for concurrent use.
type ClusterHandler interface {
	// HandleCall answers a Call.
	HandleCall(msg []byte) []byte
	// HandleBroadcast takes a Broadcast.
	HandleBroadcast(msg []byte)
	// HandleAsk answers an Ask.
	HandleAsk(msg []byte) bool
}

// Lane is one of a tunnel's queues.
type Lane string

// The lanes of a tunnel.
const (
	// LaneCommands carries every command but get_stream.
	LaneCommands Lane = "c"
	// LaneStreams carries get_stream commands, for polls that offered the
	// get-stream extension only.
	LaneStreams Lane = "s"
)

// Errors a Cluster returns.
var (
	// ErrQueueFull: the lane holds its bound (the client gets 429).
	ErrQueueFull = errors.New("relay: tunnel queue full")
	// ErrNoReplica: the replica a message is for is gone.
	ErrNoReplica = errors.New("relay: no such replica")
)

// clusterCallTimeout bounds a claim or delivery to another replica.
const clusterCallTimeout = 5 * time.Second

// clusterAttemptTimeout bounds one try of such a call: a reply lost to a
// NATS node failing over is tried again rather than waited for.
const clusterAttemptTimeout = 1500 * time.Millisecond

// firstAttemptTimeout bounds the first try of a claim or a delivery; each
// next one doubles, up to clusterAttemptTimeout.
const firstAttemptTimeout = 250 * time.Millisecond

// askWait is how long a replica waits for another to say an agent it lost
// sight of is alive elsewhere.
const askWait = 300 * time.Millisecond

// liveEvery is how often a replica tells the others which tunnels it has
// polls on (the others count the tunnel's agent connected for
// Config.AgentTimeout after the last word).
const liveEvery = 2 * time.Second

// queued is a command in the shared queue.
type queued struct {
	Owner    string       `json:"o"`
	Deadline int64        `json:"d"` // unix nanoseconds
	Lane     Lane         `json:"l,omitempty"`
	Cmd      wire.Command `json:"c"`
}

// peerMsg is a message between replicas; Op says which fields it uses.
type peerMsg struct {
	Op       string `json:"op"`
	Tunnel   string `json:"t,omitempty"`
	Request  string `json:"r,omitempty"`
	Instance string `json:"i,omitempty"`
	// Claim is a claim's id: a retried claim gets the same answer.
	Claim string `json:"c,omitempty"`
	// From is the sending replica (of a claim and its confirmation).
	From string `json:"f,omitempty"`
	// Key is the hash (hex) of the runtime key of the poll that claims, so
	// that the owner fails the calls when that key is revoked.
	Key string `json:"k,omitempty"`
	// Requests are the request ids of a claim, in order; Items the agent
	// messages of a delivery.
	Requests []string      `json:"rs,omitempty"`
	Affinity []bool        `json:"af,omitempty"` // per request: the taker keeps its sessions in process
	Items    []deliverItem `json:"is,omitempty"`
	Live     []liveTunnel  `json:"l,omitempty"`
	// Offers are offered commands, as the shared queue carries them.
	Offers []json.RawMessage `json:"os,omitempty"`
}

// liveTunnel is one tunnel with polls on the sending replica.
type liveTunnel struct {
	ID    string `json:"t"`
	Offer bool   `json:"s,omitempty"` // a poll offered GET streams
	AS    bool   `json:"a,omitempty"` // an agent offering the OAuth AS extension polls here
	// Keys are the fingerprints of the keys of the polls here (keyFingerprint),
	// so a replica forgets them when the key is revoked.
	Keys []string `json:"k,omitempty"`
}

// Operations between replicas.
const (
	opClaim   = "claim"   // Call: hand requests rs of tunnel t to instance i, by replica f
	opUnclaim = "unclaim" // Call: i never received r: queue it again
	opHanded  = "handed"  // Send: the poll's answer carrying rs of claim c is written
	opPing    = "ping"    // Call: are you there?
	opOffers  = "offers"  // Send: give commands os of replica f to polls of yours (offer.go)
	opDecline = "decline" // Send: no poll here took the offered commands rs
	opDeliver = "deliver" // Call: agent messages is, each with its shard token
	opLive    = "live"    // Broadcast: tunnels with polls here
	opLost    = "lost"    // Broadcast: instance i of tunnel t is lost
	opAlive   = "alive"   // Ask: is instance i of tunnel t alive here?
)

// deliverItem is one agent message of a delivery.
type deliverItem struct {
	Token string          `json:"k"`
	Body  json.RawMessage `json:"b"`
}

// peerAnswer is the answer to a Call: an HTTP status (200 or 404 for a
// put-back), and one per request or item of a batch.
type peerAnswer struct {
	Status   int   `json:"s"`
	Statuses []int `json:"ss,omitempty"`
}

func encodePeer(m *peerMsg) []byte {
	b, _ := json.Marshal(m)
	return b
}

func encodeAnswer(st int) []byte {
	b, _ := json.Marshal(peerAnswer{Status: st})
	return b
}

func encodeStatuses(sts []int) []byte {
	b, _ := json.Marshal(peerAnswer{Status: 200, Statuses: sts})
	return b
}

// tokenOwner returns the replica a shard token names ("" for a token the
// relay minted alone, or one it did not mint).
func tokenOwner(token string) string {
	rest, ok := strings.CutPrefix(token, "st_")
	if !ok {
		return ""
	}
	owner, _, ok := strings.Cut(rest, "_")
	if !ok {
		return ""
	}
	return owner
}

// peerHandler is the relay's ClusterHandler.
type peerHandler struct{ r *Relay }

// HandleCall answers claims, put-backs and deliveries for calls this
// replica owns.
func (h peerHandler) HandleCall(msg []byte) []byte {
	var m peerMsg
	if err := json.Unmarshal(msg, &m); err != nil {
		return encodeAnswer(400)
	}
	r := h.r
	t := r.tunnel(m.Tunnel)
	switch m.Op {
	case opClaim:
		// The commands of one poll that this replica owns; a command's
		// claim id is the poll's with its index.
		sts := make([]int, len(m.Requests))
		tk := taker{instance: m.Instance, replica: m.From}
		if k, err := hex.DecodeString(m.Key); err == nil && len(k) == len(tk.key) {
			tk.key, tk.keyed = [32]byte(k), true
		}
		claimed := false
		for i, rid := range m.Requests {
			sts[i] = http.StatusNotFound
			tk.claimID, tk.affinity = m.Claim+"."+strconv.Itoa(i), i < len(m.Affinity) && m.Affinity[i]
			if t != nil && t.claim(rid, tk) != nil {
				sts[i], claimed = http.StatusOK, true
			}
		}
		if claimed && m.From != "" {
			r.awaitTunnel(t)
		}
		return encodeStatuses(sts)
	case opHanded:
		if t != nil {
			t.handed(m.From, m.Claim, m.Requests)
		}
		return nil
	case opPing:
		return pingAnswer
	case opOffers:
		r.takeOffers(t, m.Tunnel, m.From, m.Offers)
		return nil
	case opDecline:
		if t != nil {
			t.declined(m.Requests)
		}
		return nil
	case opUnclaim:
		if t == nil || !t.unclaim(m.Request, m.Instance) {
			return encodeAnswer(404)
		}
		return encodeAnswer(200)
	case opDeliver:
		sts := make([]int, len(m.Items))
		for i, it := range m.Items {
			sts[i] = http.StatusNotFound
			if t != nil {
				sts[i], _, _ = r.acceptLocal(t, it.Token, it.Body)
			}
		}
		return encodeStatuses(sts)
	}
	return encodeAnswer(400)
}

// HandleBroadcast takes other replicas' liveness words and lost agents.
func (h peerHandler) HandleBroadcast(msg []byte) {
	var m peerMsg
	if json.Unmarshal(msg, &m) != nil {
		return
	}
	r := h.r
	switch m.Op {
	case opLive:
		now := time.Now()
		for _, lt := range m.Live {
			if t := r.tunnel(lt.ID); t != nil {
				t.remoteLive(now, lt.Offer, m.From, lt.Keys)
				if lt.AS {
					r.remoteASOffer(lt.ID, now)
				}
			}
		}
	case opLost:
		if t := r.tunnel(m.Tunnel); t != nil {
			t.failHeld(m.Instance)
		}
	}
}

// HandleAsk says whether an agent instance is alive here.
func (h peerHandler) HandleAsk(msg []byte) bool {
	var m peerMsg
	if json.Unmarshal(msg, &m) != nil || m.Op != opAlive {
		return false
	}
	t := h.r.tunnel(m.Tunnel)
	return t != nil && t.seesAlive(m.Instance, time.Now())
}

// callPeerBatch sends m, a batch of n, to replica and returns the status of
// each.
func (r *Relay) callPeerBatch(replica string, m peerMsg, n int) ([]int, error) {
	a, err := r.callPeerAnswer(replica, m)
	if err != nil {
		return nil, err
	}
	if len(a.Statuses) != n {
		return nil, fmt.Errorf("relay: replica %s answered %d statuses for %d", replica, len(a.Statuses), n)
	}
	return a.Statuses, nil
}

// callPeer sends m to replica and decodes its answer's status.
func (r *Relay) callPeer(replica string, m peerMsg) (int, error) {
	a, err := r.callPeerAnswer(replica, m)
	return a.Status, err
}

// callPeerAnswer sends m to replica and decodes its answer. A call that
// fails on the way (not ErrNoReplica: the replica is gone) is tried again
// within clusterCallTimeout: every call is safe to repeat (a claim carries
// its id, a delivery's second copy is refused, a put-back is idempotent).
func (r *Relay) callPeerAnswer(replica string, m peerMsg) (peerAnswer, error) {
	b := encodePeer(&m)
	ctx, cancel := context.WithTimeout(context.Background(), clusterCallTimeout)
	defer cancel()
	var (
		a   peerAnswer
		ans []byte
		err error
	)
	// A claim holds up a whole poll's answer, and a delivery its agent's
	// POST of results (the agent polls again only once those are taken):
	// their first try is short, so one sent to a replica the moment it died
	// is sent again, and finds it gone, soon. A retry is safe: a claim
	// carries its id, and a delivery's second copy is refused.
	attempt := clusterAttemptTimeout
	if m.Op == opClaim || m.Op == opDeliver {
		attempt = firstAttemptTimeout
	}
	for {
		actx, acancel := context.WithTimeout(ctx, attempt)
		ans, err = r.cl.Call(actx, replica, b)
		acancel()
		if err == nil || errors.Is(err, ErrNoReplica) || ctx.Err() != nil {
			break
		}
		attempt = min(2*attempt, clusterAttemptTimeout)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return a, err
	}
	err = json.Unmarshal(ans, &a)
	return a, err
}

// every calls f every d until the relay closes.
func (r *Relay) every(d time.Duration, f func(now time.Time)) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-r.closing:
			return
		case now := <-tick.C:
			f(now)
		}
	}
}

// sayLive tells the other replicas which tunnels have polls here (every
// liveEvery).
func (r *Relay) sayLive(now time.Time) {
	var live []liveTunnel
	r.dropOutboxes(now)
	for _, t := range r.snapshot() {
		if polls, offer, keys := t.pollsHere(); polls {
			live = append(live, liveTunnel{ID: t.id, Offer: offer, AS: r.asOfferedIn(&r.asOffers, t.id, now), Keys: keys})
		}
	}
	for len(live) > 0 {
		n := min(len(live), 500) // keep each message far below NATS's payload cap
		r.broadcast(peerMsg{Op: opLive, From: r.replica, Live: live[:n]})
		live = live[n:]
	}
}

// liveNow tells the other replicas at once that t has a poll here (its
// first after a silence), so a call on another replica does not get 503
// until the next sayLive.
func (r *Relay) liveNow(t *tunnelState, offer bool, key [32]byte) {
	now := time.Now()
	if r.cl == nil || !t.liveDue(now) {
		return
	}
	go r.broadcast(peerMsg{Op: opLive, From: r.replica, Live: []liveTunnel{{ID: t.id, Offer: offer,
		AS: r.asOfferedIn(&r.asOffers, t.id, now), Keys: []string{keyFingerprint(key)}}}})
}

func (r *Relay) broadcast(m peerMsg) {
	if err := r.cl.Broadcast(encodePeer(&m)); err != nil {
		r.log.Warn("cluster broadcast failed", "op", m.Op, "err", err)
	}
}

// pollContext returns a context that ends with parent, when t is removed,
// when a or b is closed, or when watch's key is revoked. Until its cancel
// function returns, watch.wake belongs to the context's goroutine.
func pollContext(parent context.Context, t *tunnelState, watch *pollWatch, a, b <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.done:
				return
			case <-a:
				return
			case <-b:
				return
			case <-watch.wake:
				if t.wasRevoked(watch) {
					return
				}
			}
		}
	}()
	return ctx, func() { cancel(); <-done }
}
