package host

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicemcp/sluice/engine"
	"github.com/tetratelabs/wazero"
)

// countLoops counts the loop instructions in a module's code section.
func countLoops(t *testing.T, bin []byte) (loops int) {
	t.Helper()
	secs, err := splitSections(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs {
		if s.id != secCode {
			continue
		}
		// Instrumenting with an empty check copies the code, visiting each
		// loop once: count the visits.
		r := reader{b: s.body}
		for n := r.u32(); n > 0; n-- {
			f := r.bytes(int(r.u32()))
			mark := []byte{0xff, 0xfe, 0xfd, 0xfc}
			out, err := instrumentFunc(nil, f, mark)
			if err != nil {
				t.Fatal(err)
			}
			loops += (len(out) - len(f)) / len(mark)
		}
	}
	return loops
}

func codeSize(t *testing.T, bin []byte) int {
	secs, err := splitSections(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs {
		if s.id == secCode {
			return len(s.body)
		}
	}
	t.Fatal("no code section")
	return 0
}

// TestInstrumentLoopsModules instruments every committed module (WAT, C and Go
// guests, the first-party plugins): each result validates and compiles, has
// one check per loop, and exports the interrupt global.
func TestInstrumentLoopsModules(t *testing.T) {
	mods, _ := filepath.Glob("testdata/*.wasm")
	plugins, _ := filepath.Glob("../plugins/*/*.wasm")
	mods = append(mods, plugins...)
	if len(plugins) == 0 {
		t.Fatal("no first-party plugin modules found")
	}
	ctx := context.Background()
	for _, path := range mods {
		t.Run(filepath.Base(path), func(t *testing.T) {
			bin, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			out, err := instrumentLoops(bin)
			if err != nil {
				t.Fatalf("instrument: %v", err)
			}
			loops := countLoops(t, bin)
			check := len(appendU32([]byte{0x23}, 0)) + 4 // at least this long per loop
			if in, got := codeSize(t, bin), codeSize(t, out); got < in+loops*check {
				t.Fatalf("code section of %d bytes from %d with %d loops: checks missing", got, in, loops)
			}
			if strings.Contains(path, "goguest") && loops < 500 {
				t.Fatalf("a Go guest with only %d loops?", loops)
			}
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
			defer rt.Close(ctx)
			if _, err := rt.CompileModule(ctx, bin); err != nil {
				// Every committed module compiles (the broken ones are broken
				// in their ABI, not as Wasm): otherwise this test checks nothing.
				t.Fatalf("the module itself does not compile: %v", err)
			}
			if _, err := rt.CompileModule(ctx, out); err != nil {
				t.Fatalf("instrumented module does not compile: %v", err)
			}
			// Instrumenting twice is refused (the export name is taken).
			if _, err := instrumentLoops(out); !errors.Is(err, errUninstrumentable) {
				t.Fatalf("second instrumentation: %v", err)
			}
		})
	}
}

// TestInstrumentLoopsAddsSections covers a module with no global and no
// export section: both are created, in order.
func TestInstrumentLoopsAddsSections(t *testing.T) {
	// (module (func (loop (br 0)))): type, function, code sections only.
	bin := []byte{0, 'a', 's', 'm', 1, 0, 0, 0,
		1, 4, 1, 0x60, 0, 0, // type: [] -> []
		3, 2, 1, 0, // function 0: type 0
		5, 3, 1, 0, 1, // memory: one, min 1 page
		10, 9, 1, 7, 0, 0x03, 0x40, 0x0c, 0, 0x0b, 0x0b, // code: loop br 0 end end
	}
	out, err := instrumentLoops(bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	c, err := rt.CompileModule(ctx, out)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	mod, err := rt.InstantiateModule(ctx, c, wazero.NewModuleConfig())
	if err != nil {
		t.Fatal(err)
	}
	if mod.ExportedGlobal(ExportInterrupt) == nil {
		t.Fatal("no interrupt global exported")
	}
}

func TestInstrumentLoopsRefuses(t *testing.T) {
	for name, bin := range map[string][]byte{
		"not wasm":  []byte("hello world"),
		"truncated": {0, 'a', 's', 'm', 1, 0, 0, 0, 10, 9, 1},
		"try":       {0, 'a', 's', 'm', 1, 0, 0, 0, 10, 7, 1, 5, 0, 0x06, 0x40, 0x0b, 0x0b}, // exceptions
	} {
		if _, err := instrumentLoops(bin); !errors.Is(err, errUninstrumentable) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// TestInterruptGoGuest: a standard-Go guest spinning in a loop is stopped at
// call-timeout, the failure is a timeout, and the stage goes on serving.
func TestInterruptGoGuest(t *testing.T) {
	s := spinStopped(t, "goguest.wasm", 200*time.Millisecond, "did not return within call-timeout 200ms")
	if !s.backend.(*nativeBackend).interruptible {
		t.Fatal("the Go guest was not instrumented")
	}
}

// TestInterruptFallback: a module the instrumenter refuses (here one that
// already exports the interrupt global) still has its loops stopped, by
// wazero's own checks.
func TestInterruptFallback(t *testing.T) {
	r := newTestRuntime(t, prometheus.NewRegistry(), nil)
	s := load(t, r, PluginConfig{Name: "pre", Path: preInstrumented(t), CallTimeout: 100 * time.Millisecond, PoolSize: 1})
	if s.backend.(*nativeBackend).interruptible {
		t.Fatal("a pre-instrumented module was instrumented again")
	}
	if _, err := handle(t, s, request("loop")); !errors.Is(err, engine.ErrPluginFailure) {
		t.Fatalf("err = %v, want a plugin failure", err)
	}
	if got := metricValue(r.metrics.failures.WithLabelValues("pre", kindTimeout)); got != 1 {
		t.Fatalf("timeouts = %v", got)
	}
}

// preInstrumented writes bad.wasm already instrumented, a module the
// instrumenter refuses (it exports the interrupt global), and returns its
// path.
func preInstrumented(t *testing.T) string {
	t.Helper()
	bin, err := os.ReadFile(fixture("bad.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	pre, err := instrumentLoops(bin)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pre.wasm")
	if err := os.WriteFile(path, pre, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// FuzzInstrumentLoops: any input either is refused or yields a module that
// compiles whenever the input does.
func FuzzInstrumentLoops(f *testing.F) {
	for _, name := range []string{"good.wasm", "bad.wasm", "busy.wasm"} {
		bin, err := os.ReadFile(fixture(name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(bin)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, bin []byte) {
		out, err := instrumentLoops(bin)
		if err != nil {
			if !errors.Is(err, errUninstrumentable) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if _, err := rt.CompileModule(ctx, bin); err != nil {
			return
		}
		if _, err := rt.CompileModule(ctx, out); err != nil {
			t.Fatalf("input compiles, instrumented output does not: %v", err)
		}
		if bytes.Equal(out, bin) {
			t.Fatal("output equals input")
		}
	})
}

// TestSpinningGuestLetsGCRun: Go cannot preempt compiled Wasm, so a guest in
// a loop must come back into Go now and then, or a garbage collection that
// starts meanwhile waits for it, and every other goroutine with it (the
// timer that would interrupt it included): the process hangs. Here a GC
// runs to completion while a standard-Go guest spins.
func TestSpinningGuestLetsGCRun(t *testing.T) {
	r, err := NewRuntime(context.Background(), RuntimeOptions{CacheDir: sharedCacheDir(t), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	s := load(t, r, PluginConfig{Name: "gcspin", Path: fixture("goguest.wasm"), CallTimeout: time.Second, PoolSize: 1})
	done := make(chan error, 1)
	go func() {
		_, err := handle(t, s, request("spin"))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // into the loop
	gc := make(chan struct{})
	go func() {
		runtime.GC()
		close(gc)
	}()
	select {
	case <-gc:
	case err := <-done:
		t.Fatalf("the call ended (%v) before the collection did", err)
	}
	if err := <-done; !errors.Is(err, engine.ErrPluginFailure) {
		t.Fatalf("spin: %v, want a timeout", err)
	}
}
