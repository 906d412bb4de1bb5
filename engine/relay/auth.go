package relay

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"time"
)

// Key scopes: what a key may do. A key works only in its scope, and a
// runtime or client key only on its own tunnel.
const (
	// ScopeRuntime: an agent's key: tunnel metadata, poll and respond, for
	// one tunnel.
	ScopeRuntime = "runtime"
	// ScopeClient: an MCP client's key: the tunnel's MCP endpoint (in
	// client-key mode), for one tunnel; its name is the caller's identity.
	ScopeClient = "client"
	// ScopeAdmin: manage tunnels and keys through the admin API.
	ScopeAdmin = "admin"
)

// dummyKey keeps the comparison for an unknown tunnel as costly as for a
// known one.
var dummyKey = []hashedKey{{sum: sha256.Sum256([]byte("sluice-relay-no-such-tunnel"))}}

// authResult is what a presented key turned out to be.
type authResult struct {
	ok      bool
	key     hashedKey   // the matching key when ok
	revoked *revokedKey // a revoked key of this tunnel and scope, when not ok
}

// matchKey compares sum with every key in keys by crypto/subtle, without
// stopping at a match, and returns the match.
func matchKey(sum [32]byte, keys []hashedKey) (hashedKey, bool) {
	var found hashedKey
	hit := 0
	for i := range keys {
		eq := subtle.ConstantTimeCompare(sum[:], keys[i].sum[:])
		if eq == 1 && hit == 0 {
			found = keys[i]
		}
		hit |= eq
	}
	return found, hit == 1
}

// matchRevoked is matchKey over revoked keys of one scope.
func matchRevoked(sum [32]byte, keys []revokedKey, scope string) *revokedKey {
	var found *revokedKey
	for i := range keys {
		if subtle.ConstantTimeCompare(sum[:], keys[i].sum[:]) == 1 && keys[i].scope == scope && found == nil {
			found = &keys[i]
		}
	}
	return found
}

// check authenticates req's bearer token against keys of one scope (and
// that scope's revoked keys).
func check(req *http.Request, keys []hashedKey, revoked []revokedKey, scope string) authResult {
	tok, present := bearer(req)
	sum := sha256.Sum256([]byte(tok))
	k, ok := matchKey(sum, keys)
	rv := matchRevoked(sum, revoked, scope)
	if !present {
		return authResult{}
	}
	return authResult{ok: ok, key: k, revoked: rv}
}

// agentAuth authenticates an agent request for tunnel id. An unknown tunnel
// and a wrong key are indistinguishable to the caller.
func (r *Relay) agentAuth(req *http.Request, id string) (*tunnelState, authResult) {
	t := r.tunnel(id)
	if t == nil {
		check(req, dummyKey, nil, ScopeRuntime)
		return nil, authResult{}
	}
	c := t.conf.Load()
	res := check(req, c.runtimeKeys, c.revoked, ScopeRuntime)
	if !res.ok {
		return nil, res
	}
	return t, res
}

// clientAuth checks an MCP client's key in client-key mode.
func clientAuth(req *http.Request, c *tunnelConf) authResult {
	return check(req, c.clientKeys, c.revoked, ScopeClient)
}

// gate is one surface's authentication: the failure budget it draws on
// (realm: a tunnel id, or "admin"), the scope of its keys, and how it
// refuses a caller.
type gate struct {
	surface, realm, scope string
	invalid               string // the refusal's message for a key that is not valid
	refuse                func(w http.ResponseWriter, msg string)
}

// pass rate-limits req's address, authenticates it with check and, when it
// fails, counts the failure and refuses it (429 or g.refuse).
func (r *Relay) pass(w http.ResponseWriter, req *http.Request, g gate, check func() authResult) (authResult, bool) {
	addr, now := clientAddr(req), time.Now()
	if wait := r.limiter.allow(addr, g.realm, now); wait > 0 {
		r.met.authFailure(g.surface, failRateLimited)
		refuseRateLimited(w, wait)
		return authResult{}, false
	}
	res := check()
	if res.ok {
		return res, true
	}
	r.limiter.fail(addr, g.realm, now)
	msg, why := g.invalid, failInvalid
	if res.revoked != nil {
		msg, why = revokedMessage(g.scope, res.revoked), failRevoked
	}
	r.met.authFailure(g.surface, why)
	g.refuse(w, msg)
	return res, false
}

// revokedMessage is what the holder of a revoked key is told.
func revokedMessage(scope string, rk *revokedKey) string {
	return scope + " key revoked at " + time.Unix(rk.at, 0).UTC().Format(time.RFC3339) + ": ask the relay's operator for a new one"
}

func bearer(req *http.Request) (string, bool) {
	h := req.Header.Get("Authorization")
	const p = "bearer "
	if len(h) <= len(p) || !equalFoldASCII(h[:len(p)], p) {
		return "", false
	}
	return h[len(p):], true
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
