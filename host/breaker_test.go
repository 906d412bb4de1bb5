package host

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/enginetest"
)

// fakeClock is a settable clock for breakers.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestBreakerTransitions walks a breaker through every transition with a
// fake clock: failures below the threshold and a success that resets the
// streak, opening, rejecting while open, one probe at a time when
// half-open, a failed probe doubling the open period up to its cap, and a
// good probe closing it. Opening and closing are logged once each.
func TestBreakerTransitions(t *testing.T) {
	var logs enginetest.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	m := newMetrics(nil).forStage("brk")
	b := newBreaker(BreakerConfig{Failures: 3, Backoff: time.Second, MaxBackoff: 3 * time.Second}, "brk", log, m)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	b.now = clk.now

	call := func(failed bool) {
		t.Helper()
		probe, ok := b.allow()
		if !ok {
			t.Fatal("call refused while the circuit should let it run")
		}
		b.done(probe, true, failed)
	}
	refused := func() {
		t.Helper()
		if _, ok := b.allow(); ok {
			t.Fatal("call allowed while the circuit should be open")
		}
	}
	wantState := func(s int32) {
		t.Helper()
		if got := b.state.Load(); got != s {
			t.Fatalf("state %d, want %d", got, s)
		}
		if got := metricValue(m.breakerState); got != float64(s) {
			t.Fatalf("state gauge %v, want %d", got, s)
		}
	}

	call(true)
	call(true)
	call(false) // a success ends the streak
	call(true)
	call(true)
	wantState(circuitClosed)
	opened := b.openCh()
	select {
	case <-opened:
		t.Fatal("open channel closed while the circuit is closed")
	default:
	}
	call(true) // third in a row
	wantState(circuitOpen)
	select {
	case <-opened:
	default:
		t.Fatal("open channel not closed when the circuit opened")
	}
	if !b.isOpen() || metricValue(m.breakerTrips) != 1 {
		t.Fatalf("open %v trips %v", b.isOpen(), metricValue(m.breakerTrips))
	}
	refused()
	refused()
	if got := metricValue(m.breakerRejected); got != 2 {
		t.Fatalf("rejected %v, want 2", got)
	}
	// A call that began before the circuit opened and ends now changes nothing.
	b.done(false, true, false)
	wantState(circuitOpen)

	// Half-open after the back-off: one probe, the others refused.
	for _, backoff := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second} {
		clk.advance(backoff - time.Millisecond)
		refused()
		clk.advance(time.Millisecond)
		probe, ok := b.allow()
		if !ok || !probe {
			t.Fatalf("after %s: probe %v ok %v, want a probe", backoff, probe, ok)
		}
		wantState(circuitHalfOpen)
		refused() // one probe at a time
		b.done(true, true, true)
		wantState(circuitOpen) // open again, for twice as long (capped)
	}
	// A probe that did not run (its caller left) decides nothing.
	clk.advance(3 * time.Second)
	probe, ok := b.allow()
	if !probe || !ok {
		t.Fatal("no probe")
	}
	b.done(true, false, false)
	wantState(circuitHalfOpen)
	probe, ok = b.allow()
	if !probe || !ok {
		t.Fatal("the next call is not the probe")
	}
	b.done(true, true, false)
	wantState(circuitClosed)
	if b.openCh() == opened {
		t.Fatal("closing did not renew the open channel")
	}
	// Closed again with a fresh streak and the first back-off.
	call(true)
	call(true)
	wantState(circuitClosed)
	call(true)
	wantState(circuitOpen)
	clk.advance(time.Second)
	if probe, ok := b.allow(); !probe || !ok {
		t.Fatal("back-off not reset to its first value after closing")
	}

	out := logs.String()
	if n := strings.Count(out, "plugin circuit opened"); n != 2 {
		t.Errorf("%d 'opened' lines, want 2 (one per closed→open):\n%s", n, out)
	}
	if n := strings.Count(out, "plugin circuit closed"); n != 1 {
		t.Errorf("%d 'closed' lines, want 1:\n%s", n, out)
	}
}

