package host

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// nativeBackend runs native-ABI modules on one wazero runtime per stage.
type nativeBackend struct {
	guestModule
	hasInit   bool
	hasOnCall bool // exports sluice_on_call (a binding plugin)
}

type sig struct{ params, results []api.ValueType }

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64

	sigABIVersion = sig{nil, []api.ValueType{i32}}
	sigAlloc      = sig{[]api.ValueType{i32}, []api.ValueType{i32}}
	sigDescribe   = sig{nil, []api.ValueType{i64}}
	sigHandler    = sig{[]api.ValueType{i32, i32}, []api.ValueType{i64}}
	sigInit       = sig{nil, nil}

	hostImports = map[string]sig{
		ImportLog:      {[]api.ValueType{i32, i32, i32}, nil},
		ImportConfig:   {[]api.ValueType{i32, i32}, []api.ValueType{i32}},
		ImportKVGet:    {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}},
		ImportKVSet:    {[]api.ValueType{i32, i32, i32, i32}, nil},
		ImportKVDelete: {[]api.ValueType{i32, i32}, nil},
	}
)

var nativeHandlers = [4]string{"", ExportOnRequest, ExportOnResponse, ExportOnHTTPResponse}

func (s sig) String() string {
	f := func(l []api.ValueType) string {
		n := make([]string, len(l))
		for i, t := range l {
			n[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(n, ", ") + ")"
	}
	return f(s.params) + " -> " + f(s.results)
}

func sigOf(d api.FunctionDefinition) sig { return sig{d.ParamTypes(), d.ResultTypes()} }

func (s sig) equal(o sig) bool {
	if len(s.params) != len(o.params) || len(s.results) != len(o.results) {
		return false
	}
	for i := range s.params {
		if s.params[i] != o.params[i] {
			return false
		}
	}
	for i := range s.results {
		if s.results[i] != o.results[i] {
			return false
		}
	}
	return true
}

func checkExport(exports map[string]api.FunctionDefinition, name string, want sig, required bool) (bool, error) {
	d, ok := exports[name]
	if !ok {
		if required {
			return false, fmt.Errorf("missing export %s", name)
		}
		return false, nil
	}
	if got := sigOf(d); !got.equal(want) {
		return false, fmt.Errorf("export %s has signature %s, want %s", name, got, want)
	}
	return true, nil
}

func newNativeBackend(ctx context.Context, s *Stage, rt wazero.Runtime, c wazero.CompiledModule, interruptible bool) (*nativeBackend, *description, error) {
	exports := c.ExportedFunctions()
	if _, ok := exports[ExportABIVersion]; !ok {
		return nil, nil, fmt.Errorf("missing export %s (not a native-ABI module, and no %s import for the Extism ABI)", ExportABIVersion, ModuleExtismEnv)
	}
	wasi, err := checkImports(c, false)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := c.ExportedMemories()[ExportMemory]; !ok {
		return nil, nil, fmt.Errorf("missing export %s", ExportMemory)
	}
	b := &nativeBackend{guestModule: guestModule{s: s, rt: rt, compiled: c, interruptible: interruptible}}
	for _, e := range []struct {
		name string
		sig  sig
	}{{ExportABIVersion, sigABIVersion}, {ExportAlloc, sigAlloc}} {
		if _, err := checkExport(exports, e.name, e.sig, true); err != nil {
			return nil, nil, err
		}
	}
	hasDescribe, err := checkExport(exports, ExportDescribe, sigDescribe, false)
	if err != nil {
		return nil, nil, err
	}
	hasInit, err := checkExport(exports, ExportInitialize, sigInit, false)
	if err != nil {
		return nil, nil, err
	}
	for h := engine.HookRequest; h <= engine.HookHTTPResponse; h++ {
		ok, err := checkExport(exports, nativeHandlers[h], sigHandler, false)
		if err != nil {
			return nil, nil, err
		}
		b.handlers[h] = ok
	}
	if b.hasOnCall, err = checkExport(exports, ExportOnCall, sigHandler, false); err != nil {
		return nil, nil, err
	}

	if err := instantiateHostModule(ctx, rt, s); err != nil {
		return nil, nil, fmt.Errorf("host module: %w", err)
	}
	b.hasInit = hasInit
	var start []string
	if hasInit && !interruptible { // else newInstance calls it, under a deadline
		start = []string{ExportInitialize}
	}
	if err := b.configure(ctx, wasi, start...); err != nil {
		return nil, nil, err
	}

	inst, err := b.newInstance(ctx)
	if err != nil {
		return nil, nil, err
	}
	ni := inst.(*nativeInstance)
	st := ni.stack[:1]
	if err := ni.callExport(ctx, ExportABIVersion, s.cfg.CallTimeout*10, st); err != nil {
		ni.close(ctx)
		return nil, nil, err
	}
	if v := int32(st[0]); v != NativeABIVersion {
		ni.close(ctx)
		return nil, nil, fmt.Errorf("unsupported ABI version %d", v)
	}
	var desc *description
	if hasDescribe {
		if err := ni.callExport(ctx, ExportDescribe, s.cfg.CallTimeout*10, st); err != nil {
			ni.close(ctx)
			return nil, nil, err
		}
		ptr, n := uint32(st[0]>>32), uint32(st[0])
		raw, ok := ni.mem.Read(ptr, n)
		if !ok {
			ni.close(ctx)
			return nil, nil, fmt.Errorf("%s: answer out of bounds", ExportDescribe)
		}
		if desc, err = parseDescription(raw); err != nil {
			ni.close(ctx)
			return nil, nil, err
		}
	}
	b.eager = ni
	return b, desc, nil
}

func (b *nativeBackend) newInstance(ctx context.Context) (instance, error) {
	ctx, cancel := context.WithTimeout(ctx, instantiateTimeout)
	defer cancel()
	i := &nativeInstance{b: b}
	if err := b.instantiate(ctx, &i.guestInstance, nativeHandlers); err != nil {
		return nil, err
	}
	i.alloc = i.mod.ExportedFunction(ExportAlloc)
	if b.hasOnCall {
		i.onCall = i.mod.ExportedFunction(ExportOnCall)
	}
	if b.interruptible && b.hasInit {
		if err := i.callExport(ctx, ExportInitialize, instantiateTimeout, nil); err != nil {
			i.close(ctx)
			return nil, fmt.Errorf("instantiate: %w", err)
		}
	}
	return i, nil
}

// callExport calls the export name with stack st, bounded by d
// (callBounded).
func (i *nativeInstance) callExport(ctx context.Context, name string, d time.Duration, st []uint64) error {
	fn := i.mod.ExportedFunction(name)
	timedOut, err := i.callBounded(ctx, time.Now().Add(d), func(ctx context.Context) error {
		return fn.CallWithStack(ctx, st)
	})
	if timedOut {
		return fmt.Errorf("%s: did not return within %s", name, d)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, firstLine(err))
	}
	return nil
}

// instanceLimit is the most memory one instance can hold: the page limit,
// or the module's own declared maximum when that is lower.
func (b *nativeBackend) instanceLimit() uint64 {
	return memoryLimit(b.compiled, b.s.cfg.MemoryPages)
}

// memoryLimit is the byte limit of c's exported memory under a limit of
// pages: the smaller of pages and the maximum the module declares.
func memoryLimit(c wazero.CompiledModule, pages uint32) uint64 {
	if m, ok := c.ExportedMemories()[ExportMemory]; ok {
		if mx, declared := m.Max(); declared && mx < pages {
			pages = mx
		}
	}
	return uint64(pages) * 65536
}

func (b *nativeBackend) handlerName(h engine.Hook) string { return nativeHandlers[h] }

// nativeInstance is one instantiated native-ABI module.
type nativeInstance struct {
	guestInstance
	b      *nativeBackend
	alloc  api.Function
	onCall api.Function // sluice_on_call (binding plugins)
	bc     *bindingCall // the binding call running, with its host-call state
	stack  [2]uint64
}

type instanceKey struct{}

func (i *nativeInstance) memSize() uint64 { return uint64(i.mem.Size()) }

func (i *nativeInstance) call(ctx context.Context, m *engine.Message) (engine.Result, string, error) {
	s := i.b.s
	fn := i.handlers[m.Hook]
	if fn == nil {
		return engine.Result{}, kindMalformed, fmt.Errorf("no handler for hook %s", m.Hook)
	}
	size := envelopeSize(m)
	if size > uint64(s.cfg.MaxMessageSize)+envelopeSlack {
		return engine.Result{}, kindTooLarge, fmt.Errorf("envelope of %d bytes exceeds max-message-size", size)
	}
	var (
		r    engine.Result
		kind string
	)
	timedOut, err := i.callBounded(context.WithValue(ctx, instanceKey{}, i), time.Now().Add(s.cfg.CallTimeout), func(ctx context.Context) (err error) {
		r, kind, err = i.callGuest(ctx, m, size)
		return err
	})
	if timedOut {
		return engine.Result{}, kindTimeout, fmt.Errorf("%s: did not return within call-timeout %s", nativeHandlers[m.Hook], s.cfg.CallTimeout)
	}
	return r, kind, err
}

// callGuest hands m to the guest: alloc, envelope, handler, answer.
func (i *nativeInstance) callGuest(ctx context.Context, m *engine.Message, size uint64) (engine.Result, string, error) {
	fn := i.handlers[m.Hook]
	i.msg = m
	defer func() { i.msg = nil }()

	ptr, kind, err := i.putEnvelope(ctx, m, size)
	if err != nil {
		return engine.Result{}, kind, err
	}
	st := i.stack[:]
	st[0], st[1] = uint64(ptr), size
	if err := fn.CallWithStack(ctx, st); err != nil {
		return engine.Result{}, i.classify(ctx, err), fmt.Errorf("%s: %w", nativeHandlers[m.Hook], firstLine(err))
	}
	ans, err := i.answer(st[0])
	if err != nil {
		return engine.Result{}, kindMalformed, err
	}
	if ans == nil {
		return engine.Result{}, "", nil // continue: the cheap path
	}
	r, err := decodeAnswer(ans, m)
	if err != nil {
		return engine.Result{}, kindMalformed, err
	}
	return r, "", nil
}

// putEnvelope has the guest allocate size bytes (sluice_alloc) and writes
// m's envelope there, straight into guest memory; it returns the pointer.
func (i *nativeInstance) putEnvelope(ctx context.Context, m *engine.Message, size uint64) (uint32, string, error) {
	st := i.stack[:1]
	st[0] = size
	if err := i.alloc.CallWithStack(ctx, st); err != nil {
		return 0, i.classify(ctx, err), fmt.Errorf("%s: %w", ExportAlloc, firstLine(err))
	}
	ptr := uint32(st[0])
	if ptr == 0 {
		return 0, kindOOM, fmt.Errorf("%s(%d) returned 0", ExportAlloc, size)
	}
	buf, ok := i.mem.Read(ptr, uint32(size))
	if !ok {
		return 0, kindMalformed, fmt.Errorf("%s(%d) returned %d, out of bounds", ExportAlloc, size, ptr)
	}
	encodeEnvelope(buf, m)
	return ptr, "", nil
}

// answer returns the guest memory a handler's ptr<<32|len result points at
// (a view, valid until the next call into the instance); nil for len 0.
func (i *nativeInstance) answer(ret uint64) ([]byte, error) {
	n := uint32(ret)
	if n == 0 {
		return nil, nil
	}
	if n > uint32(i.b.s.cfg.MaxMessageSize)+envelopeSlack {
		return nil, fmt.Errorf("answer of %d bytes exceeds max-message-size", n)
	}
	ans, ok := i.mem.Read(uint32(ret>>32), n)
	if !ok {
		return nil, fmt.Errorf("answer [%d, +%d) out of bounds of memory (%d bytes)", ret>>32, n, i.mem.Size())
	}
	return ans, nil
}

// classify names the failure kind of a guest call error: a timeout when
// the call's context has ended, else faultKind.
func (i *nativeInstance) classify(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return kindTimeout
	}
	return i.faultKind(err, i.b.s.cfg.MemoryPages)
}

// lineError keeps the first line of a wazero error (which appends a
// multi-line wasm stack trace) and still unwraps to it.
type lineError struct{ err error }

func (e lineError) Error() string {
	s := e.err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func (e lineError) Unwrap() error { return e.err }

func firstLine(err error) error { return lineError{err} }
