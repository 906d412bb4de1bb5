package host

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// guestModule is the part of a backend both ABIs share: one compiled
// module on the stage's own wazero runtime, instantiated per pooled
// instance. nativeBackend and extismBackend embed it.
type guestModule struct {
	s        *Stage
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	modCfg   wazero.ModuleConfig
	handlers [4]bool // which hooks the module exports a handler for
	eager    instance
	// interruptible: the module was instrumented by instrumentLoops, so calls
	// are bounded by setting its interrupt global, not by wazero's checks.
	interruptible bool
}

// configure sets the configuration instances are made with: no name, and
// no start functions but start. A WASI module gets wasi_snapshot_preview1
// (instantiated here) with random and clocks only: no filesystem, no
// environment, no arguments, output discarded.
func (b *guestModule) configure(ctx context.Context, wasi bool, start ...string) error {
	mc := wazero.NewModuleConfig().WithName("").WithStartFunctions(start...)
	if wasi {
		if _, err := wasi_snapshot_preview1.Instantiate(ctx, b.rt); err != nil {
			return fmt.Errorf("wasi: %w", err)
		}
		mc = mc.WithRandSource(rand.Reader).WithSysWalltime().WithSysNanotime().WithSysNanosleep().
			WithStdout(io.Discard).WithStderr(io.Discard)
	}
	b.modCfg = mc
	return nil
}

func (b *guestModule) takeEager() instance {
	i := b.eager
	b.eager = nil
	return i
}

func (b *guestModule) hasHandler(h engine.Hook) bool { return b.handlers[h] }

func (b *guestModule) close(ctx context.Context) error {
	if b.eager != nil {
		b.eager.close(ctx)
	}
	// Closing the runtime closes every instance, the host modules and the
	// compiled module.
	return b.rt.Close(ctx)
}

// instantiate instantiates the module into g: its memory, the handler
// exports named by names (per hook) and, when the module is interruptible,
// its interrupt timer. On failure nothing is left open.
func (b *guestModule) instantiate(ctx context.Context, g *guestInstance, names [4]string) error {
	mod, err := b.rt.InstantiateModule(b.s.alloc.allocatorFor(ctx, &g.lm), b.compiled, b.modCfg)
	if err != nil {
		return fmt.Errorf("instantiate: %w", firstLine(err))
	}
	g.mod = mod
	g.mem = mod.ExportedMemory(ExportMemory)
	g.handlers = handlerFuncs(mod, b.handlers, names)
	if b.interruptible {
		if g.timer, err = interruptTimer(mod); err != nil {
			_ = mod.Close(ctx)
			return fmt.Errorf("instantiate: %w", err)
		}
	}
	return nil
}

// handlerFuncs looks up the handler export of every hook present has.
func handlerFuncs(mod api.Module, present [4]bool, names [4]string) (fns [4]api.Function) {
	for h := engine.HookRequest; h <= engine.HookHTTPResponse; h++ {
		if present[h] {
			fns[h] = mod.ExportedFunction(names[h])
		}
	}
	return fns
}

// guestInstance is the part of an instance both ABIs share: the module, its
// memory, its handlers and the timer that bounds its calls.
// nativeInstance and extismInstance embed it.
type guestInstance struct {
	mod      api.Module
	mem      api.Memory    // nil if the module exports none (an Extism module may not)
	lm       *linearMemory // mem's backing (nil without one)
	handlers [4]api.Function
	msg      *engine.Message // the message being handled (for log tags)
	// timer sets the module's interrupt global when a call overruns (nil
	// unless the backend is interruptible).
	timer *time.Timer
}

func (g *guestInstance) linear() *linearMemory { return g.lm }

func (g *guestInstance) close(ctx context.Context) {
	if g.timer != nil {
		g.timer.Stop()
	}
	_ = g.mod.Close(ctx)
}

// callBounded runs call, which calls into the guest, bounded by deadline:
// through the interrupt timer when the module is instrumented, else through
// a context deadline on the ctx call is given (wazero's own checks; a
// trusted module has none, and only host functions see the deadline).
//
// timedOut reports that the bound was hit: the timer fired, which sets the
// interrupt, or the deadline had passed when call returned, when wazero may
// be closing the module. Either way the instance is spent even if call
// succeeded, and the call is a timeout.
func (g *guestInstance) callBounded(ctx context.Context, deadline time.Time, call func(context.Context) error) (timedOut bool, err error) {
	if g.timer != nil {
		g.timer.Reset(time.Until(deadline))
		err = call(ctx)
		return !g.timer.Stop(), err
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	err = call(ctx)
	return ctx.Err() != nil, err
}

// faultKind names the failure kind of err, a guest call's error that was
// not its call's own timeout: a timeout when wazero ended the call on its
// context, out-of-memory when the guest's memory is near the limit of pages
// (a guest at the page limit either gets -1 from memory.grow and traps, or,
// like Go, exits), else a trap. A module closed other than by its own exit
// has no memory left to measure.
func (g *guestInstance) faultKind(err error, pages uint32) string {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded, sys.ExitCodeContextCanceled:
			return kindTimeout
		}
	}
	if g.mem != nil && (exit != nil || !g.mod.IsClosed()) && uint64(g.mem.Size()) > uint64(pages)*65536/4*3 {
		return kindOOM
	}
	return kindTrap
}
