package relay

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// pushPatience bounds how long a call waits for the shared queue to take
// its command (a NATS failover) before it is refused with 503.
const pushPatience = 15 * time.Second

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// laneFor is the lane p travels in: its instance's when it is pinned.
func laneFor(p *pending) Lane {
	if p.pinnedTo != "" {
		return InstanceLane(p.pinnedTo)
	}
	return laneOf(p.cmd.CommandType)
}

// laneOf is the lane a command type travels in.
func laneOf(cmdType string) Lane {
	if cmdType == wire.CommandGetStream {
		return LaneStreams
	}
	return LaneCommands
}

// enqueue registers p as pending and queues it for the agents: in the
// tunnel's own channels for a relay alone; in a Cluster, on the doorstep
// for a poll of this replica when one is waiting or expected (local.go),
// else in the Cluster's queue. On error p is forgotten; the error is
// ErrQueueFull when the queue holds its bound.
func (r *Relay) enqueue(t *tunnelState, p *pending) error {
	p.pinnedTo = r.pinTarget(t, p)
	t.register(p)
	var err error
	if r.cl == nil {
		if !t.requeue(p) {
			err = ErrQueueFull
		}
	} else {
		p.lane = laneFor(p)
		d := &localItem{p: p, lane: p.lane, pinnedTo: p.pinnedTo}
		switch t.offerLocal(d, time.Now()) {
		case toPoll:
			return nil
		case toDoorstep:
			if t.linger(d) {
				return nil // a poll of this replica took it
			}
		}
		item := r.queuedItem(p)
		if p.pinnedTo == "" && r.offer(t, p, item) {
			return nil // a poll of another replica took it
		}
		// Keep trying through a NATS failover (a stream leader election takes
		// seconds) while the caller waits anyway: until its deadline, at
		// most pushPatience.
		ctx, cancel := context.WithDeadline(context.Background(), minTime(p.deadline, time.Now().Add(pushPatience)))
		err = r.cl.Push(ctx, t.id, p.lane, item)
		cancel()
	}
	if err != nil {
		t.forget(p)
	}
	return err
}

// queuedItem is p as the Cluster's queue carries it.
func (r *Relay) queuedItem(p *pending) []byte {
	b, _ := json.Marshal(queued{Owner: r.replica, Deadline: p.deadline.UnixNano(), Lane: p.lane, Cmd: p.cmd})
	return b
}

// refuseEnqueue answers a call that could not be queued: 429 when the
// queue is full, 503 when the shared queue cannot be reached (nothing ran
// the call: retrying is safe).
func (r *Relay) refuseEnqueue(w http.ResponseWriter, t *tunnelState, err error) string {
	w.Header().Set("Retry-After", "1")
	if errors.Is(err, ErrQueueFull) {
		writeAPIError(w, http.StatusTooManyRequests, "rate_limit_error", wire.CodeTunnelQueueFull, "the tunnel's queue is full")
		return outcomeQueueFull
	}
	r.log.Warn("queue unavailable: call refused", "tunnel", t.id, "err", err)
	writeAPIError(w, http.StatusServiceUnavailable, "server_error", "", "the relay's queue is unavailable: retry")
	return outcomeUnavailable
}

// handout is a command handed to a poll: a local pending command, or one
// another replica owns (its queue item, to put back if the poll's answer is
// never written, and the claim that took it).
type handout struct {
	local *pending
	owner string
	item  []byte // nil for a command taken off the doorstep
	rid   string
	lane  Lane   // the lane it came from
	claim string // the claim's id, for a command another replica owns
}

