package host

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/enginetest"
)

// TestPoolBudget: how max-memory and pool-size turn into a pool size.
func TestPoolBudget(t *testing.T) {
	const mib = 1 << 20
	procs := runtime.GOMAXPROCS(0)
	tests := []struct {
		name       string
		cfg        PluginConfig
		limit      uint64
		wantBudget uint64
		wantSize   int
		wantErr    string
	}{
		{"default, 64 MiB instances", PluginConfig{}, 64 * mib, max(DefaultMaxMemory, uint64(2*procs)*64*mib), max(4, 2*procs), ""},
		{"default, small instances fill 256 MiB", PluginConfig{}, 8 * mib, max(DefaultMaxMemory, uint64(2*procs)*8*mib), max(32, 2*procs), ""},
		{"tiny instances are capped", PluginConfig{}, 64 << 10, DefaultMaxMemory, MaxPoolSize, ""},
		{"pool-size sets the default budget", PluginConfig{PoolSize: 10}, 64 * mib, 640 * mib, 10, ""},
		{"pool-size caps the count", PluginConfig{PoolSize: 3}, mib, DefaultMaxMemory, 3, ""},
		{"max-memory", PluginConfig{MaxMemory: 100 * mib}, 32 * mib, 100 * mib, 3, ""},
		{"max-memory and pool-size", PluginConfig{MaxMemory: 100 * mib, PoolSize: 2}, 32 * mib, 100 * mib, 2, ""},
		{"max-memory below one instance", PluginConfig{MaxMemory: 10 * mib}, 32 * mib, 0, 0, "less than one instance's memory limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			budget, size, err := tt.cfg.poolBudget(tt.limit)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || budget != tt.wantBudget || size != tt.wantSize {
				t.Fatalf("budget %d size %d err %v; want %d %d", budget, size, err, tt.wantBudget, tt.wantSize)
			}
		})
	}
}

