package host

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicemcp/sluice/engine"
)

// Defaults for BreakerConfig's zero fields.
const (
	// DefaultBreakerFailures is how many timeouts, traps or out-of-memory
	// failures in a row open a stage's circuit.
	DefaultBreakerFailures = 5
	// DefaultBreakerBackoff is how long the circuit first stays open.
	DefaultBreakerBackoff = 5 * time.Second
	// DefaultBreakerMaxBackoff caps the open period, which doubles each
	// time a probe fails.
	DefaultBreakerMaxBackoff = time.Minute
)

// BreakerConfig configures a stage's circuit breaker. The zero value means
// the defaults.
//
// After Failures timeouts, traps or out-of-memory failures in a row the
// circuit opens: for Backoff every call gets the stage's failure policy at
// once, without running the plugin. Then one call at a time is let through
// as a probe (half-open): a probe that succeeds closes the circuit; one that
// fails opens it again for twice as long, up to MaxBackoff.
type BreakerConfig struct {
	// Failures in a row that open the circuit (default 5).
	Failures int
	// Backoff is the first open period (default 5s).
	Backoff time.Duration
	// MaxBackoff caps the open period (default 1m).
	MaxBackoff time.Duration
	// Disabled turns the breaker off: every call runs the plugin.
	Disabled bool
}

// MaxBreakerFailures bounds BreakerConfig.Failures.
const MaxBreakerFailures = 1000000

// validate refuses a value outside its bounds (zero means the default).
func (c BreakerConfig) validate() error {
	switch {
	case c.Failures < 0 || c.Failures > MaxBreakerFailures:
		return fmt.Errorf("breaker.failures: %d is out of range 0..%d", c.Failures, MaxBreakerFailures)
	case c.Backoff < 0 || c.Backoff > MaxTimeLimit:
		return fmt.Errorf("breaker.backoff: %s is out of range 0..%s", c.Backoff, MaxTimeLimit)
	case c.MaxBackoff < 0 || c.MaxBackoff > MaxTimeLimit:
		return fmt.Errorf("breaker.max-backoff: %s is out of range 0..%s", c.MaxBackoff, MaxTimeLimit)
	}
	return nil
}

func (c BreakerConfig) withDefaults() BreakerConfig {
	if c.Failures <= 0 {
		c.Failures = DefaultBreakerFailures
	}
	if c.Backoff <= 0 {
		c.Backoff = DefaultBreakerBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultBreakerMaxBackoff
	}
	c.MaxBackoff = max(c.MaxBackoff, c.Backoff)
	return c
}

// Circuit states (the value of sluice_plugin_breaker_state).
const (
	circuitClosed   int32 = 0
	circuitOpen     int32 = 1
	circuitHalfOpen int32 = 2
)

// breakerCounts reports whether a failure of this kind counts towards
// opening the circuit: the failures that cost the host time or memory. A
// malformed answer came back at once, and too_large is decided by the
// message before the plugin runs.
func breakerCounts(kind string) bool {
	return kind == kindTimeout || kind == kindTrap || kind == kindOOM
}

// breaker is one stage's circuit breaker. It is safe for concurrent use; a
// closed circuit costs one atomic load per call, plus one atomic store after
// a failure streak ends.
type breaker struct {
	cfg  BreakerConfig
	name string
	log  *slog.Logger
	now  func() time.Time

	stateGauge prometheus.Gauge
	trips      prometheus.Counter
	rejected   prometheus.Counter

	state atomic.Int32
	fails atomic.Int32 // consecutive counted failures while closed
	// opened is closed when the circuit opens (callers waiting for an
	// instance give up); a new one is made when it closes.
	opened atomic.Pointer[chan struct{}]

	mu      sync.Mutex
	until   time.Time     // end of the open period
	backoff time.Duration // the current open period
	probing bool          // a half-open probe is running
}

func newBreaker(cfg BreakerConfig, name string, log *slog.Logger, m *stageMetrics) *breaker {
	b := &breaker{cfg: cfg.withDefaults(), name: name, log: log, now: time.Now,
		stateGauge: m.breakerState, trips: m.breakerTrips, rejected: m.breakerRejected}
	b.backoff = b.cfg.Backoff
	ch := make(chan struct{})
	b.opened.Store(&ch)
	b.stateGauge.Set(float64(circuitClosed))
	return b
}

// errCircuitOpen is what a call gets while the circuit is open.
func (b *breaker) errOpen() error {
	return fmt.Errorf("plugin %q: circuit open after repeated failures: %w: %w", b.name, engine.ErrPluginFailure, engine.ErrCircuitOpen)
}

// allow reports whether a call may run the plugin, and whether it is the
// half-open probe (whose outcome decides the circuit). A call that may not
// run is counted as rejected.
func (b *breaker) allow() (probe, ok bool) {
	if b.cfg.Disabled || b.state.Load() == circuitClosed {
		return false, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state.Load() {
	case circuitClosed:
		return false, true
	case circuitOpen:
		if b.now().Before(b.until) {
			break
		}
		b.setState(circuitHalfOpen)
		fallthrough
	case circuitHalfOpen:
		if !b.probing {
			b.probing = true
			return true, true
		}
	}
	b.rejected.Inc()
	return false, false
}

// openCh returns a channel that is closed once the circuit opens (nil when
// the breaker is off): a call waiting for an instance stops waiting then.
func (b *breaker) openCh() <-chan struct{} {
	if b.cfg.Disabled {
		return nil
	}
	return *b.opened.Load()
}

// done records the end of a call allowed by allow. ran is false when the
// plugin did not run (no instance in time, the caller gone): nothing is
// learnt then. failed says whether it failed in a way that counts.
func (b *breaker) done(probe, ran, failed bool) {
	if b.cfg.Disabled {
		return
	}
	if !probe {
		if !ran || b.state.Load() != circuitClosed {
			return // results of calls that began before the circuit opened do not count
		}
		if !failed {
			if b.fails.Load() != 0 {
				b.fails.Store(0)
			}
			return
		}
		if n := b.fails.Add(1); int(n) >= b.cfg.Failures {
			b.mu.Lock()
			if b.state.Load() == circuitClosed {
				b.backoff = b.cfg.Backoff
				b.open()
				b.trips.Inc()
				b.log.Warn("plugin circuit opened: its failure policy applies without running it",
					"plugin", b.name, "failures", int(n), "retry_in", b.backoff.String())
			}
			b.mu.Unlock()
		}
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	switch {
	case !ran:
		// The probe did not run: the next call probes.
	case failed:
		b.backoff = min(b.backoff*2, b.cfg.MaxBackoff)
		b.open()
		b.log.Debug("plugin circuit probe failed: open again", "plugin", b.name, "retry_in", b.backoff.String())
	default:
		b.fails.Store(0)
		b.backoff = b.cfg.Backoff
		ch := make(chan struct{})
		b.opened.Store(&ch)
		b.setState(circuitClosed)
		b.log.Info("plugin circuit closed: the plugin runs again", "plugin", b.name)
	}
}

// open opens the circuit for b.backoff; b.mu is held.
func (b *breaker) open() {
	b.until = b.now().Add(b.backoff)
	if b.state.Load() == circuitClosed {
		close(*b.opened.Load())
	}
	b.setState(circuitOpen)
}

func (b *breaker) setState(s int32) {
	b.state.Store(s)
	b.stateGauge.Set(float64(s))
}

// isOpen reports whether calls are being answered without the plugin
// (open, or half-open with its probe).
func (b *breaker) isOpen() bool { return b.state.Load() != circuitClosed }
