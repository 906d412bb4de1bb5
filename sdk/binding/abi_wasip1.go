//go:build wasip1

package binding

import (
	"unsafe"

	"github.com/sluicemcp/sluice/sdk/internal/hostapi"
)

//go:wasmimport sluice emit
func importEmit(ptr unsafe.Pointer, n int32) int32

//go:wasmimport sluice http_request
func importHTTPRequest(req unsafe.Pointer, n int32, out unsafe.Pointer, capacity int32) int32

//go:wasmimport sluice process
func importProcess(name unsafe.Pointer, nameLen int32, in unsafe.Pointer, inLen int32, out unsafe.Pointer, capacity int32) int32

//go:wasmimport sluice result
func importResult(ptr unsafe.Pointer, capacity int32) int32

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// wasmIO calls the binding imports. out is the reusable result buffer: a
// result that fits is written there by the host call itself, a larger one is
// fetched with result.
type wasmIO struct{ out []byte }

func (w *wasmIO) message() string {
	n := importResult(nil, 0)
	if n <= 0 {
		return ""
	}
	b := make([]byte, n)
	importResult(ptr(b), n)
	return string(b)
}

func (w *wasmIO) Emit(msg []byte) (int32, string) {
	if n := importEmit(ptr(msg), int32(len(msg))); n < 0 {
		return n, w.message()
	}
	return 0, ""
}

// call runs one host call that delivers a result into [out, out+cap).
func (w *wasmIO) call(f func(out unsafe.Pointer, capacity int32) int32) ([]byte, int32, string) {
	if cap(w.out) == 0 {
		w.out = make([]byte, 64<<10)
	}
	buf := w.out[:cap(w.out)]
	n := f(ptr(buf), int32(len(buf)))
	if n < 0 {
		return nil, n, w.message()
	}
	if int(n) > len(buf) {
		buf = make([]byte, n)
		importResult(ptr(buf), n)
		if n <= 4<<20 { // keep a bigger buffer, within reason
			w.out = buf
		}
	}
	return buf[:n], 0, ""
}

func (w *wasmIO) HTTP(req []byte) ([]byte, int32, string) {
	return w.call(func(out unsafe.Pointer, c int32) int32 {
		return importHTTPRequest(ptr(req), int32(len(req)), out, c)
	})
}

func (w *wasmIO) Process(name string, input []byte) ([]byte, int32, string) {
	nb := []byte(name)
	return w.call(func(out unsafe.Pointer, c int32) int32 {
		return importProcess(ptr(nb), int32(len(nb)), ptr(input), int32(len(input)), out, c)
	})
}

func init() { hostapi.SetIO(&wasmIO{}) }

// callEnvelope is the envelope the host wrote at (p, n): in the buffer
// sdk's sluice_alloc handed out, which the host fills right before the call.
func callEnvelope(p, n int32) []byte {
	if p <= 0 || n < 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), uintptr(p))), n)
}

//go:wasmexport sluice_on_call
func exportOnCall(p, n int32) uint64 {
	if registered == nil {
		return 0 // no binding registered: no answer (a failure the host reports)
	}
	ans := registered.handle(callEnvelope(p, n))
	if len(ans) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(&ans[0])))<<32 | uint64(len(ans))
}
