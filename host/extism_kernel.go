package host

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// The Extism kernel: the functions of the extism:host/env import module,
// implemented in Go on the stage's wazero runtime (see RATIONALE.md, "The
// Extism ABI without extism go-sdk"). A guest sees Extism "memory" only
// through these functions (alloc, load_*, store_*, input_*, output_*), so it
// lives in a Go slice per instance, not in a second Wasm module: every kernel
// call is one Go function call, with no Wasm-to-Wasm hop and no allocation.

// Names of the extism:host/env functions (the Extism kernel ABI).
const (
	kAlloc          = "alloc"
	kFree           = "free"
	kLength         = "length"
	kLengthUnsafe   = "length_unsafe"
	kLoadU8         = "load_u8"
	kLoadU64        = "load_u64"
	kStoreU8        = "store_u8"
	kStoreU64       = "store_u64"
	kInputLength    = "input_length"
	kInputOffset    = "input_offset"
	kInputLoadU8    = "input_load_u8"
	kInputLoadU64   = "input_load_u64"
	kInputSet       = "input_set"
	kOutputSet      = "output_set"
	kOutputLength   = "output_length"
	kOutputOffset   = "output_offset"
	kErrorSet       = "error_set"
	kErrorGet       = "error_get"
	kReset          = "reset"
	kMemoryBytes    = "memory_bytes"
	kConfigGet      = "config_get"
	kVarGet         = "var_get"
	kVarSet         = "var_set"
	kHTTPRequest    = "http_request"
	kHTTPStatusCode = "http_status_code"
	kHTTPHeaders    = "http_headers"
	kGetLogLevel    = "get_log_level"
	kLogTrace       = "log_trace"
	kLogDebug       = "log_debug"
	kLogInfo        = "log_info"
	kLogWarn        = "log_warn"
	kLogError       = "log_error"
)

// Limits of the kernel.
const (
	// kernelBase is the offset of the first block: offset 0 means "none"
	// in the Extism ABI, so no block may start there.
	kernelBase = 8
	// maxVarBytes bounds one instance's Extism vars (keys + values), as
	// extism go-sdk's default does.
	maxVarBytes = 1 << 20
	// extismLogOff is what get_log_level returns when no level is enabled.
	extismLogOff = math.MaxInt32
)

// errKernelOOM is the trap of an alloc beyond the stage's memory limit.
var errKernelOOM = errors.New("extism memory exceeds the stage's memory-pages limit")

// block is one allocation in kernel memory.
type block struct {
	len, cap uint64
	freed    bool
}

// kernel is one instance's Extism kernel state. It is used by one goroutine
// at a time (the instance's), so it needs no lock.
type kernel struct {
	mem    []byte           // kernel memory; offsets index it directly
	acct   prometheus.Gauge // counts cap(mem) (nil = none)
	top    uint64           // end of the highest block
	limit  uint64           // maximum len(mem)
	blocks map[uint64]block
	free   []uint64 // freed blocks below top, reused first-fit

	inOff, inLen   uint64
	outOff, outLen uint64
	errOff         uint64

	vars     map[string][]byte
	varBytes int

	httpStatus int32
}

// newKernel returns a kernel whose memory may grow to limit bytes; acct
// (nil = none) is kept up to date with the memory it holds.
func newKernel(limit uint64, acct prometheus.Gauge) *kernel {
	k := &kernel{limit: limit, top: kernelBase, blocks: map[uint64]block{}, mem: make([]byte, 0, 4096), acct: acct}
	k.account(cap(k.mem))
	return k
}

func (k *kernel) account(delta int) {
	if k.acct != nil {
		k.acct.Add(float64(delta))
	}
}

// dispose drops the kernel memory (the instance is closed).
func (k *kernel) dispose() {
	k.account(-cap(k.mem))
	k.mem = nil
}

// reset discards every block, the input, the output and the error (vars
// stay): what the host does before each call.
func (k *kernel) reset() {
	k.top = kernelBase
	clear(k.blocks)
	k.free = k.free[:0]
	k.inOff, k.inLen, k.outOff, k.outLen, k.errOff = 0, 0, 0, 0, 0
	k.mem = k.mem[:0]
}

