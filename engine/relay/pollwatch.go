package relay

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// errKeyRevoked ends a held poll whose runtime key stopped being valid.
var errKeyRevoked = errors.New("runtime key revoked")

// pollWatch is one held poll and the hash of the key it authenticated with.
type pollWatch struct {
	sum    [32]byte
	cancel context.CancelCauseFunc
}

// watchPoll registers a held poll of instance: when the tunnel's keys
// change and its key is no longer among them, its context ends with
// errKeyRevoked (and no command is handed to it from then on). It also
// remembers the instance's key, so a revocation fails the calls the
// instance holds. Call stop when the poll ends.
func (t *tunnelState) watchPoll(req *http.Request, instance string) (_ *http.Request, stop func()) {
	tok, _ := bearer(req)
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &pollWatch{sum: sha256.Sum256([]byte(tok)), cancel: cancel}
	t.mu.Lock()
	if t.held == nil {
		t.held = make(map[*pollWatch]struct{})
	}
	t.held[w] = struct{}{}
	if instance != "" {
		a := t.agentLocked(instance, time.Now())
		a.key, a.keyed = w.sum, true
	}
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

// setConf replaces the tunnel's configuration. Held polls whose key it no
// longer holds end; the calls held by agents whose key it no longer holds
// fail at once (their results could not be posted anyway); and an agent
// whose key was revoked no longer counts as connected, so new calls get
// 503 instead of waiting for a poll that will not come.
func (t *tunnelState) setConf(c *tunnelConf) {
	t.conf.Store(c)
	t.mu.Lock()
	for w := range t.held {
		if _, ok := matchKey(w.sum, c.runtimeKeys); !ok {
			w.cancel(errKeyRevoked)
			delete(t.held, w)
		}
	}
	var failed []*pending
	revoked := false
	for inst, a := range t.agents {
		if !a.keyed {
			continue
		}
		if _, ok := matchKey(a.key, c.runtimeKeys); ok {
			continue
		}
		a.keyed, revoked = false, true
		for id, p := range t.pending {
			if p.holder == inst {
				failed = append(failed, p)
				delete(t.pending, id)
			}
		}
	}
	if revoked {
		// Alive until now: only agents whose key still works.
		t.lastPoll = time.Time{}
		for _, a := range t.agents {
			if a.keyed && a.lastSeen.After(t.lastPoll) {
				t.lastPoll = a.lastSeen
			}
		}
	}
	t.mu.Unlock()
	for _, p := range failed {
		p.fail(agentGoneAnswer(p, "tunnel: the runtime key of the agent handling this call was revoked", revokedData))
	}
	if len(failed) > 0 && t.revokedCalls != nil {
		t.revokedCalls(len(failed))
	}
}

// revokedData is error.data of the calls failed by a key's revocation.
var revokedData = func() json.RawMessage {
	b, _ := json.Marshal(map[string]wire.TunnelFailure{"tunnel_failure": {
		Version: 1, Source: wire.SourceTransportClosed, TransportErrorKind: "agent_key_revoked"}})
	return b
}()

// pollEndRevoked records the end of a poll whose key was revoked while it
// was held: unlike pollEnd, it does not make the tunnel look alive.
func (t *tunnelState) pollEndRevoked(instance string) {
	t.mu.Lock()
	t.outstanding--
	t.mu.Unlock()
	if instance != "" && len(instance) <= 128 {
		t.agentRequest(instance, -1, time.Now())
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
