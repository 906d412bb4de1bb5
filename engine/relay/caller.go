package relay

import (
	"net/http"

	"github.com/sluicemcp/sluice/engine/wire"
)

// The caller extension (wire.ExtCaller, docs/wire.md): the front door's
// verdict on who is calling travels to the agent on the command, so
// agent-side plugins see engine.Message.Caller too. It is set once, when
// the command is made (carryCaller), and removed from the answer to any
// poll that did not offer the extension (withholdCallers): an agent that
// does not know the field never gets it.

// carryCaller records caller on p's command. A caller that cannot travel
// (wire.ValidCaller) is not carried; validateTunnels refuses client-key
// names of that kind, so only an odd token subject is ever left out.
func (p *pending) carryCaller(caller string) {
	if wire.ValidCaller(caller) {
		p.cmd.Caller = caller
	}
}

// offersCaller reports whether an agent's poll offered the extension.
func offersCaller(req *http.Request) bool {
	return wire.HasExtension(req.Header.Get(wire.HeaderExtensions), wire.ExtCaller)
}

// withholdCallers clears the caller of every command in cmds (copies the
// poll is about to write, never the queued originals).
func withholdCallers(cmds []wire.Command) {
	for i := range cmds {
		cmds[i].Caller = ""
	}
}
