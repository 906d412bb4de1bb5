package relay

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
)

// errKeyRevoked ends a held poll whose runtime key stopped being valid.
var errKeyRevoked = errors.New("runtime key revoked")

// pollWatch is one held poll and the hash of the key it authenticated with.
type pollWatch struct {
	sum    [32]byte
	cancel context.CancelCauseFunc
}

// watchPoll registers a held poll: when the tunnel's keys change and its
// key is no longer among them, its context ends with errKeyRevoked (and no
// command is handed to it from then on). Call stop when the poll ends.
func (t *tunnelState) watchPoll(req *http.Request) (_ *http.Request, stop func()) {
	tok, _ := bearer(req)
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &pollWatch{sum: sha256.Sum256([]byte(tok)), cancel: cancel}
	t.mu.Lock()
	if t.held == nil {
		t.held = make(map[*pollWatch]struct{})
	}
	t.held[w] = struct{}{}
	t.mu.Unlock()
	// A revocation between the poll's authentication and now.
	if _, ok := matchKey(w.sum, t.conf.Load().runtimeKeys); !ok {
		cancel(errKeyRevoked)
	}
	return req.WithContext(ctx), func() {
		t.mu.Lock()
		delete(t.held, w)
		t.mu.Unlock()
		cancel(nil)
	}
}

// setConf replaces the tunnel's configuration and ends the held polls whose
// key it no longer holds.
func (t *tunnelState) setConf(c *tunnelConf) {
	t.conf.Store(c)
	t.mu.Lock()
	defer t.mu.Unlock()
	for w := range t.held {
		if _, ok := matchKey(w.sum, c.runtimeKeys); !ok {
			w.cancel(errKeyRevoked)
			delete(t.held, w)
		}
	}
}

// keyRevoked reports whether a poll ended because its key was revoked.
func keyRevoked(req *http.Request) bool {
	return errors.Is(context.Cause(req.Context()), errKeyRevoked)
}

// heldPolls is the number of polls being held (tests).
func (t *tunnelState) heldPolls() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.held)
}
