package relay

import (
	"context"
	"net/http"
	"time"
)

// retryAfterDraining is the Retry-After (seconds) the relay gives while it
// drains: another replica, or this one restarted, takes the call.
const retryAfterDraining = "1"

// Drain winds the relay down without losing a call: from now on new MCP
// calls and new polls get 503 with Retry-After (polls also with Connection:
// close, so agents reconnect, through a load balancer to another replica);
// outstanding polls end at once; calls still queued, which no agent has
// taken, get 503 with Retry-After (nothing ran them: retrying is safe); and
// calls already delivered to an agent may finish (their results are
// accepted) until ctx ends. Drain returns when none is left or ctx is done;
// then call Close, which answers what remains. Serve drains on its own.
func (r *Relay) Drain(ctx context.Context) {
	r.drainOnce.Do(func() { close(r.draining) })
	r.log.Info("relay draining: refusing new calls, waiting for delivered ones")
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		held := 0
		for _, t := range r.snapshot() {
			held += t.delivered()
		}
		if held == 0 {
			r.log.Info("relay drained", "took", time.Since(start).Round(time.Millisecond))
			return
		}
		select {
		case <-ctx.Done():
			r.log.Warn("drain timeout: failing calls still running", "calls", held)
			return
		case <-tick.C:
		}
	}
}

// isDraining reports whether a drain has started.
func (r *Relay) isDraining() bool {
	select {
	case <-r.draining:
		return true
	default:
		return false
	}
}

// refuseDraining answers 503 with Retry-After, closing the connection.
func refuseDraining(w http.ResponseWriter, what string) {
	w.Header().Set("Retry-After", retryAfterDraining)
	w.Header().Set("Connection", "close")
	writeAPIError(w, http.StatusServiceUnavailable, "server_error", "", "relay is shutting down: "+what)
}

// delivered counts the tunnel's commands that an agent has taken and not
// finished.
func (t *tunnelState) delivered() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.pending {
		if p.holder != "" {
			n++
		}
	}
	return n
}

// withdraw removes p if no agent has taken it, reporting whether it did: the
// caller may then tell the client to retry, since nothing will run it.
func (t *tunnelState) withdraw(p *pending) bool {
	t.mu.Lock()
	if t.pending[p.cmd.RequestID] != p || p.holder != "" {
		t.mu.Unlock()
		return false
	}
	delete(t.pending, p.cmd.RequestID)
	t.mu.Unlock()
	p.mu.Lock()
	p.gone = true
	p.mu.Unlock()
	return true
}
