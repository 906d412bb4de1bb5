package host

import (
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// ExportInterrupt is the mutable i32 global that instrumentLoops adds to a
// module and exports. The host sets it to 1 when a call's deadline passes;
// the guest then traps within yieldEvery loop iterations.
const ExportInterrupt = "sluice_interrupt"

// errUninstrumentable means the module uses something the instruction walker
// does not know; the caller falls back to wazero's own termination checks.
var errUninstrumentable = errors.New("module not instrumentable")

// yieldEvery is how many loop iterations (anywhere in the module) pass
// between two trips of the guest through Go.
const yieldEvery = 1 << 14

// instrumentLoops returns a copy of the Wasm binary bin in which every loop
// body begins with
//
//	global.get $n  i32.const 1  i32.sub  global.set $n     ;; one more iteration
//	global.get $n  i32.const 0  i32.le_s
//	if                                                   ;; every yieldEvery iterations:
//	  i32.const 0  memory.grow 0  drop                   ;;   a trip through Go
//	  global.get $sluice_interrupt  if  unreachable  end ;;   trap if interrupted
//	  i32.const yieldEvery  global.set $n
//	end
//
// and which defines $n and $sluice_interrupt (mutable i32 globals) and exports
// the latter. The host sets it when a call's deadline passes.
//
// This is how CallTimeout stops a guest stuck in a loop, and how the rest of
// the process keeps running meanwhile. Go cannot preempt a goroutine that is
// executing compiled Wasm, so a guest that never leaves it would hold up
// every stop-the-world of the garbage collector (and with it every other
// goroutine, the timer that would interrupt it included): the guest must
// come back into Go now and then. memory.grow by 0 pages is such a trip in
// wazero, with no effect. wazero's own mechanism
// (RuntimeConfig.WithCloseOnContextDone) makes that trip on every loop
// iteration; a standard-Go guest, whose functions are loops, then runs 4–5×
// slower. The counter costs about 10% (RATIONALE.md). Function entries
// need no check: recursion without a loop ends in a stack-overflow trap.
//
// Function and global indices do not shift: the globals are appended after
// every existing one. Any error leaves bin to be compiled as it is.
func instrumentLoops(bin []byte) ([]byte, error) {
	secs, err := splitSections(bin)
	if err != nil {
		return nil, err
	}
	var importedGlobals, definedGlobals, memories uint32
	var codeIdx, globalIdx, exportIdx = -1, -1, -1
	for k, s := range secs {
		switch s.id {
		case secImport:
			if err := walkImports(s.body, func(_, _ string, kind byte) {
				switch kind {
				case 0x02:
					memories++
				case 0x03:
					importedGlobals++
				}
			}); err != nil {
				return nil, err
			}
		case secMemory:
			r := reader{b: s.body}
			memories += r.u32()
			if r.err != nil {
				return nil, r.err
			}
		case secGlobal:
			globalIdx = k
			r := reader{b: s.body}
			definedGlobals = r.u32()
			if r.err != nil {
				return nil, r.err
			}
		case secExport:
			exportIdx = k
			if err := checkExportName(s.body, ExportInterrupt); err != nil {
				return nil, err
			}
		case secCode:
			codeIdx = k
		}
	}
	if codeIdx < 0 {
		return nil, fmt.Errorf("%w: no code section", errUninstrumentable)
	}
	if memories == 0 {
		return nil, fmt.Errorf("%w: no memory to grow", errUninstrumentable)
	}
	flag := importedGlobals + definedGlobals // the new globals' indices
	count := flag + 1

	code, err := instrumentCode(secs[codeIdx].body, loopCheck(flag, count))
	if err != nil {
		return nil, err
	}
	secs[codeIdx].body = code

	// (global (mut i32) (i32.const 0)) (global (mut i32) (i32.const yieldEvery))
	newGlobals := [][]byte{{0x7f, 0x01, 0x41, 0x00, 0x0b}, append(appendS32([]byte{0x7f, 0x01, 0x41}, yieldEvery), 0x0b)}
	if globalIdx >= 0 {
		for _, g := range newGlobals {
			secs[globalIdx].body = appendToVec(secs[globalIdx].body, g)
		}
	} else {
		body := []byte{byte(len(newGlobals))}
		for _, g := range newGlobals {
			body = append(body, g...)
		}
		secs = insertSection(secs, section{id: secGlobal, body: body})
	}
	// The export: "sluice_interrupt" global flag.
	exp := appendName(nil, ExportInterrupt)
	exp = append(exp, 0x03)
	exp = appendU32(exp, flag)
	if exportIdx >= 0 {
		for k := range secs { // indices may have shifted with an inserted section
			if secs[k].id == secExport {
				secs[k].body = appendToVec(secs[k].body, exp)
			}
		}
	} else {
		secs = insertSection(secs, section{id: secExport, body: append([]byte{1}, exp...)})
	}

	out := make([]byte, 0, len(bin)+len(bin)/8+64)
	out = append(out, bin[:8]...)
	for _, s := range secs {
		out = append(out, s.id)
		out = appendU32(out, uint32(len(s.body)))
		out = append(out, s.body...)
	}
	return out, nil
}

// loopCheck is the code put at the top of every loop body (see
// instrumentLoops) for the flag and counter globals.
func loopCheck(flag, count uint32) []byte {
	get := func(b []byte, g uint32) []byte { return appendU32(append(b, 0x23), g) }
	set := func(b []byte, g uint32) []byte { return appendU32(append(b, 0x24), g) }
	c := get(nil, count)
	c = append(c, 0x41, 0x01, 0x6b) // i32.const 1, i32.sub
	c = set(c, count)
	c = get(c, count)
	c = append(c, 0x41, 0x00, 0x4c)             // i32.const 0, i32.le_s
	c = append(c, 0x04, 0x40)                   // if
	c = append(c, 0x41, 0x00, 0x40, 0x00, 0x1a) //   i32.const 0, memory.grow 0, drop
	c = get(c, flag)
	c = append(c, 0x04, 0x40, 0x00, 0x0b) //   if unreachable end
	c = appendS32(append(c, 0x41), yieldEvery)
	c = set(c, count)
	return append(c, 0x0b) // end
}

func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// Section ids.
const (
	secCustom    = 0
	secImport    = 2
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secCode      = 10
	secDataCount = 12
	secTag       = 13
)

// sectionRank is the order sections must appear in (custom sections go
// anywhere; tag sits between memory and global).
func sectionRank(id byte) int {
	switch id {
	case secTag:
		return 55
	case secDataCount:
		return 95
	}
	return int(id) * 10
}

type section struct {
	id   byte
	body []byte
}

func splitSections(bin []byte) ([]section, error) {
	if len(bin) < 8 || string(bin[:4]) != "\x00asm" || string(bin[4:8]) != "\x01\x00\x00\x00" {
		return nil, fmt.Errorf("%w: not a Wasm 1.0 binary", errUninstrumentable)
	}
	r := reader{b: bin, i: 8}
	var secs []section
	for r.i < len(r.b) && r.err == nil {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			break
		}
		if id > secTag {
			return nil, fmt.Errorf("%w: unknown section %d", errUninstrumentable, id)
		}
		secs = append(secs, section{id: id, body: body})
	}
	return secs, r.err
}

