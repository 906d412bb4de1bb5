package relay

import (
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// Reasons a request is refused by the limits for hostile clients, the
// values of the reason label of sluice_relay_limit_refusals_total.
const (
	refusedKeyConcurrency  = "key_concurrency"     // 429: the client key has max-concurrent-per-key requests in progress
	refusedAddrConcurrency = "address_concurrency" // 429: the remote address has max-concurrent-per-address requests in progress
	refusedKeyBodyBudget   = "key_body_budget"     // 429: the key's bodies being read hold max-body-bytes-in-flight-per-key
	refusedBodyBudget      = "body_budget"         // 503: all bodies being read hold max-body-bytes-in-flight
	refusedBodyTimeout     = "body_timeout"        // 408: the body did not arrive within body-read-timeout
	refusedBodyTooLarge    = "body_too_large"      // 413: over max-body-bytes or max-response-bytes
	refusedBodyNotAllowed  = "body_not_allowed"    // 400: a GET, HEAD or DELETE with a body
)

// retryAfterLimited is the Retry-After (seconds) of a refusal by a limit.
const retryAfterLimited = "1"

// firstBodyChunk is the most a body read allocates before bytes arrive;
// the buffer then doubles as they do, up to the declared length.
const firstBodyChunk = 4 << 10

// bodyAllowanceBytes is the amount of body that earns BodyReadAllowance.
const bodyAllowanceBytes = 64 << 10

// keyID identifies a caller for the per-key limits: the SHA-256 of a
// client key, of a runtime key for its agents' response POSTs, or of the
// subject of a token an oauth-gateway tunnel validated (subjectKey). The
// zero value is no known caller (transparent oauth and public tunnels):
// per-key limits do not apply.
type keyID [32]byte

// subjectKey is the keyID of a validated token's subject on tunnel id.
func subjectKey(id, subject string) keyID {
	return sha256.Sum256([]byte("oauth-gateway\x00" + id + "\x00" + subject))
}

// limits are the relay's defences against hostile clients: byte budgets
// for request bodies being read (relay-wide and per key) and bounds on
// concurrent MCP requests per client key and per remote address.
type limits struct {
	bodyBudget int64
	bodyBytes  atomic.Int64 // bytes held by body reads in progress
	bodies     atomic.Int64 // body reads in progress
	keyBytes   counts[keyID]
	keyReqs    counts[keyID]
	addrReqs   counts[string]
}

func newLimits(s settings) *limits {
	return &limits{
		bodyBudget: s.bodyBudget,
		keyBytes:   counts[keyID]{max: s.keyBodyBudget},
		keyReqs:    counts[keyID]{max: int64(s.perKey)},
		addrReqs:   counts[string]{max: int64(s.perAddress)},
	}
}

// takeBytes reserves n bytes of body for key, from the key's budget (when
// there is a key) and the relay's. It returns the refusal reason, or "".
func (l *limits) takeBytes(key keyID, n int64) string {
	if key != (keyID{}) && !l.keyBytes.add(key, n) {
		return refusedKeyBodyBudget
	}
	for {
		cur := l.bodyBytes.Load()
		if cur+n > l.bodyBudget {
			if key != (keyID{}) {
				l.keyBytes.sub(key, n)
			}
			return refusedBodyBudget
		}
		if l.bodyBytes.CompareAndSwap(cur, cur+n) {
			return ""
		}
	}
}

// giveBytes returns n bytes taken by takeBytes.
func (l *limits) giveBytes(key keyID, n int64) {
	if n == 0 {
		return
	}
	if key != (keyID{}) {
		l.keyBytes.sub(key, n)
	}
	l.bodyBytes.Add(-n)
}

// slot is one MCP request's place in the per-key and per-address
// concurrency limits; release gives it back.
type slot struct {
	l    *limits
	key  keyID
	addr string
}

func (s slot) release() {
	if s.l == nil {
		return
	}
	if s.key != (keyID{}) {
		s.l.keyReqs.sub(s.key, 1)
	}
	if s.addr != "" {
		s.l.addrReqs.sub(s.addr, 1)
	}
}

// admit takes a slot for req, from its remote address and key (the zero
// key: none). On refusal it answers 429 with Retry-After itself and
// returns ok=false.
func (r *Relay) admit(w http.ResponseWriter, req *http.Request, key keyID) (slot, bool) {
	s := slot{l: r.lim}
	if addr := remoteIP(req); addr != "" {
		if !r.lim.addrReqs.add(addr, 1) {
			r.limited(w, http.StatusTooManyRequests, refusedAddrConcurrency, "too many requests in progress from this address: retry")
			return slot{}, false
		}
		s.addr = addr
	}
	if key != (keyID{}) {
		if !r.lim.keyReqs.add(key, 1) {
			s.release()
			r.limited(w, http.StatusTooManyRequests, refusedKeyConcurrency, "too many requests in progress for this client key: retry")
			return slot{}, false
		}
		s.key = key
	}
	return s, true
}

// remoteIP is the IP address of req's peer ("" when it cannot be told).
func remoteIP(req *http.Request) string {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}

// limited answers a request a limit refused, with Retry-After where a retry
// may succeed, and counts it.
func (r *Relay) limited(w http.ResponseWriter, status int, reason, msg string) {
	r.met.refused.WithLabelValues(reason).Inc()
	switch status {
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", retryAfterLimited)
		writeAPIError(w, status, "rate_limit_error", wire.CodeRateLimitExceeded, msg)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", retryAfterLimited)
		writeAPIError(w, status, "server_error", "", msg)
	case http.StatusRequestEntityTooLarge:
		writeAPIError(w, status, "invalid_request_error", wire.CodeRequestBodyTooLarge, msg)
	default:
		writeAPIError(w, status, "invalid_request_error", "", msg)
	}
}

// readBody reads req's body, up to limit bytes, for key (the zero key: none)
// and returns it, or answers the request itself and returns the outcome
// ("" on success). The buffer grows as bytes arrive, never from the
// declared Content-Length alone, and every byte it holds is taken from the
// key's and the relay's budgets until the read ends (429 or 503 when one is
// exhausted). The body must arrive within the body read timeout (plus
// BodyReadAllowance per 64 KiB received): 408 otherwise; over limit is 413.
func (r *Relay) readBody(w http.ResponseWriter, req *http.Request, limit int64, key keyID) ([]byte, string) {
	if req.ContentLength > limit {
		r.limited(w, http.StatusRequestEntityTooLarge, refusedBodyTooLarge, "request body too large")
		return nil, outcomeBadRequest
	}
	want := limit + 1 // one past the cap: a longer chunked body shows itself
	if n := req.ContentLength; n >= 0 {
		want = n + 1 // room to see EOF without growing
	}
	rc := http.NewResponseController(w)
	start := time.Now()
	_ = rc.SetReadDeadline(start.Add(r.set.bodyTimeout))
	var (
		buf       []byte
		held      int64
		allowance time.Duration
	)
	r.lim.bodies.Add(1)
	defer func() {
		r.lim.giveBytes(key, held)
		r.lim.bodies.Add(-1)
	}()
	for {
		if len(buf) == cap(buf) {
			size := min(max(2*int64(cap(buf)), firstBodyChunk), want)
			if why := r.lim.takeBytes(key, size-int64(cap(buf))); why != "" {
				if why == refusedBodyBudget {
					r.limited(w, http.StatusServiceUnavailable, why, "the relay is reading too many request bodies: retry")
				} else {
					r.limited(w, http.StatusTooManyRequests, why, "too many request body bytes in flight for this key: retry")
				}
				return nil, outcomeLimited
			}
			held = size
			grown := make([]byte, len(buf), size)
			copy(grown, buf)
			buf = grown
		}
		n, err := req.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			r.limited(w, http.StatusRequestEntityTooLarge, refusedBodyTooLarge, "request body too large")
			return nil, outcomeBadRequest
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				r.limited(w, http.StatusRequestTimeout, refusedBodyTimeout, "request body not received within "+(r.set.bodyTimeout+allowance).String())
				return nil, outcomeSlowBody
			}
			writeAPIError(w, http.StatusBadRequest, "invalid_request_error", "", "could not read request body")
			return nil, outcomeBadRequest
		}
		if a := time.Duration(len(buf)/bodyAllowanceBytes) * BodyReadAllowance; a > allowance {
			allowance = a
			_ = rc.SetReadDeadline(start.Add(r.set.bodyTimeout + allowance))
		}
	}
	_ = rc.SetReadDeadline(time.Time{})
	return buf, ""
}

