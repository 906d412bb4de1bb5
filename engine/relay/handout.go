package relay

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Commands handed out by another replica (a Cluster). The owner of a
// command records which replica's poll claimed it; that replica says so
// (opHanded, no answer awaited) once the poll's answer is written. A
// replica that dies between the claim and that word may or may not have
// given the command to its agent, so the owner never sends it again; it
// fails the call at once with the lost-agent answer instead of letting its
// caller wait for the response timeout. A claim not confirmed within
// handOutGrace makes the owner ask whether its taker is still there; one
// the Cluster counts gone (no replica has listened on its subject for a
// while) is gone.

// handOutGrace is how long an owner waits for a taker's word before it
// asks whether the taker is alive.
const handOutGrace = time.Second

// handOutCheckEvery is how often an owner looks for hand-outs without that
// word.
const handOutCheckEvery = 500 * time.Millisecond

// handOut is a command claimed by another replica's poll, not yet
// confirmed written.
type handOut struct {
	p  *pending
	at time.Time // claimed then
}

// handOuts are the tunnels with hand-outs to watch.
type handOuts struct {
	mu      sync.Mutex
	tunnels map[*tunnelState]struct{}
}

// awaitHandOutLocked records that another replica's poll claimed p (t.mu
// held); the relay's watch finds the tunnel through r.awaitTunnel.
func (t *tunnelState) awaitHandOutLocked(p *pending) {
	if t.handOuts == nil {
		t.handOuts = make(map[string]handOut)
	}
	t.handOuts[p.cmd.RequestID] = handOut{p: p, at: time.Now()}
}

// handed records a taker's word that its poll's answer carrying the
// commands requestIDs, claimed under claim, is written.
func (t *tunnelState) handed(replica, claim string, requestIDs []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, rid := range requestIDs {
		h, ok := t.handOuts[rid]
		if ok && h.p.taker == replica && strings.HasPrefix(h.p.claimID, claim+".") {
			delete(t.handOuts, rid)
		}
	}
}

// unconfirmed returns, by taker, the hand-outs claimed before since that
// are still pending and unconfirmed, dropping the ones that ended; empty
// reports whether none is left.
func (t *tunnelState) unconfirmed(since time.Time) (byTaker map[string][]*pending, empty bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for rid, h := range t.handOuts {
		if t.pending[rid] != h.p || h.p.taker == "" {
			delete(t.handOuts, rid)
			continue
		}
		if h.at.Before(since) {
			if byTaker == nil {
				byTaker = make(map[string][]*pending)
			}
			byTaker[h.p.taker] = append(byTaker[h.p.taker], h.p)
		}
	}
	return byTaker, len(t.handOuts) == 0
}

// failHandOuts fails the unconfirmed hand-outs of a gone taker: their
// agent may or may not have them, so they are never sent again.
func (t *tunnelState) failHandOuts(replica string) int {
	t.mu.Lock()
	var failed []*pending
	for rid, h := range t.handOuts {
		if h.p.taker != replica {
			continue
		}
		delete(t.handOuts, rid)
		if t.pending[rid] == h.p {
			delete(t.pending, rid)
			failed = append(failed, h.p)
		}
	}
	t.mu.Unlock()
	for _, p := range failed {
		p.fail(lostAnswer(p))
	}
	t.lostCalls.Add(uint64(len(failed)))
	return len(failed)
}

// awaitTunnel adds t to the tunnels whose hand-outs the watch checks.
func (r *Relay) awaitTunnel(t *tunnelState) {
	r.handOuts.mu.Lock()
	if r.handOuts.tunnels == nil {
		r.handOuts.tunnels = make(map[*tunnelState]struct{})
	}
	r.handOuts.tunnels[t] = struct{}{}
	r.handOuts.mu.Unlock()
}

// confirmHanded tells the owners of the remote commands of a poll whose
// answer was written that their agent has them now.
func (r *Relay) confirmHanded(t *tunnelState, taken []handout, instance string) {
	type claim struct{ owner, id string }
	var byClaim map[claim][]string
	for _, h := range taken {
		if h.owner == r.replica || h.claim == "" {
			continue
		}
		if byClaim == nil {
			byClaim = make(map[claim][]string)
		}
		k := claim{h.owner, h.claim}
		byClaim[k] = append(byClaim[k], h.rid)
	}
	for k, rids := range byClaim {
		m := peerMsg{Op: opHanded, Tunnel: t.id, Instance: instance, Claim: k.id, From: r.replica, Requests: rids}
		if err := r.cl.Send(k.owner, encodePeer(&m)); err != nil {
			r.log.Warn("cluster: could not confirm a hand-out", "tunnel", t.id, "err", err)
		}
	}
}

// checkHandOuts looks at the hand-outs other replicas have not confirmed
// within handOutGrace, and fails those whose taker is gone (every
// handOutCheckEvery).
func (r *Relay) checkHandOuts(now time.Time) {
	r.handOuts.mu.Lock()
	ts := slices.Collect(maps.Keys(r.handOuts.tunnels))
	r.handOuts.mu.Unlock()
	stale := map[string][]*tunnelState{} // taker → tunnels
	for _, t := range ts {
		byTaker, empty := t.unconfirmed(now.Add(-handOutGrace))
		for taker := range byTaker {
			stale[taker] = append(stale[taker], t)
		}
		if empty {
			r.forgetAwaiting(t)
		}
	}
	for taker, ts := range stale {
		if !r.takerGone(taker) {
			continue
		}
		for _, t := range ts {
			if n := t.failHandOuts(taker); n > 0 {
				r.log.Warn("replica lost while handing out calls: failing them (they are never sent again)", "tunnel", t.id, "replica", taker, "calls", n)
			}
		}
	}
}

// forgetAwaiting drops t from the watched tunnels when it has no hand-out
// left (checked again under t.mu, so a claim made meanwhile keeps it).
func (r *Relay) forgetAwaiting(t *tunnelState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.handOuts) > 0 {
		return
	}
	r.handOuts.mu.Lock()
	delete(r.handOuts.tunnels, t)
	r.handOuts.mu.Unlock()
}

// takerGone asks replica whether it is there: gone when no replica of
// that id answers (the Cluster gives one reconnecting to another NATS node
// time first); a call that fails otherwise (NATS is unreachable from here)
// proves nothing.
func (r *Relay) takerGone(replica string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), clusterAttemptTimeout)
	defer cancel()
	_, err := r.cl.Call(ctx, replica, encodePeer(&peerMsg{Op: opPing}))
	return errors.Is(err, ErrNoReplica)
}

// pingAnswer is the answer to opPing.
var pingAnswer = encodeAnswer(http.StatusOK)
