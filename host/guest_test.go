package host

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicemcp/sluice/engine"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// interruptFlag stands in for an instrumented module's interrupt global: a
// stopped timer whose firing closes set, as interruptTimer's sets the flag.
func interruptFlag() (*time.Timer, chan struct{}) {
	set := make(chan struct{})
	t := time.AfterFunc(time.Hour, func() { close(set) })
	t.Stop()
	return t, set
}

// TestCallBounded: a guest call is a timeout exactly when its bound was
// hit, through the interrupt timer or through the context deadline, even if
// the call itself then returned without error; otherwise call's own error
// comes back as it is.
func TestCallBounded(t *testing.T) {
	errGuest := errors.New("guest trapped")
	t.Run("timer/in time", func(t *testing.T) {
		timer, set := interruptFlag()
		g := &guestInstance{timer: timer}
		timedOut, err := g.callBounded(context.Background(), time.Now().Add(time.Hour), func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); ok {
				t.Error("an interruptible call got a context deadline (wazero's checks are off)")
			}
			return errGuest
		})
		if timedOut || err != errGuest {
			t.Fatalf("timedOut = %v, err = %v; want false, %v", timedOut, err, errGuest)
		}
		select {
		case <-set:
			t.Fatal("the interrupt was set by a call that returned in time")
		default:
		}
	})
	t.Run("timer/fired", func(t *testing.T) {
		timer, set := interruptFlag()
		g := &guestInstance{timer: timer}
		timedOut, err := g.callBounded(context.Background(), time.Now(), func(context.Context) error {
			<-set // the guest finishes only once the interrupt is set
			return nil
		})
		if !timedOut || err != nil {
			t.Fatalf("timedOut = %v, err = %v; want true, nil (the instance is spent)", timedOut, err)
		}
	})
	t.Run("deadline/in time", func(t *testing.T) {
		g := &guestInstance{}
		deadline := time.Now().Add(time.Hour)
		timedOut, err := g.callBounded(context.Background(), deadline, func(ctx context.Context) error {
			if d, ok := ctx.Deadline(); !ok || !d.Equal(deadline) {
				t.Errorf("ctx deadline = %v, %v; want %v", d, ok, deadline)
			}
			return errGuest
		})
		if timedOut || err != errGuest {
			t.Fatalf("timedOut = %v, err = %v; want false, %v", timedOut, err, errGuest)
		}
	})
	t.Run("deadline/passed", func(t *testing.T) {
		g := &guestInstance{}
		timedOut, err := g.callBounded(context.Background(), time.Now().Add(time.Millisecond), func(ctx context.Context) error {
			<-ctx.Done() // a trusted guest that runs on past its deadline
			return nil
		})
		if !timedOut || err != nil {
			t.Fatalf("timedOut = %v, err = %v; want true, nil", timedOut, err)
		}
	})
}

// sizedMemory is a guest memory of a given size (only Size is used).
type sizedMemory struct {
	api.Memory
	size uint32
}

func (m sizedMemory) Size() uint32 { return m.size }

// closableModule is a module that is closed or not (only IsClosed is used).
type closableModule struct {
	api.Module
	closed bool
}

func (m closableModule) IsClosed() bool { return m.closed }

// TestFaultKind: the failure kinds both ABIs give a guest call's error.
func TestFaultKind(t *testing.T) {
	const pages = 16
	full := sizedMemory{size: pages*65536/4*3 + 1}
	small := sizedMemory{size: 65536}
	trap := errors.New("wasm error: unreachable")
	tests := []struct {
		name   string
		err    error
		mem    api.Memory
		closed bool
		want   string
	}{
		{"deadline exit", sys.NewExitError(sys.ExitCodeDeadlineExceeded), full, true, kindTimeout},
		{"cancel exit", sys.NewExitError(sys.ExitCodeContextCanceled), small, true, kindTimeout},
		{"trap near the limit", trap, full, false, kindOOM},
		{"trap", trap, small, false, kindTrap},
		{"exit near the limit (Go out of memory)", sys.NewExitError(2), full, true, kindOOM},
		{"exit", sys.NewExitError(2), small, true, kindTrap},
		{"closed module, not its own exit", trap, full, true, kindTrap},
		{"no memory", trap, nil, false, kindTrap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &guestInstance{mod: closableModule{closed: tt.closed}, mem: tt.mem}
			if got := g.faultKind(tt.err, pages); got != tt.want {
				t.Fatalf("faultKind = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDeadlineTimeoutMessage: a module the instrumenter refuses is stopped
// by wazero's checks, and its timeout reads as the interrupt's does, naming
// the handler and the call-timeout (the two ABIs share callBounded).
func TestDeadlineTimeoutMessage(t *testing.T) {
	r := newTestRuntime(t, prometheus.NewRegistry(), nil)
	s := load(t, r, PluginConfig{Name: "pre", Path: preInstrumented(t), CallTimeout: 100 * time.Millisecond, PoolSize: 1})
	const want = "sluice_on_request: did not return within call-timeout 100ms"
	if _, err := handle(t, s, request("loop")); !errors.Is(err, engine.ErrPluginFailure) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want a plugin failure containing %q", err, want)
	}
}
