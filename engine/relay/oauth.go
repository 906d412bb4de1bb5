package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/wire"
)

// metadataPath is the prefix of the protected-resource metadata route.
const metadataPath = "/.well-known/oauth-protected-resource"

func (r *Relay) metadataURL(id string) string {
	return r.set.publicOrigin + metadataPath + "/v1/mcp/" + id
}

func (r *Relay) resourceURL(id string) string {
	return r.set.publicOrigin + "/v1/mcp/" + id
}

// handleOAuthMetadata serves GET
// /.well-known/oauth-protected-resource/v1/mcp/{id} for oauth-mode tunnels by
// fetching the MCP server's own metadata through the tunnel with the
// standard oauth_discovery command (so any agent of the protocol serves it,
// OpenAI's included) and pointing its resource at the relay.
func (r *Relay) handleOAuthMetadata(w http.ResponseWriter, req *http.Request) {
	id := req.PathValue("id")
	if !wire.ValidTunnelID(id) {
		writeAPIError(w, http.StatusBadRequest, "invalid_request_error", wire.CodeInvalidTunnelIDFormat, "tunnel id must match ^tunnel_[a-z0-9]{32}$")
		return
	}
	if !r.hostAllowed(req) {
		writeAPIError(w, http.StatusForbidden, "invalid_request_error", "", "Host or Origin does not match the relay's public URL")
		return
	}
	t := r.tunnel(id)
	if t != nil && t.conf.Load().authMode == AuthOAuthGateway {
		r.serveGatewayMetadata(w, id, t.conf.Load())
		return
	}
	if t == nil || t.conf.Load().authMode != AuthOAuth {
		writeAPIError(w, http.StatusNotFound, "invalid_request_error", "", "not found")
		return
	}
	if r.closed() || r.isDraining() {
		w.Header().Set("Retry-After", retryAfterDraining)
		writeAPIError(w, http.StatusServiceUnavailable, "server_error", "", "relay is shutting down: retry")
		return
	}
	slot, ok := r.admit(w, req, keyID{}) // unauthenticated: per address only
	if !ok {
		return
	}
	defer slot.release()
	conf := t.conf.Load()
	if !t.connected(time.Now(), r.set.agentTimeout) {
		w.Header().Set("Retry-After", retryAfterNotConnected)
		writeAPIError(w, http.StatusServiceUnavailable, "server_error", wire.CodeTunnelClientNotConnected, "no tunnel agent is connected for this tunnel")
		return
	}
	headers := map[string][]string{}
	for _, k := range []string{"Traceparent", "Tracestate"} {
		if vs := req.Header.Values(k); len(vs) > 0 {
			headers[k] = append([]string(nil), vs...)
		}
	}
	p := newPending(r.replica, wire.CommandOAuthDiscovery, wire.DefaultChannel, headers, nil, conf.responseTimeout, time.Now())
	if err := r.enqueue(t, p); err != nil {
		r.refuseEnqueue(w, t, err)
		return
	}
	m, err := r.waitFinal(req, t, p)
	if err != nil {
		if errors.Is(err, errClientGone) {
			return
		}
		w.Header().Set("Retry-After", "1")
		writeAPIError(w, http.StatusGatewayTimeout, "server_error", "", "metadata fetch through the tunnel failed: "+err.Error())
		return
	}
	status := mapStatus(m.RespCode)
	body := []byte(nil)
	if !isNull(m.RespJSON) {
		body = m.RespJSON
	}
	if status/100 == 2 && len(body) > 0 {
		// Fallback (and baseline) rewrite; an oauthmeta stage below may refine it.
		if nb, err := setResource(body, r.resourceURL(id)); err == nil {
			body = nb
		}
		if conf.oauth.AuthorizationServer == ASTunnel {
			body = r.rewritePRMForTunnelAS(body, id) // oauthas.go
		}
	}
	if r.pipeline != nil && r.pipeline.Chain().Len() > 0 {
		x := r.pipeline.Begin()
		defer x.Close()
		out := x.Response(req.Context(), &engine.Message{
			Hook: engine.HookHTTPResponse, Side: engine.SideRelay, Tunnel: id,
			Channel: wire.DefaultChannel, RequestID: p.cmd.RequestID,
			Status: status, Header: http.Header(m.RespHeaders), Body: body,
		})
		if out.Action == engine.Reject && len(out.Body) == 0 {
			writeAPIError(w, http.StatusBadGateway, "server_error", "", "metadata blocked by the relay's plugin chain")
			return
		}
		body = out.Body
		if out.Status != 0 {
			status = mapStatus(out.Status)
		}
	}
	r.log.Debug("protected-resource metadata served", "tunnel", id, "request_id", p.cmd.RequestID, "status", status)
	w.Header().Set("Cache-Control", "no-store")
	if len(body) == 0 {
		w.WriteHeader(status)
		return
	}
	writeRPC(w, status, body)
}

