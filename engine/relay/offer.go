package relay

import (
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// Offers between replicas (a Cluster). A replica with no poll of a tunnel
// offers the tunnel's new commands to another replica that said it has
// polls of it, before the shared queue: opOffers carries every command
// offered to that replica since the last one went (as the shared queue
// would carry them). A poll there takes them as it takes its own
// replica's commands (local.go) and claims them from their owner; the
// commands no poll took within lingerFor come back in an opDecline, and
// their owner queues them. An owner that hears neither within offerWait
// queues the command too: a command offered and queued both is still
// handed out once, by the owner's claim. Messages between replicas go
// through the NATS servers like the queue's, but an offer carries several
// commands, where the queue costs each its publish, fetch and
// acknowledgement.

// offerWait bounds how long an owner waits for another replica's poll to
// claim an offered command, or for that replica to decline it.
const offerWait = lingerFor + 250*time.Millisecond

// pollReplicaFresh is how long after its last word a replica counts as
// having polls of a tunnel, for offers.
const pollReplicaFresh = liveEvery + liveEvery/2

// offered is a command another replica offered to this one's polls.
type offered struct {
	q   queued
	raw []byte // as the shared queue carries it
}

// outbox is the commands of one tunnel waiting to be offered to one
// replica, while the previous offer is on its way.
type outbox struct {
	mu      sync.Mutex
	items   []json.RawMessage
	sending bool
}

// outboxes are the relay's outboxes, by tunnel and replica.
type outboxes struct {
	mu sync.Mutex
	m  map[[2]string]*outbox
}

// notePollReplicaLocked notes replica's word that it has polls of t (t.mu
// held).
func (t *tunnelState) notePollReplicaLocked(replica string, now time.Time) {
	if replica == "" {
		return
	}
	if t.pollReplicas == nil {
		t.pollReplicas = make(map[string]time.Time)
	}
	if len(t.pollReplicas) >= maxInstances {
		for id, at := range t.pollReplicas {
			if now.Sub(at) > pollReplicaFresh {
				delete(t.pollReplicas, id)
			}
		}
	}
	t.pollReplicas[replica] = now
}

// pollReplica returns another replica that lately said it has polls of t,
// in turn ("" for none).
func (t *tunnelState) pollReplica(now time.Time) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var fresh []string
	for id, at := range t.pollReplicas {
		if now.Sub(at) < pollReplicaFresh {
			fresh = append(fresh, id)
		}
	}
	switch len(fresh) {
	case 0:
		return ""
	case 1:
		return fresh[0]
	}
	t.offerNext++
	slices.Sort(fresh) // map order is random: sorted, the turn is fair
	return fresh[t.offerNext%len(fresh)]
}

// offer offers p (item, as the queue carries it) to another replica's
// polls and waits for the outcome; it reports whether p needs no queueing
// (a poll claimed it, or its call ended).
func (r *Relay) offer(t *tunnelState, p *pending, item []byte) bool {
	replica := t.pollReplica(time.Now())
	if replica == "" {
		return false
	}
	settled := make(chan struct{})
	t.mu.Lock()
	p.offer = settled
	t.mu.Unlock()
	r.sendOffer(t, replica, item)
	timer := time.NewTimer(offerWait)
	answered := true
	select {
	case <-settled:
	case <-timer.C:
		answered = false
	}
	timer.Stop()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !answered && p.offer != nil {
		// Neither a claim nor a decline: that replica may be gone. Offer
		// it nothing more until it says again that it has polls.
		delete(t.pollReplicas, replica)
	}
	p.offer = nil
	return t.pending[p.cmd.RequestID] != p || p.holder != ""
}

// settleOfferLocked ends the owner's wait for an offered p (t.mu held).
func settleOfferLocked(p *pending) {
	if p.offer != nil {
		close(p.offer)
		p.offer = nil
	}
}

