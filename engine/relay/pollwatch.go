package relay

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// pollWatch is one held poll and the hash of the key it authenticated
// with. A revocation marks it (setConf, under t.mu) and wakes it through
// the tunnel's revocation channel (revocationsLocked); the poll then sees
// revoked and ends. It costs a poll no context of its own (RATIONALE.md,
// idle polls).
type pollWatch struct {
	sum     [32]byte
	revoked bool // its key was revoked while it was held (t.mu)
	// wake is the tunnel's revocation channel of the moment, closed at the
	// next revocation (owned by the poll's goroutine).
	wake <-chan struct{}
}

// beginPoll registers a held poll of instance and counts it as outstanding.
// When the tunnel's keys change and its key is no longer among them, it is
// marked revoked and woken, no command is handed to it from then on, and it
// stops counting as a connected agent at once (not when its handler gets
// round to ending it). It also remembers the instance's key, so a
// revocation fails the calls the instance holds; the commands the poll
// takes carry its key hash (w.sum), so a revocation fails them wherever
// they are owned. Call endPoll when the poll
// ends: a poll that ends normally makes the tunnel look alive until then, a
// revoked one does not.
func (t *tunnelState) beginPoll(req *http.Request, instance, serverInfo string) *pollWatch {
	tok, _ := bearer(req)
	w := &pollWatch{sum: sha256.Sum256([]byte(tok))}
	now := time.Now()
	t.mu.Lock()
	if t.held == nil {
		t.held = make(map[*pollWatch]struct{})
	}
	t.held[w] = struct{}{}
	t.outstanding++
	if serverInfo != "" && len(serverInfo) <= 4096 {
		t.serverInfo = serverInfo
	}
	if _, ok := matchKey(w.sum, t.conf.Load().runtimeKeys); !ok {
		// Revoked between the poll's authentication and now.
		t.revokeHeldLocked(w)
	} else if counted(instance) {
		a := t.agentLocked(instance, now)
		a.key, a.keyed = w.sum, true
	}
	w.wake = t.revocationsLocked()
	t.mu.Unlock()
	if counted(instance) {
		t.agentRequest(instance, 1, now)
	}
	return w
}

// endPoll is the end of a poll beginPoll registered.
func (t *tunnelState) endPoll(w *pollWatch, instance string) {
	now := time.Now()
	t.mu.Lock()
	delete(t.held, w)
	t.outstanding--
	if w.revoked {
		t.revokedHeld--
	} else {
		t.lastPoll = now
	}
	t.mu.Unlock()
	if counted(instance) {
		t.agentRequest(instance, -1, now)
	}
}

// counted reports whether an instance id is tracked for liveness.
func counted(instance string) bool { return instance != "" && len(instance) <= 128 }

// wasRevoked is called by w's poll when w.wake is closed: it reports
// whether w's key was revoked and otherwise waits on the next wake-up.
func (t *tunnelState) wasRevoked(w *pollWatch) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	w.wake = t.revocationsLocked()
	return w.revoked
}

// isRevoked reports whether w's key was revoked.
func (t *tunnelState) isRevoked(w *pollWatch) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return w.revoked
}

// revokeHeldLocked ends held poll w because its key was revoked.
func (t *tunnelState) revokeHeldLocked(w *pollWatch) {
	if w.revoked {
		return
	}
	w.revoked = true
	t.revokedHeld++
}

// livePollsLocked is the number of held polls whose key still works.
func (t *tunnelState) livePollsLocked() int { return t.outstanding - t.revokedHeld }

// revocations returns a channel closed at the next revocation of a key of
// the tunnel that held polls or agents use. Held polls wait on it to learn
// their own key was revoked, queued calls to learn no agent may be left
// (mcp.go); each checks what concerns it when woken.
func (t *tunnelState) revocations() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.revocationsLocked()
}

// revocationsLocked is revocations with t.mu held.
func (t *tunnelState) revocationsLocked() chan struct{} {
	if t.revokeC == nil {
		t.revokeC = make(chan struct{})
	}
	return t.revokeC
}

// setConf replaces the tunnel's configuration. Held polls whose key it no
// longer holds end; the calls taken by polls whose key it no longer holds
// fail at once (their results could not be posted anyway), on the replica
// that owns them whichever replica's poll took them; and an agent whose
// key was revoked no longer counts as connected, so new calls get 503
// instead of waiting for a poll that will not come.
func (t *tunnelState) setConf(c *tunnelConf) {
	t.conf.Store(c)
	t.mu.Lock()
	revoked := false
	for w := range t.held {
		if _, ok := matchKey(w.sum, c.runtimeKeys); !ok && !w.revoked {
			t.revokeHeldLocked(w)
			revoked = true
		}
	}
	revokedInst := map[string]bool{}
	for inst, a := range t.agents {
		if !a.keyed {
			continue
		}
		if _, ok := matchKey(a.key, c.runtimeKeys); ok {
			continue
		}
		a.keyed, revoked = false, true
		revokedInst[inst] = true
	}
	var failed []*pending
	for id, p := range t.pending {
		if p.holder == "" || p.holder == anonymousHolder {
			continue // an agent without an instance id may post with any key
		}
		gone := revokedInst[p.holder] && !p.keyed // taken by a replica that did not say with which key
		if p.keyed {
			_, ok := matchKey(p.key, c.runtimeKeys)
			gone = !ok
		}
		if gone {
			failed = append(failed, p)
			delete(t.pending, id)
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
	// Other replicas' words about polls made with a revoked key no longer
	// count either.
	if t.forgetRemoteKeysLocked(c.runtimeKeys) {
		revoked = true
	}
	if revoked && t.revokeC != nil {
		// Wake the held polls whose key it was, and the calls waiting in
		// the queue: with no agent left they are withdrawn (mcp.go), not
		// left to their response timeout.
		close(t.revokeC)
		t.revokeC = nil
	}
	t.mu.Unlock()
	for _, p := range failed {
		p.fail(agentGoneAnswer(p, "tunnel: the runtime key of the agent handling this call was revoked", revokedData))
	}
	if len(failed) > 0 && t.revokedCalls != nil {
		t.revokedCalls(len(failed))
	}
}

// forgetRemoteKeysLocked drops the other replicas' words about polls made
// with keys no longer among keys, so that an agent whose key was revoked
// on another replica no longer counts as connected here (t.mu held). It
// reports whether it dropped any.
func (t *tunnelState) forgetRemoteKeysLocked(keys []hashedKey) (dropped bool) {
	if len(t.remoteKeys) == 0 {
		return false
	}
	valid := make(map[string]bool, len(keys))
	for _, k := range keys {
		valid[keyFingerprint(k.sum)] = true
	}
	t.remotePoll = time.Time{}
	for fp, at := range t.remoteKeys {
		if fp != "" && !valid[fp] {
			delete(t.remoteKeys, fp)
			dropped = true
			continue
		}
		if at.After(t.remotePoll) {
			t.remotePoll = at
		}
	}
	return dropped
}

// revokedData is error.data of the calls failed by a key's revocation.
var revokedData = func() json.RawMessage {
	b, _ := json.Marshal(map[string]wire.TunnelFailure{"tunnel_failure": {
		Version: 1, Source: wire.SourceTransportClosed, TransportErrorKind: "agent_key_revoked"}})
	return b
}()

// heldPolls is the number of polls being held (tests).
func (t *tunnelState) heldPolls() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.held)
}