// insertSection puts s before the first non-custom section that must follow it.
func insertSection(secs []section, s section) []section {
	at := len(secs)
	for k, x := range secs {
		if x.id != secCustom && sectionRank(x.id) > sectionRank(s.id) {
			at = k
			break
		}
	}
	return append(secs[:at], append([]section{s}, secs[at:]...)...)
}

// appendToVec returns vec (a LEB count followed by items) with item appended.
func appendToVec(vec, item []byte) []byte {
	r := reader{b: vec}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(vec)+len(item)+5), n+1)
	out = append(out, vec[r.i:]...)
	return append(out, item...)
}

func appendName(b []byte, s string) []byte { return append(appendU32(b, uint32(len(s))), s...) }

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// walkImports calls fn for each import in an import section body.
func walkImports(body []byte, fn func(module, name string, kind byte)) error {
	r := reader{b: body}
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		module, name := r.name(), r.name()
		kind := r.byte()
		switch kind {
		case 0x00: // func: type index
			r.u32()
		case 0x01: // table: reftype, limits
			r.byte()
			r.limits()
		case 0x02: // memory: limits
			r.limits()
		case 0x03: // global: valtype, mutability
			r.byte()
			r.byte()
		case 0x04: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			return fmt.Errorf("%w: import kind %d", errUninstrumentable, kind)
		}
		if r.err == nil {
			fn(module, name, kind)
		}
	}
	return r.err
}

func checkExportName(body []byte, want string) error {
	r := reader{b: body}
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		if r.name() == want {
			return fmt.Errorf("%w: already exports %s", errUninstrumentable, want)
		}
		r.byte()
		r.u32()
	}
	return r.err
}