// TestMaxMemoryBelowInstanceIsLoadError: a budget that cannot hold one
// instance is refused at load, naming both figures.
func TestMaxMemoryBelowInstanceIsLoadError(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	_, err := r.Load(context.Background(), PluginConfig{Name: "small", Path: fixture("good.wasm"), MemoryPages: 64, MaxMemory: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "max-memory 1048576 is less than one instance's memory limit 4194304") {
		t.Fatalf("err = %v", err)
	}
}

// TestPoolGrowsWithLoopingGuest: a guest that loops until its call timeout
// holds its instance that long; other calls still get instances of their
// own while the memory budget allows, so 16 concurrent calls run at once
// (the pool used to stop at 2×GOMAXPROCS and queue the rest).
func TestPoolGrowsWithLoopingGuest(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newTestRuntime(t, reg, nil)
	s := load(t, r, PluginConfig{Name: "loop", Path: fixture("loop.wasm"), CallTimeout: 2 * time.Second,
		Breaker: BreakerConfig{Disabled: true}})
	if s.pool.size() < 16 {
		t.Fatalf("pool of %d for 128 KiB instances in a %d-byte budget", s.pool.size(), s.MaxMemory())
	}
	const n = 16
	var wg sync.WaitGroup
	var timeouts atomic.Int32
	for range n {
		wg.Go(func() {
			_, err := handle(t, s, request("tools/call"))
			if errors.Is(err, engine.ErrPluginFailure) && strings.Contains(err.Error(), kindTimeout) {
				timeouts.Add(1)
			}
		})
	}
	live := r.metrics.instances.WithLabelValues("loop")
	enginetest.WaitFor(t, "16 instances looping at once", func() bool { return metricValue(live) == n })
	wg.Wait()
	if timeouts.Load() != n {
		t.Fatalf("%d timeouts, want %d", timeouts.Load(), n)
	}
}

// TestMemoryBudgetRespected: with max-memory for four instances, sixteen
// concurrent calls of a looping guest never have more than four instances
// live; the others wait for one, and every call still ends (in its
// timeout) with the memory of each discarded instance given back.
func TestMemoryBudgetRespected(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newTestRuntime(t, reg, nil)
	s := load(t, r, PluginConfig{Name: "loop4", Path: fixture("loop.wasm"), CallTimeout: 50 * time.Millisecond,
		MaxMemory: 4 * 2 * 65536, Breaker: BreakerConfig{Disabled: true}})
	if s.pool.size() != 4 {
		t.Fatalf("pool size %d, want 4", s.pool.size())
	}
	live := r.metrics.instances.WithLabelValues("loop4")
	mem := r.metrics.memory.WithLabelValues("loop4")
	var peak, peakMem atomic.Int64
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			peak.Store(max(peak.Load(), int64(metricValue(live))))
			peakMem.Store(max(peakMem.Load(), int64(metricValue(mem))))
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	created := countInstances(s)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 16 {
		wg.Go(func() {
			if _, err := handle(t, s, request("tools/call")); errors.Is(err, engine.ErrPluginFailure) {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	close(stop)
	<-watched
	if failed.Load() != 16 || created.Load() < 15 { // the first call may take the eager instance
		t.Fatalf("%d failed, %d created; want 16 timeouts, each on an instance of its own", failed.Load(), created.Load())
	}
	if peak.Load() > 4 || peakMem.Load() > 4*2*65536 {
		t.Fatalf("peak %d instances, %d bytes: over the budget of 4 instances", peak.Load(), peakMem.Load())
	}
	// Every discarded instance gave its memory back: what is left is the
	// memory of the live ones.
	if got, want := metricValue(mem), metricValue(live)*2*65536; got != want {
		t.Fatalf("memory gauge %v with %v live instances, want %v", got, metricValue(live), want)
	}
	if got := metricValue(r.metrics.memLimit.WithLabelValues("loop4")); got != 4*2*65536 {
		t.Fatalf("memory limit gauge %v", got)
	}
}

// TestGrowingGuestMemoryReleased: a guest that grows until it runs out of
// memory is discarded with its memory released at once: the memory gauge
// goes back to what the live instances hold, and the discarded instance's
// reservation is gone (unmapped), not left to the garbage collector.
func TestGrowingGuestMemoryReleased(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newTestRuntime(t, reg, nil)
	s := load(t, r, PluginConfig{Name: "grow", Path: fixture("grow.wasm"), MemoryPages: 64, PoolSize: 1,
		Breaker: BreakerConfig{Disabled: true}})
	mem := r.metrics.memory.WithLabelValues("grow")
	base := metricValue(mem)
	if base != 2*65536 {
		t.Fatalf("memory of the eager instance %v, want 2 pages", base)
	}
	p, err := s.pool.get(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lm := p.inst.linear()
	s.pool.put(p, false)
	for i := range 5 {
		_, err := handle(t, s, request("tools/call"))
		if !errors.Is(err, engine.ErrPluginFailure) || !strings.Contains(err.Error(), kindOOM) {
			t.Fatalf("call %d: %v, want an oom failure", i, err)
		}
		if got := metricValue(mem); got != 0 {
			t.Fatalf("call %d: memory gauge %v after the instance was discarded, want 0", i, got)
		}
	}
	lm.mu.Lock()
	gone, buf := lm.gone, lm.buf
	lm.mu.Unlock()
	if !gone || buf != nil {
		t.Fatal("the discarded instance's memory was not released")
	}
	// Stepwise growth: one MiB per call, the instance kept until it is
	// above half its limit, then recycled before it can fail.
	for i := range 40 {
		if _, err := handle(t, s, request("step")); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if got := metricValue(mem); got > 64*65536/2+1<<20 {
		t.Fatalf("memory gauge %v: an instance above half its limit was kept", got)
	}
}

// TestLinearMemoryDeferredFree: Free while a call uses the memory (a stage
// closed after its drain timeout, under a running guest) only marks it; the
// memory is released when the call leaves.
func TestLinearMemoryDeferredFree(t *testing.T) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	a := &memAllocator{used: g}
	m := &linearMemory{a: a, max: 1 << 20}
	if b := m.Reallocate(65536); len(b) != 65536 {
		t.Fatalf("len %d", len(b))
	}
	b := m.Reallocate(3 * 65536)
	b[len(b)-1] = 1 // writable
	if m.Reallocate(2<<20) != nil {
		t.Fatal("grew past max")
	}
	if metricValue(g) != 3*65536 {
		t.Fatalf("gauge %v", metricValue(g))
	}
	m.enter()
	m.Free()
	if m.gone || metricValue(g) == 0 {
		t.Fatal("memory released under a running call")
	}
	b[0] = 2 // still mapped
	m.leave()
	if !m.gone || metricValue(g) != 0 {
		t.Fatal("memory not released when the call left")
	}
	if m.Reallocate(65536) != nil {
		t.Fatal("grew after release")
	}
}

// TestCloseStageUnderRunningGuest: closing a stage (its wazero runtime, and
// with it every module) while a guest is still looping must not pull its
// memory from under it: the call ends in its timeout and the memory is
// released then.
func TestCloseStageUnderRunningGuest(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newTestRuntime(t, reg, nil)
	s, err := r.Load(context.Background(), PluginConfig{Name: "closing", Path: fixture("grow.wasm"), MemoryPages: 4096,
		CallTimeout: 300 * time.Millisecond, Breaker: BreakerConfig{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	mem := r.metrics.memory.WithLabelValues("closing")
	done := make(chan error, 1)
	go func() {
		f, _ := s.Open(context.Background())
		_, err := f.Handle(context.Background(), request("tools/call")) // grows 1 MiB at a time, writing
		done <- err
	}()
	enginetest.WaitFor(t, "the guest to grow", func() bool { return metricValue(mem) > 8<<20 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, engine.ErrPluginFailure) {
		t.Fatalf("call on a closed stage: %v", err)
	}
	enginetest.WaitFor(t, "the memory to be released", func() bool { return metricValue(mem) == 0 })
}