// collectShared is collect for a relay in a Cluster: it pulls items from
// the shared queue and claims each from its owner (after this replica's
// own commands off the doorstep); an item whose owner is
// gone, or whose call ended, is dropped (never run).
func (r *Relay) collectShared(req *http.Request, t *tunnelState, watch *pollWatch, limit int, wait time.Duration, tk taker, offer bool, aff map[string]bool) ([]wire.Command, []handout) {
	if t.isRevoked(watch) {
		return nil, nil
	}
	ctx, cancel := pollContext(req.Context(), t, watch, r.closing, r.draining)
	defer cancel()
	w := &localWaiter{instance: tk.instance, offer: offer, pinned: tk.instance != "" && len(aff) > 0}
	lanes := []Lane{LaneCommands}
	if offer {
		lanes = append(lanes, LaneStreams)
	}
	if w.pinned {
		lanes = append(lanes, InstanceLane(tk.instance))
	}
	local, items := r.gather(ctx, t, w, lanes, limit, wait)
	var (
		cmds  []wire.Command
		taken []handout
	)
	qs := make([]queued, 0, len(items)+len(local))
	hs := make([]handout, 0, len(items)+len(local))
	add := func(q queued, b []byte) {
		if !time.Now().Before(time.Unix(0, q.Deadline)) {
			return
		}
		lane := q.Lane
		if lane == "" {
			lane = laneOf(q.Cmd.CommandType)
		}
		qs = append(qs, q)
		hs = append(hs, handout{owner: q.Owner, item: b, rid: q.Cmd.RequestID, lane: lane})
	}
	for _, d := range local {
		if d.o != nil {
			add(d.o.q, d.o.raw)
			continue
		}
		if c, ok := r.hand(t, d.p, tk, aff); ok {
			cmds, taken = append(cmds, c), append(taken, handout{local: d.p, owner: r.replica, rid: d.p.cmd.RequestID, lane: d.p.lane})
		}
	}
	// Items are acknowledged once claimed (or refused): a replica that dies
	// before it claims them leaves them to JetStream to deliver again.
	defer func() {
		for _, it := range items {
			_ = it.Ack()
		}
	}()
	for _, it := range items {
		b := it.Data()
		var q queued
		if err := json.Unmarshal(b, &q); err != nil {
			r.log.Warn("queue: undecodable item dropped", "tunnel", t.id, "err", err)
			continue
		}
		add(q, b)
	}
	if len(qs) == 0 {
		return cmds, taken
	}
	byOwner := map[string][]int{} // remote owner → indexes in qs
	for i, q := range qs {
		if q.Owner != r.replica {
			byOwner[q.Owner] = append(byOwner[q.Owner], i)
		}
	}
	claimed := make([]bool, len(qs))
	for i, q := range qs {
		if q.Owner == r.replica {
			own := tk
			own.affinity = aff[commandChannel(&q.Cmd)]
			hs[i].local = t.claim(q.Cmd.RequestID, own)
			claimed[i] = hs[i].local != nil
		}
	}
	// One claim per owner for all its commands in this poll, the owners at
	// once: the time between a claim and the poll's answer is the window in
	// which this replica's death leaves the owner unsure whether the agent
	// has the command (handout.go).
	var key string
	if tk.keyed {
		key = hex.EncodeToString(tk.key[:])
	}
	var wg sync.WaitGroup
	for owner, idx := range byOwner {
		m := peerMsg{Op: opClaim, Tunnel: t.id, Instance: tk.instance, Claim: randHex(8), From: r.replica, Key: key}
		for _, i := range idx {
			m.Requests = append(m.Requests, qs[i].Cmd.RequestID)
			m.Affinity = append(m.Affinity, aff[commandChannel(&qs[i].Cmd)])
			hs[i].claim = m.Claim
		}
		wg.Go(func() {
			sts, err := r.callPeerBatch(owner, m, len(idx))
			if err != nil {
				if !errors.Is(err, ErrNoReplica) {
					r.log.Warn("claim failed: commands dropped", "tunnel", t.id, "commands", len(idx), "err", err)
				}
				return
			}
			for k, i := range idx {
				claimed[i] = sts[k] == http.StatusOK // distinct indexes per owner
			}
		})
	}
	wg.Wait()
	for i, q := range qs {
		left := time.Until(time.Unix(0, q.Deadline))
		if !claimed[i] || left <= 0 {
			continue
		}
		c := q.Cmd
		rt := wire.FormatResponseTimeout(left.Truncate(time.Millisecond))
		c.ResponseTimeout = &rt
		cmds, taken = append(cmds, c), append(taken, hs[i])
	}
	return cmds, taken
}

// putBack queues again the commands of a poll whose agent left before the
// answer was written: it never saw them.
func (r *Relay) putBack(t *tunnelState, taken []handout, instance string) {
	for _, h := range taken {
		if r.cl == nil {
			t.unclaim(h.local.cmd.RequestID, instance)
			if !t.requeue(h.local) {
				r.log.Warn("queue full: command dropped after a poller left", "tunnel", t.id, "request_id", h.local.cmd.RequestID)
			}
			continue
		}
		ok := false
		if h.owner == r.replica {
			ok = t.unclaim(h.rid, instance)
		} else {
			st, err := r.callPeer(h.owner, peerMsg{Op: opUnclaim, Tunnel: t.id, Request: h.rid, Instance: instance})
			ok = err == nil && st == http.StatusOK
		}
		if !ok {
			continue // its call ended meanwhile
		}
		item := h.item
		if item == nil {
			item = r.queuedItem(h.local)
		}
		ctx, cancel := context.WithTimeout(context.Background(), clusterCallTimeout)
		if err := r.cl.Push(ctx, t.id, h.lane, item); err != nil {
			r.log.Warn("command dropped after a poller left", "tunnel", t.id, "request_id", h.rid, "err", err)
		}
		cancel()
	}
}
