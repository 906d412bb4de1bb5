package hostapi

import "sync/atomic"

// IO is what a binding plugin can ask of the host beyond Host: stream a
// notification, send an HTTP request, exchange data with a command. Inputs
// and outputs use the ABI's encodings (sdk/ABI.md); a non-zero code is the
// host's negative error result and msg its message.
type IO interface {
	// Emit streams one JSON-RPC notification to the client now.
	Emit(msg []byte) (code int32, errMsg string)
	// HTTP performs an encoded request and returns the encoded response.
	HTTP(req []byte) (resp []byte, code int32, errMsg string)
	// Process runs one exchange with the configured command name.
	Process(name string, input []byte) (out []byte, code int32, errMsg string)
}

var currentIO atomic.Pointer[IO]

// SetIO installs io (nil = none: every operation is denied).
func SetIO(io IO) {
	if io == nil {
		currentIO.Store(nil)
		return
	}
	currentIO.Store(&io)
}

// GetIO returns the installed IO, or nil.
func GetIO() IO {
	if p := currentIO.Load(); p != nil {
		return *p
	}
	return nil
}