// sendOffer puts item in the outbox to replica, and sends the outbox
// unless an offer is on its way already (its sender takes this item next).
func (r *Relay) sendOffer(t *tunnelState, replica string, item []byte) {
	key := [2]string{t.id, replica}
	r.outboxes.mu.Lock()
	if r.outboxes.m == nil {
		r.outboxes.m = make(map[[2]string]*outbox)
	}
	ob := r.outboxes.m[key]
	if ob == nil {
		ob = &outbox{}
		r.outboxes.m[key] = ob
	}
	r.outboxes.mu.Unlock()
	ob.mu.Lock()
	ob.items = append(ob.items, item)
	if ob.sending {
		ob.mu.Unlock()
		return
	}
	ob.sending = true
	ob.mu.Unlock()
	go func() {
		for {
			ob.mu.Lock()
			items := ob.items
			ob.items = nil
			if len(items) == 0 {
				ob.sending = false
				ob.mu.Unlock()
				return
			}
			ob.mu.Unlock()
			// A lost offer costs its commands offerWait: then they are queued.
			if err := r.cl.Send(replica, encodePeer(&peerMsg{Op: opOffers, Tunnel: t.id, From: r.replica, Offers: items})); err != nil {
				r.log.Debug("cluster: offer not sent", "tunnel", t.id, "err", err)
			}
		}
	}()
}

// dropOutboxes forgets the outboxes to replicas gone quiet (sayLive).
func (r *Relay) dropOutboxes(now time.Time) {
	r.outboxes.mu.Lock()
	defer r.outboxes.mu.Unlock()
	for key, ob := range r.outboxes.m {
		t := r.tunnel(key[0])
		if t == nil || !t.hasPollReplica(key[1], now) {
			ob.mu.Lock()
			idle := !ob.sending && len(ob.items) == 0
			ob.mu.Unlock()
			if idle {
				delete(r.outboxes.m, key)
			}
		}
	}
}

// hasPollReplica reports whether replica lately said it has polls of t.
func (t *tunnelState) hasPollReplica(replica string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.pollReplicas[replica]
	return ok && now.Sub(at) < pollReplicaFresh
}

// takeOffers gives the commands owner offered to this replica's polls of
// tunnel t (nil: not served here), and declines those no poll took within
// lingerFor (all of them when this replica is going away).
func (r *Relay) takeOffers(t *tunnelState, tunnel, owner string, items []json.RawMessage) {
	var declined []string
	var waiting []*localItem
	now := time.Now()
	for _, item := range items {
		var q queued
		if json.Unmarshal(item, &q) != nil || q.Owner != owner || q.Cmd.RequestID == "" {
			continue // not the owner's: nothing to decline
		}
		lane := q.Lane
		if lane == "" {
			lane = laneOf(q.Cmd.CommandType)
		}
		if t == nil || r.closed() || r.isDraining() || (lane != LaneCommands && lane != LaneStreams) {
			declined = append(declined, q.Cmd.RequestID)
			continue
		}
		d := &localItem{o: &offered{q: q, raw: item}, lane: lane}
		switch t.offerLocal(d, now) {
		case toQueue:
			declined = append(declined, q.Cmd.RequestID)
		case toDoorstep:
			waiting = append(waiting, d)
		}
	}
	r.decline(tunnel, owner, declined)
	if len(waiting) == 0 {
		return
	}
	time.AfterFunc(lingerFor, func() {
		var left []string
		for _, d := range waiting {
			if t.leaveDoorstep(d) {
				left = append(left, d.o.q.Cmd.RequestID)
			}
		}
		r.decline(tunnel, owner, left)
	})
}

// decline tells owner that no poll here took its commands requestIDs.
func (r *Relay) decline(tunnel, owner string, requestIDs []string) {
	if len(requestIDs) == 0 {
		return
	}
	if err := r.cl.Send(owner, encodePeer(&peerMsg{Op: opDecline, Tunnel: tunnel, From: r.replica, Requests: requestIDs})); err != nil {
		r.log.Debug("cluster: decline not sent", "tunnel", tunnel, "err", err)
	}
}

// declined ends the owner's wait for the offered commands requestIDs: no
// poll of the replica they were offered to took them.
func (t *tunnelState) declined(requestIDs []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, rid := range requestIDs {
		if p := t.pending[rid]; p != nil {
			settleOfferLocked(p)
		}
	}
}
