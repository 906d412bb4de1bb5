// Package abi reads and writes the little-endian encodings of the plugin
// ABI (sdk/ABI.md) that package sdk and package sdk/binding share: u32
// and string (u32 length, then that many bytes).
package abi

import (
	"encoding/binary"
	"unsafe"
)

// AppendString appends s as an ABI string.
func AppendString(dst []byte, s string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// Reader reads ABI encodings from B at Off. The first error sticks: Err
// is set and every later read returns the zero value.
type Reader struct {
	B   []byte
	Off int
	Err bool
}

// U32 reads a u32.
func (r *Reader) U32() uint32 {
	if r.Err || len(r.B)-r.Off < 4 {
		r.Err = true
		return 0
	}
	v := binary.LittleEndian.Uint32(r.B[r.Off:])
	r.Off += 4
	return v
}

// Bytes reads a string as a view into B (its capacity clipped).
func (r *Reader) Bytes() []byte {
	n := r.U32()
	if r.Err || uint64(n) > uint64(len(r.B)-r.Off) {
		r.Err = true
		return nil
	}
	s := r.B[r.Off : r.Off+int(n) : r.Off+int(n)]
	r.Off += int(n)
	return s
}

// Str reads a string as a view into B, without copying: B must not change
// while the string is in use.
func (r *Reader) Str() string {
	s := r.Bytes()
	if len(s) == 0 {
		return ""
	}
	return unsafe.String(&s[0], len(s))
}
