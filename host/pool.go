package host

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// pooled is an instance with its bookkeeping.
type pooled struct {
	inst     instance
	calls    int
	lastUsed time.Time
}

// pool is a bounded set of instances with exclusive checkout: at most size
// live instances (the stage's memory budget divided by one instance's
// limit), created lazily as concurrent calls need them, handed to one holder
// at a time. Idle
// instances are kept LIFO (the warmest first) and closed after idleTimeout,
// keeping one.
type pool struct {
	slots   chan struct{} // one token per live-or-creatable instance
	newInst func(context.Context) (instance, error)
	live    prometheus.Gauge

	mu     sync.Mutex
	idle   []*pooled
	closed bool

	idleTimeout time.Duration
}

var (
	errPoolClosed  = errors.New("stage is closed")
	errCircuitOpen = errors.New("circuit opened while waiting for an instance")
)

func newPool(size int, newInst func(context.Context) (instance, error), live prometheus.Gauge) *pool {
	return &pool{slots: make(chan struct{}, size), newInst: newInst, live: live, idleTimeout: DefaultIdleTimeout}
}

// seed adds an already-created instance as idle.
func (p *pool) seed(i instance) {
	if i == nil {
		return
	}
	p.live.Inc()
	p.mu.Lock()
	p.idle = append(p.idle, &pooled{inst: i, lastUsed: time.Now()})
	p.mu.Unlock()
}

// get checks out an instance, creating one when none is idle; it blocks
// until a slot frees up, ctx is done or abort is closed (the stage's
// circuit opened: errCircuitOpen). A nil abort never fires.
func (p *pool) get(ctx context.Context, abort <-chan struct{}) (*pooled, error) {
	select {
	case p.slots <- struct{}{}:
	default:
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-abort:
			return nil, errCircuitOpen
		}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, errPoolClosed
	}
	if n := len(p.idle); n > 0 {
		x := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		x.enter()
		return x, nil
	}
	p.mu.Unlock()
	i, err := p.newInst(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	p.live.Inc()
	x := &pooled{inst: i}
	x.enter()
	return x, nil
}

// enter and leave bracket the time x is checked out: its memory must not
// be released under a running call even if its module is closed (a stage
// closed after its drain timeout), see linearMemory.
func (x *pooled) enter() {
	if lm := x.inst.linear(); lm != nil {
		lm.enter()
	}
}

func (x *pooled) leave() {
	if lm := x.inst.linear(); lm != nil {
		lm.leave()
	}
}

// put returns x; discard closes it instead (after a failure or when due for
// recycling).
func (p *pool) put(x *pooled, discard bool) {
	x.leave()
	var stale []*pooled
	p.mu.Lock()
	if discard || p.closed {
		p.mu.Unlock()
		p.closeOne(x)
		<-p.slots
		return
	}
	now := time.Now()
	x.lastUsed = now
	// Close instances idle for too long (the oldest are at the bottom),
	// always keeping the one being returned.
	k := 0
	for k < len(p.idle) && now.Sub(p.idle[k].lastUsed) > p.idleTimeout {
		k++
	}
	if k > 0 {
		stale = append(stale, p.idle[:k]...)
		n := copy(p.idle, p.idle[k:])
		clear(p.idle[n:])
		p.idle = p.idle[:n]
	}
	p.idle = append(p.idle, x)
	p.mu.Unlock()
	<-p.slots
	for _, s := range stale {
		p.closeOne(s)
	}
}

func (p *pool) closeOne(x *pooled) {
	x.inst.close(context.Background())
	p.live.Dec()
}

// close closes every idle instance; checked-out ones close on put.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, x := range idle {
		p.closeOne(x)
	}
}

// isClosed reports whether close was called.
func (p *pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// idleCount returns the number of idle instances (tests).
func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// size is the most instances the pool holds.
func (p *pool) size() int { return cap(p.slots) }
