// Command goguest is a minimal standard-Go guest of the native ABI
// (sdk/ABI.md), written without the SDK, for host tests and benchmarks.
//
// Built with (from this directory):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -buildvcs=false -ldflags=-buildid= -o goguest.wasm . && mv goguest.wasm ..
//
// Method "echo" answers replace with the message unchanged; "spin" never
// returns (call-timeout must stop it); anything else continues (len 0, the
// cheap path).
package main

import (
	"encoding/binary"
	"unsafe"
)

var (
	in  []byte // the envelope buffer handed to the host
	out []byte // the answer buffer
)

//go:wasmexport sluice_abi_version
func abiVersion() int32 { return 1 }

//go:wasmexport sluice_alloc
func alloc(n int32) int32 {
	if int(n) > cap(in) {
		in = make([]byte, n)
	}
	in = in[:n]
	return int32(uintptr(unsafe.Pointer(unsafe.SliceData(in))))
}

//go:wasmexport sluice_on_request
func onRequest(ptr, n int32) int64 { return handle(n) }

//go:wasmexport sluice_on_response
func onResponse(ptr, n int32) int64 { return handle(n) }

func handle(n int32) int64 {
	env := in[:n]
	o := 12
	var method []byte
	for i := 0; i < 7; i++ {
		l := int(binary.LittleEndian.Uint32(env[o:]))
		if i == 4 {
			method = env[o+4 : o+4+l]
		}
		o += 4 + l
	}
	if string(method) == "spin" {
		spin()
	}
	if string(method) != "echo" {
		return 0
	}
	nh := int(binary.LittleEndian.Uint32(env[o:]))
	o += 4
	for i := 0; i < nh*2; i++ {
		o += 4 + int(binary.LittleEndian.Uint32(env[o:]))
	}
	body := env[o+4 : o+4+int(binary.LittleEndian.Uint32(env[o:]))]
	out = append(out[:0], 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(body)))
	out = append(out, body...)
	p := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(out))))
	return int64(p<<32 | uint64(len(out)))
}

var spins int

//go:noinline
func spin() {
	for {
		spins++
	}
}

func main() {}
