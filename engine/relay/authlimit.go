package relay

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// Defaults of AuthLimit.
const (
	DefaultAuthFailAddrBurst   = 20
	DefaultAuthFailAddrEvery   = 3 * time.Second
	DefaultAuthFailTunnelBurst = 100
	DefaultAuthFailTunnelEvery = 100 * time.Millisecond
)

// AuthLimit bounds failed authentications (a missing, wrong or revoked key)
// per client address and per tunnel. Each is a bucket of failures that
// refills one every Every up to Burst. An address whose bucket is empty gets
// 429 rate_limit_exceeded with Retry-After before its key is even looked
// at. A tunnel whose bucket is empty does the same to every address that
// has failed recently, while addresses with a clean record (its own agents
// and clients) keep being served: a flood of guesses from many addresses
// cannot lock a tunnel's users out. Successful authentications cost
// nothing. Zero fields take the defaults.
type AuthLimit struct {
	// Off disables the limits.
	Off         bool
	AddrBurst   int           // default 20
	AddrEvery   time.Duration // default 3s (20 a minute)
	TunnelBurst int           // default 100
	TunnelEvery time.Duration // default 100ms (600 a minute)
}

func (l AuthLimit) withDefaults() AuthLimit {
	if l.AddrBurst <= 0 {
		l.AddrBurst = DefaultAuthFailAddrBurst
	}
	if l.AddrEvery <= 0 {
		l.AddrEvery = DefaultAuthFailAddrEvery
	}
	if l.TunnelBurst <= 0 {
		l.TunnelBurst = DefaultAuthFailTunnelBurst
	}
	if l.TunnelEvery <= 0 {
		l.TunnelEvery = DefaultAuthFailTunnelEvery
	}
	return l
}

// sweepAbove is the bucket count above which refilled buckets are dropped.
const sweepAbove = 4096

// bucket is a failure budget: tokens left at last.
type bucket struct {
	tokens float64
	last   time.Time
}

// level refills b to now and returns its tokens.
func (b *bucket) level(now time.Time, burst int, every time.Duration) float64 {
	b.tokens = math.Min(float64(burst), b.tokens+float64(now.Sub(b.last))/float64(every))
	b.last = now
	return b.tokens
}

// wait is how long until b holds one token.
func (b *bucket) wait(every time.Duration) time.Duration {
	return time.Duration((1 - b.tokens) * float64(every))
}

// authLimiter applies an AuthLimit. Realm is the tunnel id, or "admin" for
// the admin API.
type authLimiter struct {
	cfg       AuthLimit
	mu        sync.Mutex
	addrs     map[string]*bucket
	realms    map[string]*bucket
	lastSweep time.Time
}

func newAuthLimiter(cfg AuthLimit) *authLimiter {
	return &authLimiter{cfg: cfg.withDefaults(), addrs: make(map[string]*bucket), realms: make(map[string]*bucket)}
}

// allow returns 0 when a request from addr to realm may try to
// authenticate, or how long it must wait.
func (l *authLimiter) allow(addr, realm string, now time.Time) time.Duration {
	if l.cfg.Off {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	a, aok := l.addrs[addr]
	addrClean := true
	if aok {
		if a.level(now, l.cfg.AddrBurst, l.cfg.AddrEvery) < 1 {
			return a.wait(l.cfg.AddrEvery)
		}
		addrClean = a.tokens >= float64(l.cfg.AddrBurst)
	}
	if t, ok := l.realms[realm]; ok && !addrClean {
		if t.level(now, l.cfg.TunnelBurst, l.cfg.TunnelEvery) < 1 {
			return t.wait(l.cfg.TunnelEvery)
		}
	}
	return 0
}

// fail records a failed authentication from addr to realm.
func (l *authLimiter) fail(addr, realm string, now time.Time) {
	if l.cfg.Off {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	take(l.addrs, addr, now, l.cfg.AddrBurst, l.cfg.AddrEvery)
	take(l.realms, realm, now, l.cfg.TunnelBurst, l.cfg.TunnelEvery)
	if len(l.addrs)+len(l.realms) > sweepAbove && now.Sub(l.lastSweep) > time.Second {
		l.lastSweep = now
		sweep(l.addrs, now, l.cfg.AddrBurst, l.cfg.AddrEvery)
		sweep(l.realms, now, l.cfg.TunnelBurst, l.cfg.TunnelEvery)
	}
}

func take(m map[string]*bucket, k string, now time.Time, burst int, every time.Duration) {
	b, ok := m[k]
	if !ok {
		b = &bucket{tokens: float64(burst), last: now}
		m[k] = b
	}
	b.level(now, burst, every)
	b.tokens = math.Max(b.tokens-1, -1) // a little debt, no more: a flood ends in bounded time
}

// sweep drops buckets that refilled: a full bucket is the same as none.
func sweep(m map[string]*bucket, now time.Time, burst int, every time.Duration) {
	for k, b := range m {
		if b.level(now, burst, every) >= float64(burst) {
			delete(m, k)
		}
	}
}

// clientAddr is the IP address of req's peer.
func clientAddr(req *http.Request) string {
	if h, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		return h
	}
	return req.RemoteAddr
}

// refuseRateLimited answers 429 rate_limit_exceeded with Retry-After.
func refuseRateLimited(w http.ResponseWriter, wait time.Duration) {
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	writeAPIError(w, http.StatusTooManyRequests, "rate_limit_error", wire.CodeRateLimitExceeded, "too many failed authentications: retry later")
}
