package agent

import (
	"net/http"
	"strings"

	"github.com/sluicemcp/sluice/engine/wire"
)

// The caller extension (wire.ExtCaller, docs/wire.md): a Sluice relay names
// the caller on each command, so agent-side plugins see
// engine.Message.Caller and the audit record names it.
//
// The agent offers the extension on a poll only after the relay advertised
// it, and reads a command's caller only from the answer to a poll on which
// it offered the extension and whose own header advertises it. Any other
// claim (from OpenAI's hosted service, a relay that does not know the
// extension, a proxy that rewrote the answer) is dropped unread: a caller
// decides policy, so it is believed only from a relay that said it sends
// one.

// Offer bits of offerHeaders: the Sluice extensions an agent offers back on
// its polls.
const (
	offerGetStream = 1 << iota
	offerCaller
	offerOAuthAS
	offerAll = offerGetStream | offerCaller | offerOAuthAS
)

// offerNames are the extension names of the offer bits, in bit order.
var offerNames = [...]string{wire.ExtGetStream, wire.ExtCaller, wire.ExtOAuthAS}

// initOffers builds the poll headers for every combination of offers, once,
// after New built baseHeader.
func (a *Agent) initOffers() {
	for i := range a.offerHeaders {
		var exts []string
		for bit, name := range offerNames {
			if i&(1<<bit) != 0 {
				exts = append(exts, name)
			}
		}
		if len(exts) == 0 {
			a.offerHeaders[i] = a.baseHeader
			continue
		}
		h := a.baseHeader.Clone()
		h.Set(wire.HeaderExtensions, strings.Join(exts, ", "))
		a.offerHeaders[i] = h
	}
}

// pollHeader is the header of a poll: it offers each extension to a relay
// that advertised it, and to no other. It returns the offer bits.
func (a *Agent) pollHeader() (http.Header, int) {
	i := 0
	if a.streams.ok.Load() {
		i |= offerGetStream
	}
	if a.callerOK.Load() {
		i |= offerCaller
	}
	if a.oauthAS.ok.Load() {
		i |= offerOAuthAS
	}
	return a.offerHeaders[i], i
}

// setCallerOK records whether the relay's answer h advertises the caller
// extension, and reports it.
func (a *Agent) setCallerOK(h http.Header) bool {
	ok := wire.HasExtension(h.Get(wire.HeaderExtensions), wire.ExtCaller)
	if a.callerOK.Swap(ok) != ok {
		a.log.Debug("relay caller identity", "enabled", ok)
	}
	return ok
}

// screenCallers keeps the callers of cmds only when trusted (the poll
// offered the extension and its answer advertised it) and well-formed; it
// clears every other claim.
func (a *Agent) screenCallers(cmds []wire.Command, trusted bool) {
	for i := range cmds {
		c := &cmds[i]
		if c.Caller == "" || trusted && wire.ValidCaller(c.Caller) {
			continue
		}
		if trusted {
			a.log.Debug("dropping a malformed caller", "request_id", c.RequestID, "channel", c.Channel)
		} else {
			a.log.Debug("ignoring a caller from a relay that did not advertise the caller extension",
				"request_id", c.RequestID, "channel", c.Channel)
		}
		c.Caller = ""
	}
}