// alloc returns the offset of n fresh bytes, or traps past the limit.
func (k *kernel) alloc(n uint64) uint64 {
	size := max(n, 1) // a block needs an address of its own
	for i, off := range k.free {
		if b := k.blocks[off]; b.cap >= size {
			k.free[i] = k.free[len(k.free)-1]
			k.free = k.free[:len(k.free)-1]
			k.blocks[off] = block{len: n, cap: b.cap}
			clear(k.mem[off : off+n])
			return off
		}
	}
	off := (k.top + 7) &^ 7
	end := off + size
	if end < off || end > k.limit {
		panic(errKernelOOM)
	}
	if end > uint64(cap(k.mem)) {
		nm := make([]byte, end, min(max(end, uint64(cap(k.mem))*2), k.limit))
		copy(nm, k.mem)
		k.account(cap(nm) - cap(k.mem))
		k.mem = nm
	} else {
		k.mem = k.mem[:end]
	}
	clear(k.mem[off:end])
	k.top = end
	k.blocks[off] = block{len: n, cap: size}
	return off
}

// release frees the block at off (unknown offsets are ignored, as the
// kernel does).
func (k *kernel) release(off uint64) {
	b, ok := k.blocks[off]
	if !ok || b.freed {
		return
	}
	if off+b.cap == k.top {
		delete(k.blocks, off)
		k.top = off
		k.mem = k.mem[:off]
		return
	}
	k.blocks[off] = block{cap: b.cap, freed: true}
	k.free = append(k.free, off)
}

// length is the length of the live block at off, 0 if there is none.
func (k *kernel) length(off uint64) uint64 {
	return k.blocks[off].len
}

// bytes returns the live block at off (nil, false if there is none).
func (k *kernel) bytes(off uint64) ([]byte, bool) {
	b, ok := k.blocks[off]
	if !ok || b.freed {
		return nil, false
	}
	return k.mem[off : off+b.len], true
}

// write stores p in a new block and returns its offset.
func (k *kernel) write(p []byte) uint64 {
	off := k.alloc(uint64(len(p)))
	copy(k.mem[off:], p)
	return off
}

// span checks [off, off+n) lies in kernel memory and returns it.
func (k *kernel) span(off, n uint64, fn string) []byte {
	if off < kernelBase || off+n < off || off+n > uint64(len(k.mem)) {
		panic(fmt.Errorf("extism:host/env.%s: offset %d (+%d) out of bounds", fn, off, n))
	}
	return k.mem[off : off+n]
}

// setInput copies in into a fresh block and makes it the call's input.
func (k *kernel) setInput(in []byte) {
	k.inOff = k.write(in)
	k.inLen = uint64(len(in))
}

// output returns the output the guest set (a view into kernel memory).
func (k *kernel) output() []byte {
	if k.outLen == 0 {
		return nil
	}
	if k.outOff+k.outLen < k.outOff || k.outOff+k.outLen > uint64(len(k.mem)) {
		return nil
	}
	return k.mem[k.outOff : k.outOff+k.outLen]
}

// errorMessage returns the error the guest set with error_set, "" if none.
func (k *kernel) errorMessage() string {
	if k.errOff == 0 {
		return ""
	}
	b, _ := k.bytes(k.errOff)
	return string(b)
}

// setVar stores (or with value nil deletes) an Extism var.
func (k *kernel) setVar(name string, value []byte) {
	if old, ok := k.vars[name]; ok {
		k.varBytes -= len(name) + len(old)
		delete(k.vars, name)
	}
	if value == nil {
		return
	}
	if k.varBytes+len(name)+len(value) > maxVarBytes {
		panic(fmt.Errorf("extism:host/env.%s: vars exceed %d bytes", kVarSet, maxVarBytes))
	}
	if k.vars == nil {
		k.vars = map[string][]byte{}
	}
	k.vars[name] = append([]byte(nil), value...)
	k.varBytes += len(name) + len(value)
}

// kernelOf returns the kernel of the instance making the host call.
func kernelOf(ctx context.Context) *kernel {
	i, ok := ctx.Value(instanceKey{}).(*extismInstance)
	if !ok {
		panic(errors.New("extism kernel called outside a plugin call"))
	}
	return i.k
}