// TestBreakerDisabled: a disabled breaker never refuses.
func TestBreakerDisabled(t *testing.T) {
	b := newBreaker(BreakerConfig{Failures: 1, Disabled: true}, "off", slog.New(slog.DiscardHandler), newMetrics(nil).forStage("off"))
	for range 10 {
		probe, ok := b.allow()
		if !ok {
			t.Fatal("disabled breaker refused a call")
		}
		b.done(probe, true, true)
	}
	if b.isOpen() || b.openCh() != nil {
		t.Fatal("disabled breaker opened")
	}
}

// TestBreakerStage: a plugin that loops until its call timeout opens its
// stage's circuit after Failures timeouts; then calls fail at once with
// ErrCircuitOpen without running the plugin (no new instance, no new
// timeout), a chain applies the stage's policy (fail_open passes the
// message) and lists the stage as open; once the back-off has passed a
// probe that succeeds closes the circuit.
func TestBreakerStage(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	s := load(t, r, PluginConfig{Name: "loop", Path: fixture("loop.wasm"), CallTimeout: 30 * time.Millisecond,
		OnError: engine.FailOpen, Breaker: BreakerConfig{Failures: 3, Backoff: time.Hour}})
	clk := &fakeClock{t: time.Now()}
	s.brk.now = clk.now
	c := engine.NewChain([]engine.ChainStage{s.ChainStage()}, engine.ChainOptions{})
	for i := range 3 {
		if _, err := handle(t, s, request("tools/call")); !errors.Is(err, engine.ErrPluginFailure) || errors.Is(err, engine.ErrCircuitOpen) {
			t.Fatalf("call %d: %v, want a timeout", i, err)
		}
	}
	if !s.CircuitOpen() || strings.Join(c.OpenCircuits(), ",") != "loop" {
		t.Fatalf("circuit open %v, chain lists %v", s.CircuitOpen(), c.OpenCircuits())
	}
	created := countInstances(s)
	for range 20 {
		_, err := handle(t, s, request("tools/call"))
		if !errors.Is(err, engine.ErrCircuitOpen) || !errors.Is(err, engine.ErrPluginFailure) {
			t.Fatalf("call with the circuit open: %v", err)
		}
	}
	x := c.Begin()
	out := x.Request(context.Background(), request("tools/call"))
	x.Close()
	if out.Action != engine.Continue || !strings.Contains(string(out.Body), "tools/call") {
		t.Fatalf("fail_open stage with an open circuit: %v %s", out.Action, out.Body)
	}
	if got := metricValue(r.metrics.failures.WithLabelValues("loop", kindTimeout)); got != 3 {
		t.Fatalf("timeouts %v, want 3: the plugin ran while its circuit was open", got)
	}
	if created.Load() != 0 {
		t.Fatalf("%d instances created while the circuit was open", created.Load())
	}
	if got := metricValue(r.metrics.brkReject.WithLabelValues("loop")); got != 21 {
		t.Fatalf("rejected %v, want 21", got)
	}
	clk.advance(time.Hour)
	if _, err := handle(t, s, request("ping")); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if s.CircuitOpen() || c.OpenCircuits() != nil {
		t.Fatal("a good probe did not close the circuit")
	}
}

// TestBreakerWakesWaiters: calls waiting for an instance of a pool that
// looping calls hold give up as soon as the circuit opens, instead of each
// waiting for a slot and running the plugin again.
func TestBreakerWakesWaiters(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	s := load(t, r, PluginConfig{Name: "loop1", Path: fixture("loop.wasm"), CallTimeout: 200 * time.Millisecond,
		PoolSize: 1, Breaker: BreakerConfig{Failures: 1, Backoff: time.Hour}})
	const n = 6
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := handle(t, s, request("tools/call"))
			errs <- err
		}()
	}
	var timeouts, open int
	for range n {
		err := <-errs
		switch {
		case errors.Is(err, engine.ErrCircuitOpen):
			open++
		case errors.Is(err, engine.ErrPluginFailure):
			timeouts++
		default:
			t.Fatalf("unexpected %v", err)
		}
	}
	if timeouts != 1 || open != n-1 {
		t.Fatalf("%d timeouts and %d circuit-open failures, want 1 and %d", timeouts, open, n-1)
	}
}