// instrumentCode rewrites the code section body, putting check at the top
// of every loop body.
func instrumentCode(body []byte, check []byte) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(body)+len(body)/8), n)
	var fn []byte
	for ; n > 0 && r.err == nil; n-- {
		size := r.u32()
		f := r.bytes(int(size))
		if r.err != nil {
			break
		}
		var err error
		if fn, err = instrumentFunc(fn[:0], f, check); err != nil {
			return nil, err
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	if r.err == nil && r.i != len(r.b) {
		r.err = fmt.Errorf("%w: trailing bytes in the code section", errUninstrumentable)
	}
	return out, r.err
}

// instrumentFunc appends the body f (locals, then instructions) to out with
// check inserted after every loop's block type.
func instrumentFunc(out, f, check []byte) ([]byte, error) {
	r := reader{b: f}
	for n := r.u32(); n > 0 && r.err == nil; n-- { // local declarations
		r.u32()
		r.byte()
	}
	last := 0 // f[last:r.i] is not yet copied
	for r.i < len(f) && r.err == nil {
		op := r.byte()
		switch {
		case op == 0x03: // loop bt
			r.blockType()
			out = append(out, f[last:r.i]...)
			out = append(out, check...)
			last = r.i
		case op == 0x02 || op == 0x04: // block, if: bt
			r.blockType()
		case op == 0x0c || op == 0x0d: // br, br_if: label
			r.u32()
		case op == 0x0e: // br_table: vec(label) label
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				r.u32()
			}
			r.u32()
		case op == 0x10 || op == 0x12: // call, return_call: func
			r.u32()
		case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect: type, table
			r.u32()
			r.u32()
		case op == 0x1c: // select t*: vec(valtype)
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				r.byte()
			}
		case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set: index
			r.u32()
		case op >= 0x28 && op <= 0x3e: // loads and stores: memarg
			r.memarg()
		case op == 0x3f || op == 0x40: // memory.size, memory.grow: memory index
			r.u32()
		case op == 0x41: // i32.const
			r.sleb()
		case op == 0x42: // i64.const
			r.sleb()
		case op == 0x43: // f32.const
			r.bytes(4)
		case op == 0x44: // f64.const
			r.bytes(8)
		case op == 0xd0: // ref.null t
			r.byte()
		case op == 0xd2: // ref.func f
			r.u32()
		case op == 0xfc:
			r.prefixFC()
		case op == 0xfd:
			r.prefixFD()
		case op == 0xfe:
			r.prefixFE()
		case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || // unreachable nop else end return
			op == 0x1a || op == 0x1b || // drop select
			op >= 0x45 && op <= 0xc4 || // numeric
			op == 0xd1: // ref.is_null
		default: // exceptions, GC, and anything newer
			return nil, fmt.Errorf("%w: opcode 0x%02x", errUninstrumentable, op)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return append(out, f[last:]...), nil
}

// reader decodes the Wasm binary format; the first error sticks.
type reader struct {
	b   []byte
	i   int
	err error
}

var errTruncated = fmt.Errorf("%w: truncated", errUninstrumentable)

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.i >= len(r.b) {
		r.err = errTruncated
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.i {
		r.err = errTruncated
		return nil
	}
	s := r.b[r.i : r.i+n]
	r.i += n
	return s
}

// leb skips an LEB128 number of at most max bytes, returning its low 32 bits.
func (r *reader) leb(max int) uint32 {
	var v uint32
	for k := 0; k < max; k++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if k < 5 {
			v |= uint32(c&0x7f) << (7 * k)
		}
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = fmt.Errorf("%w: LEB128 too long", errUninstrumentable)
	return 0
}

func (r *reader) u32() uint32 { return r.leb(5) }
func (r *reader) sleb()       { r.leb(10) }

func (r *reader) name() string { return string(r.bytes(int(r.u32()))) }

func (r *reader) limits() {
	flags := r.byte()
	r.leb(10)
	if flags&1 != 0 {
		r.leb(10)
	}
}

// blockType: 0x40, a value type (one byte each), or an s33 type index.
func (r *reader) blockType() { r.leb(5) }

func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.leb(10) // offset (u64 for memory64)
}

func (r *reader) prefixFC() {
	switch sub := r.u32(); {
	case sub <= 7: // saturating truncations
	case sub == 8: // memory.init data mem
		r.u32()
		r.u32()
	case sub == 9 || sub == 13: // data.drop, elem.drop
		r.u32()
	case sub == 10 || sub == 12 || sub == 14: // memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	case sub == 11 || sub >= 15 && sub <= 17: // memory.fill, table.grow/size/fill
		r.u32()
	default:
		r.fail("0xfc", sub)
	}
}

func (r *reader) prefixFD() {
	switch sub := r.u32(); {
	case sub <= 11 || sub == 92 || sub == 93: // loads, stores: memarg
		r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle: 16 bytes
		r.bytes(16)
	case sub >= 21 && sub <= 34: // extract/replace lane: lane
		r.byte()
	case sub >= 84 && sub <= 91: // load/store lane: memarg, lane
		r.memarg()
		r.byte()
	case sub <= 0x113: // everything else, relaxed SIMD included, has no immediate
	default:
		r.fail("0xfd", sub)
	}
}

func (r *reader) prefixFE() {
	switch sub := r.u32(); {
	case sub == 3: // atomic.fence: a zero byte
		r.byte()
	case sub <= 2 || sub >= 0x10 && sub <= 0x4e:
		r.memarg()
	default:
		r.fail("0xfe", sub)
	}
}

func (r *reader) fail(prefix string, sub uint32) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: opcode %s %d", errUninstrumentable, prefix, sub)
	}
}

// interruptTimer returns a stopped timer that, once reset and fired, sets
// the interrupt global of mod (an instance of an instrumented module), so
// the guest traps at its next loop check.
func interruptTimer(mod api.Module) (*time.Timer, error) {
	g, ok := mod.ExportedGlobal(ExportInterrupt).(api.MutableGlobal)
	if !ok {
		return nil, fmt.Errorf("no %s global", ExportInterrupt)
	}
	t := time.AfterFunc(time.Hour, func() { g.Set(1) })
	t.Stop()
	return t, nil
}