// extismEnvSigs are the kernel's function signatures (they must match a
// guest's imports exactly).
var extismEnvSigs = map[string]sig{
	kAlloc:          {[]api.ValueType{i64}, []api.ValueType{i64}},
	kFree:           {[]api.ValueType{i64}, nil},
	kLength:         {[]api.ValueType{i64}, []api.ValueType{i64}},
	kLengthUnsafe:   {[]api.ValueType{i64}, []api.ValueType{i64}},
	kLoadU8:         {[]api.ValueType{i64}, []api.ValueType{i32}},
	kLoadU64:        {[]api.ValueType{i64}, []api.ValueType{i64}},
	kStoreU8:        {[]api.ValueType{i64, i32}, nil},
	kStoreU64:       {[]api.ValueType{i64, i64}, nil},
	kInputLength:    {nil, []api.ValueType{i64}},
	kInputOffset:    {nil, []api.ValueType{i64}},
	kInputLoadU8:    {[]api.ValueType{i64}, []api.ValueType{i32}},
	kInputLoadU64:   {[]api.ValueType{i64}, []api.ValueType{i64}},
	kInputSet:       {[]api.ValueType{i64, i64}, nil},
	kOutputSet:      {[]api.ValueType{i64, i64}, nil},
	kOutputLength:   {nil, []api.ValueType{i64}},
	kOutputOffset:   {nil, []api.ValueType{i64}},
	kErrorSet:       {[]api.ValueType{i64}, nil},
	kErrorGet:       {nil, []api.ValueType{i64}},
	kReset:          {nil, nil},
	kMemoryBytes:    {nil, []api.ValueType{i64}},
	kConfigGet:      {[]api.ValueType{i64}, []api.ValueType{i64}},
	kVarGet:         {[]api.ValueType{i64}, []api.ValueType{i64}},
	kVarSet:         {[]api.ValueType{i64, i64}, nil},
	kHTTPRequest:    {[]api.ValueType{i64, i64}, []api.ValueType{i64}},
	kHTTPStatusCode: {nil, []api.ValueType{i32}},
	kHTTPHeaders:    {nil, []api.ValueType{i64}},
	kGetLogLevel:    {nil, []api.ValueType{i32}},
	kLogTrace:       {[]api.ValueType{i64}, nil},
	kLogDebug:       {[]api.ValueType{i64}, nil},
	kLogInfo:        {[]api.ValueType{i64}, nil},
	kLogWarn:        {[]api.ValueType{i64}, nil},
	kLogError:       {[]api.ValueType{i64}, nil},
}

// extismLogLevels maps the log_* functions to slog levels.
var extismLogLevels = map[string]slog.Level{
	kLogTrace: slog.LevelDebug - 4,
	kLogDebug: slog.LevelDebug,
	kLogInfo:  slog.LevelInfo,
	kLogWarn:  slog.LevelWarn,
	kLogError: slog.LevelError,
}

