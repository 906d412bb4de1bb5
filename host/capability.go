package host

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// hostFunc is one import of module sluice that a capability file
// (hostfunc_*.go) provides. fn runs on the calling guest's goroutine with the
// stage that imported it.
type hostFunc struct {
	name string
	sig  sig
	fn   func(ctx context.Context, s *Stage, mod api.Module, st []uint64)
}

// capabilityFuncs are the imports registered by the capability files, in
// registration order; instantiateHostModule provides them to every native
// module. Each is gated by the stage's binding config at call time.
var capabilityFuncs []hostFunc

// registerHostFunc adds f to the sluice host module (from init).
func registerHostFunc(f hostFunc) {
	hostImports[f.name] = f.sig
	capabilityFuncs = append(capabilityFuncs, f)
}

func init() {
	registerHostFunc(hostFunc{name: ImportResult, sig: sig{[]api.ValueType{i32, i32}, []api.ValueType{i32}}, fn: hostResult})
}

// hostResult copies the pending result of the instance's last host call (a
// response, an output, or an error message) to [ptr, ptr+cap) when it fits,
// and returns its length; -1 when there is none.
func hostResult(ctx context.Context, _ *Stage, mod api.Module, st []uint64) {
	c := callOf(ctx)
	if c == nil || !c.hasResult {
		st[0] = uint64(uint32(0xffffffff))
		return
	}
	ptr, capacity := uint32(st[0]), uint32(st[1])
	if len(c.result) > 0 && uint64(len(c.result)) <= uint64(capacity) {
		copy(guestBytes(mod, ptr, uint32(len(c.result)), ImportResult), c.result)
	}
	st[0] = uint64(uint32(len(c.result)))
}

// bindingIO is what a binding plugin may reach beyond its own memory: the
// HTTP origins and the commands of its config, and the log it reports
// refusals to. One per loaded binding stage; nil for chain stages.
type bindingIO struct {
	plugin string
	log    *slog.Logger
	http   *httpAccess // nil: http_request is denied
	procs  map[string]*commandRunner

	refusedMu sync.Mutex
	refused   map[string]bool // what was refused and logged once (origins, command names)
}

// refuse logs the first refusal of what (an origin or a command name) at
// warn, later ones not at all: a guest that loops over a forbidden host
// must not flood the log.
func (io *bindingIO) refuse(kind, what string) {
	io.refusedMu.Lock()
	first := !io.refused[kind+" "+what]
	if first {
		if io.refused == nil {
			io.refused = map[string]bool{}
		}
		io.refused[kind+" "+what] = true
	}
	io.refusedMu.Unlock()
	if first {
		io.log.Warn("binding plugin asked for a "+kind+" its config does not allow (logged once)", "plugin", io.plugin, kind, what)
	}
}

// close stops the binding's supervised processes.
func (io *bindingIO) close() {
	for _, p := range io.procs {
		p.close()
	}
}

// bindingCall is the state of the binding call an instance is running: the
// notification sink, the pending result of the last host call, and the
// guest's compute budget, which does not run while the guest waits on host
// I/O. One per instance, reused call after call.
type bindingCall struct {
	i    *nativeInstance
	ctx  context.Context
	emit func(body []byte) error // nil outside a binding call
	id   []byte                  // the request's raw JSON-RPC id

	result    []byte // the pending result (owned by the call; reused)
	hasResult bool
	buf       []byte // reusable encoding buffer for results

	emitted   int   // notifications streamed so far
	violation error // a protocol breach seen during the call (an emitted response)

	budget   time.Duration // the guest's compute budget (call-timeout)
	used     time.Duration
	resumed  time.Time
	timedOut bool // the interrupt fired while paused
}

// callOf returns the binding call running on the instance of ctx, or nil
// (a chain stage's call, or instantiation).
func callOf(ctx context.Context) *bindingCall {
	i, _ := ctx.Value(instanceKey{}).(*nativeInstance)
	if i == nil || i.bc == nil || i.bc.emit == nil {
		return nil
	}
	return i.bc
}

// deliver makes res the pending result and copies it to [out, out+cap) when
// it fits; the guest gets its length either way and reads a larger one with
// result.
func (c *bindingCall) deliver(mod api.Module, res []byte, out, capacity uint32, what string) uint64 {
	c.result, c.hasResult = res, true
	if len(res) > 0 && uint64(len(res)) <= uint64(capacity) {
		copy(guestBytes(mod, out, uint32(len(res)), what), res)
	}
	return uint64(uint32(len(res)))
}

// hostErr is code as an i32 result.
func hostErr(code int32) uint64 { return uint64(uint32(code)) }

// fail makes msg the pending result and returns code (a HostErr* value) for
// the guest.
func (c *bindingCall) fail(code int32, msg string) uint64 {
	c.result = append(c.result[:0], msg...)
	c.hasResult = true
	return hostErr(code)
}

// pause stops the compute budget while the guest waits on host I/O. The
// timer may have fired just before: then the interrupt flag is set and the
// guest traps when it resumes.
func (c *bindingCall) pause() {
	t := c.i.timer
	if t == nil || c.timedOut {
		return
	}
	if !t.Stop() {
		c.timedOut = true
		return
	}
	c.used += time.Since(c.resumed)
}

// resume restarts the compute budget with what is left of it.
func (c *bindingCall) resume() {
	t := c.i.timer
	if t == nil || c.timedOut {
		return
	}
	left := c.budget - c.used
	if left < 0 || c.ctx.Err() != nil {
		left = 0
	}
	c.resumed = time.Now()
	t.Reset(left)
}
