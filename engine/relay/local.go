package relay

import (
	"context"
	"slices"
	"time"
)

// A replica in a Cluster hands its own commands to its own polls without
// the shared queue when it can: a command whose replica has a poll of its
// tunnel waiting goes to that poll; one whose replica is about to poll
// again (an agent between two polls) waits on the replica's doorstep for
// up to lingerFor, and a poll here takes the doorstep's commands before
// the queue's. A replica without a poll of the tunnel offers the command
// to one that said it has some (offer.go), which treats it the same way.
// A command neither took goes to the shared queue like any other. A
// command is with a poll, on a doorstep or in the queue, never two of them
// (it leaves a doorstep, under t.mu, before it is pushed), and whoever
// hands it out claims it from its owner first.

// lingerFor bounds how long a command waits on the doorstep for a poll of
// its own replica before it goes to the shared queue.
const lingerFor = 20 * time.Millisecond

// lingerAfterPoll is how long after this replica's last poll of a tunnel
// ended a command still waits on the doorstep for the next: an agent
// between two polls.
const lingerAfterPoll = 50 * time.Millisecond

// localItem is a command on the doorstep, or given to a waiting poll: one of
// this replica's own (p), or one another replica offered (o).
type localItem struct {
	p        *pending
	o        *offered
	lane     Lane
	pinnedTo string
	off      chan struct{} // closed when a poll takes it off the doorstep
}

// localWaiter is a poll of this replica waiting for a command.
type localWaiter struct {
	instance string
	offer    bool // it offered GET streams: it takes get_stream commands
	pinned   bool // it takes the commands pinned to its instance
	wake     context.CancelFunc
	got      *localItem // the command that woke it (t.mu)
}

// takes reports whether a poll of w's kind takes d.
func (w *localWaiter) takes(d *localItem) bool {
	switch {
	case d.pinnedTo != "":
		return w.pinned && w.instance == d.pinnedTo
	case d.lane == LaneStreams:
		return w.offer
	}
	return true
}

// Where offerLocal put a command.
const (
	toQueue    = iota // nowhere: push it
	toPoll            // to a waiting poll, which it woke
	toDoorstep        // on the doorstep: wait for d.off
)

// offerLocal gives d to a waiting poll of this replica that takes it, or
// puts it on the doorstep when such a poll is expected and the doorstep
// holds less than the queue's bound.
func (t *tunnelState) offerLocal(d *localItem, now time.Time) int {
	t.mu.Lock()
	for i, w := range t.waiters {
		if w.takes(d) {
			t.waiters = slices.Delete(t.waiters, i, i+1)
			w.got = d
			t.mu.Unlock()
			w.wake()
			return toPoll
		}
	}
	if len(t.doorstep) >= t.queueSize || !t.expectsPollLocked(d, now) {
		t.mu.Unlock()
		return toQueue
	}
	d.off = make(chan struct{})
	t.doorstep = append(t.doorstep, d)
	t.mu.Unlock()
	return toDoorstep
}

// expectsPollLocked reports whether a poll of this replica that takes d is
// being held or ended within lingerAfterPoll (t.mu held).
func (t *tunnelState) expectsPollLocked(d *localItem, now time.Time) bool {
	recent := func(at time.Time) bool { return !at.IsZero() && now.Sub(at) < lingerAfterPoll }
	switch {
	case d.pinnedTo != "":
		a := t.agents[d.pinnedTo]
		return a != nil && (a.active > 0 || recent(a.lastSeen))
	case d.lane == LaneStreams:
		return t.offering > 0 || recent(t.lastOffer)
	}
	return t.outstanding > 0 || recent(t.lastPoll)
}

// linger waits up to lingerFor for a poll to take d off the doorstep, and
// reports whether one did (else d is off the doorstep now).
func (t *tunnelState) linger(d *localItem) bool {
	timer := time.NewTimer(lingerFor)
	select {
	case <-d.off:
	case <-timer.C:
	}
	timer.Stop()
	return !t.leaveDoorstep(d)
}

// leaveDoorstep takes d off the doorstep, reporting whether it was still
// there (no poll took it).
func (t *tunnelState) leaveDoorstep(d *localItem) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := slices.Index(t.doorstep, d)
	if i < 0 {
		return false
	}
	t.doorstep = slices.Delete(t.doorstep, i, i+1)
	return true
}

// takeLocal takes off the doorstep up to limit commands a poll of w's kind
// takes, oldest first.
func (t *tunnelState) takeLocal(w *localWaiter, limit int) []*localItem {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.doorstep) == 0 || limit <= 0 {
		return nil
	}
	var out []*localItem
	kept := t.doorstep[:0]
	for _, d := range t.doorstep {
		if len(out) < limit && w.takes(d) {
			out = append(out, d)
			close(d.off)
			continue
		}
		kept = append(kept, d)
	}
	clear(t.doorstep[len(kept):])
	t.doorstep = kept
	return out
}

// addWaiter and removeWaiter register and unregister a waiting poll.
func (t *tunnelState) addWaiter(w *localWaiter) {
	t.mu.Lock()
	t.waiters = append(t.waiters, w)
	t.mu.Unlock()
}

// removeWaiter also returns the command that woke w, if any.
func (t *tunnelState) removeWaiter(w *localWaiter) *localItem {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i := slices.Index(t.waiters, w); i >= 0 {
		t.waiters = slices.Delete(t.waiters, i, i+1)
	}
	d := w.got
	w.got = nil
	return d
}

// gather waits up to wait for a poll's first commands in a Cluster: those
// given to the poll or on the doorstep, and the shared queue's. Once it
// has some from the doorstep it adds what the shared queue has ready at
// once, so that commands there are not left behind while the doorstep is
// busy.
func (r *Relay) gather(ctx context.Context, t *tunnelState, w *localWaiter, lanes []Lane, limit int, wait time.Duration) ([]*localItem, []Pulled) {
	deadline := time.Now().Add(wait)
	for {
		if local := t.takeLocal(w, limit); len(local) > 0 {
			var items []Pulled
			if len(local) < limit {
				items, _ = r.cl.Pull(ctx, t.id, lanes, limit-len(local), 0)
			}
			return local, items
		}
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return nil, nil
		}
		wctx, wake := context.WithCancel(ctx)
		w.wake = wake
		t.addWaiter(w)
		items, err := r.cl.Pull(wctx, t.id, lanes, limit, left)
		if err != nil && wctx.Err() == nil {
			r.log.Warn("queue unavailable: poll answered empty", "tunnel", t.id, "err", err)
			// Do not let the agent spin on a queue that is down (this
			// replica's own commands still reach it).
			select {
			case <-wctx.Done():
			case <-time.After(min(left, time.Second)):
			}
		}
		got := t.removeWaiter(w)
		wake()
		var local []*localItem
		if got != nil {
			local = append(local, got)
			if len(items) >= limit {
				// Pulled as the command came: the queue's last item goes
				// back (it is not claimed yet) to keep to the limit.
				_ = items[len(items)-1].Nak()
				items = items[:len(items)-1]
			}
		}
		local = append(local, t.takeLocal(w, limit-len(items)-len(local))...)
		if len(items)+len(local) > 0 || ctx.Err() != nil || time.Now().After(deadline) {
			return local, items
		}
		// The shared queue failed before the wait ended: try it again.
	}
}