// instantiateExtismEnv provides the extism:host/env module for stage s in rt.
func instantiateExtismEnv(ctx context.Context, rt wazero.Runtime, s *Stage) error {
	b := rt.NewHostModuleBuilder(ModuleExtismEnv)
	fn := func(name string, f api.GoFunc) {
		sg := extismEnvSigs[name]
		b.NewFunctionBuilder().WithGoFunction(f, sg.params, sg.results).Export(name)
	}
	fn(kAlloc, func(ctx context.Context, st []uint64) { st[0] = kernelOf(ctx).alloc(st[0]) })
	fn(kFree, func(ctx context.Context, st []uint64) { kernelOf(ctx).release(st[0]) })
	fn(kLength, func(ctx context.Context, st []uint64) { st[0] = kernelOf(ctx).length(st[0]) })
	fn(kLengthUnsafe, func(ctx context.Context, st []uint64) { st[0] = kernelOf(ctx).length(st[0]) })
	fn(kLoadU8, func(ctx context.Context, st []uint64) { st[0] = uint64(kernelOf(ctx).span(st[0], 1, kLoadU8)[0]) })
	fn(kLoadU64, func(ctx context.Context, st []uint64) {
		st[0] = binary.LittleEndian.Uint64(kernelOf(ctx).span(st[0], 8, kLoadU64))
	})
	fn(kStoreU8, func(ctx context.Context, st []uint64) { kernelOf(ctx).span(st[0], 1, kStoreU8)[0] = byte(st[1]) })
	fn(kStoreU64, func(ctx context.Context, st []uint64) {
		binary.LittleEndian.PutUint64(kernelOf(ctx).span(st[0], 8, kStoreU64), st[1])
	})
	fn(kInputLength, func(ctx context.Context, st []uint64) { st[0] = kernelOf(ctx).inLen })
	fn(kInputOffset, func(ctx context.Context, st []uint64) { st[0] = kernelOf(ctx).inOff })
	fn(kInputLoadU8, func(ctx context.Context, st []uint64) {
		k := kernelOf(ctx)
		if st[0] >= k.inLen {
			panic(fmt.Errorf("extism:host/env.%s: index %d past the input (%d bytes)", kInputLoadU8, st[0], k.inLen))
		}
		st[0] = uint64(k.mem[k.inOff+st[0]])
	})
	fn(kInputLoadU64, func(ctx context.Context, st []uint64) {
		k := kernelOf(ctx)
		if st[0] > k.inLen || k.inLen-st[0] < 8 {
			panic(fmt.Errorf("extism:host/env.%s: index %d past the input (%d bytes)", kInputLoadU64, st[0], k.inLen))
		}
		st[0] = binary.LittleEndian.Uint64(k.mem[k.inOff+st[0]:])
	})
	fn(kInputSet, func(ctx context.Context, st []uint64) {
		k := kernelOf(ctx)
		k.span(st[0], st[1], kInputSet)
		k.inOff, k.inLen = st[0], st[1]
	})
	fn(kOutputSet, func(ctx context.Context, st []uint64) {
		k := kernelOf(ctx)
		k.span(st[0], st[1], kOutputSet)
		k.outOff, k.outLen = st[0], st[1]
	})
	fn(kOutputLength, func(ctx context.Context, st []uint64) { st[0] = kernelOf(ctx).outLen })
	fn(kOutputOffset, func(ctx context.Context, st []uint64) { st[0] = kernelOf(ctx).outOff })
	fn(kErrorSet, func(ctx context.Context, st []uint64) { kernelOf(ctx).errOff = st[0] })
	fn(kErrorGet, func(ctx context.Context, st []uint64) { st[0] = kernelOf(ctx).errOff })
	fn(kReset, func(ctx context.Context, st []uint64) { kernelOf(ctx).reset() })
	fn(kMemoryBytes, func(ctx context.Context, st []uint64) { st[0] = uint64(len(kernelOf(ctx).mem)) })
	fn(kConfigGet, func(ctx context.Context, st []uint64) {
		k := kernelOf(ctx)
		key, _ := k.bytes(st[0])
		v, ok := s.extismConfig[string(key)]
		if !ok {
			st[0] = 0
			return
		}
		st[0] = k.write([]byte(v))
	})
	fn(kVarGet, func(ctx context.Context, st []uint64) {
		k := kernelOf(ctx)
		key, _ := k.bytes(st[0])
		v, ok := k.vars[string(key)]
		k.release(st[0])
		if !ok {
			st[0] = 0
			return
		}
		st[0] = k.write(v)
	})
	fn(kVarSet, func(ctx context.Context, st []uint64) {
		k := kernelOf(ctx)
		key, _ := k.bytes(st[0])
		name := string(key)
		k.release(st[0])
		if st[1] == 0 {
			k.setVar(name, nil)
			return
		}
		v, _ := k.bytes(st[1])
		k.setVar(name, append([]byte{}, v...))
		k.release(st[1])
	})
	fn(kHTTPRequest, func(ctx context.Context, st []uint64) {
		i := ctx.Value(instanceKey{}).(*extismInstance)
		st[0] = i.httpRequest(ctx, st[0], st[1])
	})
	fn(kHTTPStatusCode, func(ctx context.Context, st []uint64) { st[0] = uint64(uint32(kernelOf(ctx).httpStatus)) })
	fn(kHTTPHeaders, func(ctx context.Context, st []uint64) { st[0] = 0 }) // response headers are not exposed
	fn(kGetLogLevel, func(ctx context.Context, st []uint64) {
		lv := int32(extismLogOff)
		for i, name := range []string{kLogTrace, kLogDebug, kLogInfo, kLogWarn, kLogError} {
			if s.log.Enabled(ctx, extismLogLevels[name]) {
				lv = int32(i)
				break
			}
		}
		st[0] = uint64(uint32(lv))
	})
	for _, name := range []string{kLogTrace, kLogDebug, kLogInfo, kLogWarn, kLogError} {
		level := extismLogLevels[name]
		fn(name, func(ctx context.Context, st []uint64) {
			i := ctx.Value(instanceKey{}).(*extismInstance)
			msg, _ := i.k.bytes(st[0])
			if s.log.Enabled(ctx, level) {
				if len(msg) > maxLogLine {
					msg = msg[:maxLogLine]
				}
				s.logGuest(level, string(msg), i.msg)
			}
			i.k.release(st[0])
		})
	}
	_, err := b.Instantiate(ctx)
	return err
}
