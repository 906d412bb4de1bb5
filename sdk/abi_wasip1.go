//go:build wasip1

package sdk

import (
	"unsafe"

	"github.com/sluicemcp/sluice/sdk/internal/hostapi"
)

//go:wasmimport sluice log
func importLog(level int32, ptr unsafe.Pointer, n int32)

//go:wasmimport sluice config
func importConfig(ptr unsafe.Pointer, capacity int32) int32

//go:wasmimport sluice kv_get
func importKVGet(kptr unsafe.Pointer, klen int32, vptr unsafe.Pointer, vcap int32) int32

//go:wasmimport sluice kv_set
func importKVSet(kptr unsafe.Pointer, klen int32, vptr unsafe.Pointer, vlen int32)

//go:wasmimport sluice kv_delete
func importKVDelete(kptr unsafe.Pointer, klen int32)

// wasmHost calls the sluice imports.
type wasmHost struct{ kv []byte }

func strPtr(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func (*wasmHost) Log(level int, msg string) {
	importLog(int32(level), strPtr(msg), int32(len(msg)))
}

func (*wasmHost) Config() []byte {
	buf := make([]byte, 4096)
	for range 4 {
		n := importConfig(bytesPtr(buf), int32(len(buf)))
		if n <= 0 {
			return nil
		}
		if int(n) <= len(buf) {
			return buf[:n:n]
		}
		buf = make([]byte, n)
	}
	return nil
}

func (h *wasmHost) KVGet(key string) ([]byte, bool) {
	if cap(h.kv) == 0 {
		h.kv = make([]byte, 1024)
	}
	for range 4 {
		buf := h.kv[:cap(h.kv)]
		n := importKVGet(strPtr(key), int32(len(key)), bytesPtr(buf), int32(len(buf)))
		if n < 0 {
			return nil, false
		}
		if int(n) <= len(buf) {
			return append([]byte{}, buf[:n]...), true
		}
		h.kv = make([]byte, n)
	}
	return nil, false
}

func (*wasmHost) KVSet(key string, value []byte) {
	importKVSet(strPtr(key), int32(len(key)), bytesPtr(value), int32(len(value)))
}

func (*wasmHost) KVDelete(key string) {
	importKVDelete(strPtr(key), int32(len(key)))
}

func init() { hostapi.Set(&wasmHost{}) }

func pack(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(&b[0])))<<32 | uint64(len(b))
}

//go:wasmexport sluice_abi_version
func exportABIVersion() int32 { return ABIVersion }

//go:wasmexport sluice_alloc
func exportAlloc(size int32) int32 {
	if registered == nil || size < 0 {
		return 0
	}
	b := registered.allocBuf(int(size))
	return int32(uintptr(unsafe.Pointer(&b[0])))
}

//go:wasmexport sluice_describe
func exportDescribe() uint64 {
	if registered == nil {
		return 0
	}
	return pack(registered.describe)
}

// envelope returns the host-written envelope at (ptr, n), which must lie in the
// buffer sluice_alloc handed out.
func envelope(ptr, n int32) []byte {
	in := registered
	if in == nil || len(in.alloc) == 0 || n < 0 {
		return nil
	}
	base := int64(uintptr(unsafe.Pointer(&in.alloc[0])))
	off := int64(ptr) - base
	if off < 0 || off+int64(n) > int64(len(in.alloc)) {
		return []byte{} // not ours: decoding fails, the answer is malformed
	}
	return in.alloc[off : off+int64(n)]
}

func dispatch(hook Hook, ptr, n int32) uint64 {
	if registered == nil {
		return 0
	}
	return pack(registered.handle(hook, envelope(ptr, n)))
}

//go:wasmexport sluice_on_request
func exportOnRequest(ptr, n int32) uint64 { return dispatch(HookRequest, ptr, n) }

//go:wasmexport sluice_on_response
func exportOnResponse(ptr, n int32) uint64 { return dispatch(HookResponse, ptr, n) }

//go:wasmexport sluice_on_http_response
func exportOnHTTPResponse(ptr, n int32) uint64 { return dispatch(HookHTTPResponse, ptr, n) }
