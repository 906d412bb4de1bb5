package host

import (
	"context"
	"errors"

	"github.com/sluicemcp/sluice/engine"
	"github.com/tetratelabs/wazero/api"
)

// The emit capability: a binding plugin streams a notification (progress, a
// log message) to the MCP client while its call runs. Every binding plugin
// has it; it exists only during a call.

// errAnsweredTwice is the violation of a guest that emits a response: the
// final answer is the call's return value, so that is a second answer.
var errAnsweredTwice = errors.New("emitted a JSON-RPC response: the call's return value is its only answer")

func init() {
	registerHostFunc(hostFunc{name: ImportEmit, sig: sig{[]api.ValueType{i32, i32}, []api.ValueType{i32}}, fn: hostEmit})
}

// hostEmit hands one JSON-RPC notification at [ptr, ptr+len) to the call's
// sink, which streams it to the client before the function returns.
func hostEmit(ctx context.Context, s *Stage, mod api.Module, st []uint64) {
	c := callOf(ctx)
	if c == nil {
		st[0] = hostErr(HostErrDenied) // no call to stream into (no message: no pending result either)
		return
	}
	ptr, n := uint32(st[0]), uint32(st[1])
	if int(n) > s.cfg.MaxMessageSize {
		st[0] = c.fail(HostErrTooLarge, "notification exceeds max-message-size")
		return
	}
	msg := guestBytes(mod, ptr, n, ImportEmit)
	p, err := engine.PeekMessage(msg)
	switch {
	case err != nil:
		st[0] = c.fail(HostErrInvalid, "not a single JSON-RPC object")
		return
	case p.ID != nil && p.Method == "":
		c.violation = errAnsweredTwice
		st[0] = c.fail(HostErrInvalid, errAnsweredTwice.Error())
		return
	case p.ID != nil || p.Method == "":
		st[0] = c.fail(HostErrInvalid, "only notifications (a method, no id) can be emitted")
		return
	}
	body := append([]byte(nil), msg...) // the sink may keep it past this call
	c.pause()
	err = c.emit(body)
	c.resume()
	if err != nil {
		st[0] = c.fail(HostErrFailed, "the client is gone")
		return
	}
	c.emitted++
	c.hasResult = false
	st[0] = 0
}