var errClientGone = errors.New("client gone")

// waitFinal waits for p's final message, ignoring notifications.
func (r *Relay) waitFinal(req *http.Request, t *tunnelState, p *pending) (*wire.Response, error) {
	timer := time.NewTimer(time.Until(p.deadline))
	defer timer.Stop()
	drainC := r.draining
	for {
		select {
		case <-drainC:
			if t.withdraw(p) {
				return nil, errors.New("relay shutting down")
			}
			drainC = nil
		case <-p.signal:
			for _, m := range p.take() {
				if m.Final() {
					return m, nil
				}
			}
		case <-timer.C:
			t.forget(p)
			return nil, errors.New("timeout")
		case <-req.Context().Done():
			t.forget(p)
			return nil, errClientGone
		case <-t.done:
			t.forget(p)
			return nil, errors.New("tunnel removed")
		case <-r.closing:
			t.forget(p)
			return nil, errors.New("relay shutting down")
		}
	}
}

// setResource sets the top-level "resource" member of the JSON object doc to
// url by editing only that member's value (every occurrence, should the
// document repeat the key), or inserting it first when absent: every other
// byte, key order included, is kept.
func setResource(doc []byte, url string) ([]byte, error) {
	if !json.Valid(doc) {
		return nil, errors.New("relay: metadata is not valid JSON")
	}
	val, err := json.Marshal(url)
	if err != nil {
		return nil, err
	}
	i := skipWS(doc, 0)
	if i >= len(doc) || doc[i] != '{' {
		return nil, errors.New("relay: metadata is not a JSON object")
	}
	open := i
	var spans [][2]int // value spans of "resource" members
	i = skipWS(doc, i+1)
	for i < len(doc) && doc[i] != '}' {
		var key string
		n, err := decodeAt(doc, i, &key)
		if err != nil {
			return nil, err
		}
		i = skipWS(doc, i+n)
		if i >= len(doc) || doc[i] != ':' {
			return nil, errors.New("relay: metadata: expected ':'")
		}
		i = skipWS(doc, i+1)
		var raw json.RawMessage
		n, err = decodeAt(doc, i, &raw)
		if err != nil {
			return nil, err
		}
		if key == "resource" {
			spans = append(spans, [2]int{i, i + n})
		}
		i = skipWS(doc, i+n)
		if i < len(doc) && doc[i] == ',' {
			i = skipWS(doc, i+1)
		}
	}
	if len(spans) == 0 {
		ins := append([]byte(`"resource":`), val...)
		if j := skipWS(doc, open+1); j < len(doc) && doc[j] != '}' {
			ins = append(ins, ',')
		}
		return splice(doc, open+1, open+1, ins), nil
	}
	for k := len(spans) - 1; k >= 0; k-- {
		doc = splice(doc, spans[k][0], spans[k][1], val)
	}
	return doc, nil
}

func decodeAt(doc []byte, i int, v any) (int, error) {
	dec := json.NewDecoder(bytes.NewReader(doc[i:]))
	if err := dec.Decode(v); err != nil {
		return 0, err
	}
	return int(dec.InputOffset()), nil
}

func splice(doc []byte, from, to int, repl []byte) []byte {
	out := make([]byte, 0, len(doc)-(to-from)+len(repl))
	out = append(out, doc[:from]...)
	out = append(out, repl...)
	return append(out, doc[to:]...)
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// hostAllowed checks Host and Origin against the public URL (DNS-rebinding
// protection). When the public URL names a loopback host, every loopback name
// with the same port is accepted. A missing Origin is fine (non-browser
// clients send none).
func (r *Relay) hostAllowed(req *http.Request) bool {
	if !r.sameAuthority(req.Host, r.set.publicURL.Scheme) {
		return false
	}
	origin := req.Header.Get("Origin")
	if origin == "" {
		return true
	}
	scheme, rest, ok := strings.Cut(origin, "://")
	if !ok || !strings.EqualFold(scheme, r.set.publicURL.Scheme) || strings.ContainsAny(rest, "/?#@") {
		return false
	}
	return r.sameAuthority(rest, r.set.publicURL.Scheme)
}

func (r *Relay) sameAuthority(hostport, scheme string) bool {
	h, p := splitHostPort(strings.ToLower(hostport), scheme)
	wh, wp := splitHostPort(r.set.publicURL.Host, scheme)
	if h == "" || p != wp {
		return false
	}
	if h == wh {
		return true
	}
	return r.set.publicHostIsLoop && isLoopbackName(h)
}

// splitHostPort splits an authority, filling in the scheme's default port.
func splitHostPort(hp, scheme string) (string, string) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		h, p = hp, ""
	}
	if p == "" {
		if scheme == "https" {
			p = "443"
		} else {
			p = "80"
		}
	}
	return strings.Trim(h, "[]"), p
}
