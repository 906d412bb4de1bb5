package agent

import (
	"context"
	"net/http"
	"sync/atomic"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// The oauth-as extension (wire.ExtOAuthAS, docs/wire.md): a relay serves
// the MCP server's authorization server under its own URL when only this
// network can reach it, and the agent makes the requests. The binding
// decides what may be fetched (httpbinding.Binding.OAuthAS: only the
// endpoints the authorization server's own metadata declares, on its own
// origin); the agent offers the extension only when its main binding can,
// only to a relay that advertised it, and runs oauth_as commands only from
// the answer to a poll that offered it.

// OAuthASProxy is implemented by bindings that can make requests to the MCP
// server's authorization server for the oauth-as extension. header holds the
// command's forwarded headers. The reply is the authorization server's
// answer or the binding's refusal; an error means no request got an answer.
type OAuthASProxy interface {
	OAuthAS(ctx context.Context, req *wire.ASRequest, header http.Header) (*binding.Reply, error)
}

// oauthASState is the agent's state of the extension.
type oauthASState struct {
	enabled bool        // the main binding can
	ok      atomic.Bool // the relay advertised it on its latest answer
}

func (a *Agent) initOAuthAS() {
	_, a.oauthAS.enabled = a.bindings[wire.DefaultChannel].(OAuthASProxy)
}

// setOAuthASOK records whether the relay's answer h advertises the
// extension (and the agent can serve it), and reports it.
func (a *Agent) setOAuthASOK(h http.Header) bool {
	ok := a.oauthAS.enabled && wire.HasExtension(h.Get(wire.HeaderExtensions), wire.ExtOAuthAS)
	if a.oauthAS.ok.Swap(ok) != ok {
		a.log.Debug("relay authorization server requests", "enabled", ok)
	}
	return ok
}

// screenOAuthAS clears the request of every oauth_as command unless the
// poll offered the extension and its answer advertised it: enqueue then
// skips such a command as it does any unknown type.
func (a *Agent) screenOAuthAS(cmds []wire.Command, trusted bool) {
	if trusted {
		return
	}
	for i := range cmds {
		if cmds[i].CommandType == wire.CommandOAuthAS {
			cmds[i].OAuthAS = nil
		}
	}
}

// oauthAS answers an oauth_as command with the authorization server's
// answer through the channel's binding.
func (r *run) oauthAS() {
	r.method = wire.CommandOAuthAS
	p, ok := r.binding().(OAuthASProxy)
	if !ok {
		r.debug("binding cannot reach an authorization server: answered 404")
		r.postFinal(wire.RespOAuthAS, http.StatusNotFound, nil, nil, outcomeOK)
		return
	}
	rep, err := p.OAuthAS(r.callCtx, r.t.cmd.OAuthAS, canonicalHeader(r.t.cmd.Headers))
	r.postFetched(wire.RespOAuthAS, rep, err, "authorization server request answered", "endpoint", r.t.cmd.OAuthAS.Endpoint)
}