// guardBodies wraps the public handler so that no request body can hold a
// connection the handler is done with. Left alone, net/http reads up to
// 256 KiB of an unread body before it writes the answer, and again when the
// handler returns, with no deadline: a client trickling a body to a refused
// request (401, 429, …) would keep its connection and goroutine for as long
// as it trickles. So a body the handler did not read to its end is cut (a
// read deadline in the past: what is buffered is still taken, the
// connection closes after the answer), and GET, HEAD and DELETE, which
// take no body, are refused with 400 when they carry one.
func (r *Relay) guardBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.ContentLength == 0 || req.Body == nil || req.Body == http.NoBody {
			next.ServeHTTP(w, req)
			return
		}
		switch req.Method {
		case http.MethodGet, http.MethodHead, http.MethodDelete:
			// A body is declared (an HTTP/2 request of unknown length may
			// still end without one: let it through).
			if req.ContentLength > 0 || req.ProtoMajor == 1 {
				r.limited(w, http.StatusBadRequest, refusedBodyNotAllowed, req.Method+" requests take no body")
				cutBody(w, req)
				return
			}
		}
		orig := req.Body
		wb := &watchedBody{ReadCloser: orig}
		req.Body = wb
		next.ServeHTTP(w, req)
		// The server inspects the body's own type when it finishes the
		// request: give it back.
		req.Body = orig
		if !wb.eof {
			cutBody(w, req)
		}
	})
}

// cutBody stops reading req's body: the server then closes the connection
// after the answer instead of draining the body first.
func cutBody(w http.ResponseWriter, req *http.Request) {
	if req.ProtoMajor == 1 {
		closingConn(req) // the relay's own doing: not an agent lost
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
}

// watchedBody records whether a request body was read to its end.
type watchedBody struct {
	io.ReadCloser
	eof bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// counts is a set of counters keyed by K, each bounded by max (0: no
// bound). A counter back at zero is removed, so the set holds only the keys
// in use.
type counts[K comparable] struct {
	max int64
	mu  sync.Mutex
	m   map[K]int64
}

// add adds n to k's counter and reports true, or reports false and changes
// nothing if that would pass max.
func (c *counts[K]) add(k K, n int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.m[k] + n
	if c.max > 0 && v > c.max {
		return false
	}
	if c.m == nil {
		c.m = make(map[K]int64)
	}
	c.m[k] = v
	return true
}

// sub takes n from k's counter.
func (c *counts[K]) sub(k K, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.m[k] - n; v > 0 {
		c.m[k] = v
	} else {
		delete(c.m, k)
	}
}
