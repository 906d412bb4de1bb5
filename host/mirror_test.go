package host

import (
	"testing"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/sdk"
)

// TestSDKMirrorsEngine: the guest SDK keeps its own copies of the ABI's hook
// and action numbers (it must not import the engine); they must equal the
// engine's, which the host puts on the wire.
func TestSDKMirrorsEngine(t *testing.T) {
	hooks := []struct {
		s sdk.Hook
		e engine.Hook
	}{{sdk.HookRequest, engine.HookRequest}, {sdk.HookResponse, engine.HookResponse}, {sdk.HookHTTPResponse, engine.HookHTTPResponse}}
	for _, h := range hooks {
		if uint8(h.s) != uint8(h.e) || h.s.String() != h.e.String() {
			t.Errorf("sdk hook %v(%d) != engine hook %v(%d)", h.s, h.s, h.e, h.e)
		}
	}
	actions := []struct {
		s sdk.Action
		e engine.Action
	}{{sdk.ActionContinue, engine.Continue}, {sdk.ActionReplace, engine.Replace}, {sdk.ActionRespond, engine.Respond},
		{sdk.ActionReject, engine.Reject}, {sdk.ActionDrop, engine.Drop}}
	for _, a := range actions {
		if uint8(a.s) != uint8(a.e) {
			t.Errorf("sdk action %d != engine action %v(%d)", a.s, a.e, a.e)
		}
	}
}
