package relay

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// The MCP endpoint's front door: who is calling, by the tunnel's auth mode.
//
//   - client-key: one of the tunnel's client keys; the caller is its name.
//   - oauth (transparent): nothing is checked here; the MCP server is the
//     resource server and gets the token. The caller is unknown.
//   - oauth-gateway: the relay validates the bearer token (gateway.go); the
//     caller is its subject. Refusals follow RFC 6750: 401 with
//     WWW-Authenticate and no error code for a missing token, 401
//     invalid_token for a bad one, 403 insufficient_scope.
//   - public: nobody is asked.

// verdict is the front door's answer for one request.
type verdict struct {
	caller string
	// key is whose limits apply (limits.go): the client key, or the
	// gateway's token subject; zero when no caller is known.
	key keyID
	// status is 0 when the request may pass, else the refusal's status with
	// its WWW-Authenticate challenge and message.
	status    int
	challenge string
	msg       string
	outcome   string
	revoked   bool // the key was one of the tunnel's, revoked
}

// authenticate judges req's credentials for tunnel id (t nil: unknown
// tunnel).
func (r *Relay) authenticate(req *http.Request, id string, t *tunnelState) verdict {
	if t == nil {
		// An unknown tunnel looks like a wrong key: its existence is not
		// leaked, nor does the comparison take less time.
		check(req, dummyKey, nil, ScopeClient)
		return verdict{status: http.StatusUnauthorized, challenge: "Bearer", msg: "missing or invalid client key", outcome: outcomeUnauthorized}
	}
	conf := t.conf.Load()
	switch conf.authMode {
	case AuthClientKey:
		res := clientAuth(req, conf)
		if res.ok {
			return verdict{caller: res.key.name, key: keyID(res.key.sum)}
		}
		v := verdict{status: http.StatusUnauthorized, challenge: "Bearer", msg: "missing or invalid client key", outcome: outcomeUnauthorized}
		if res.revoked != nil {
			v.msg, v.revoked = revokedMessage(ScopeClient, res.revoked), true
		}
		return v
	case AuthOAuthGateway:
		return r.gatewayAuth(req, id, conf)
	}
	return verdict{}
}

// gatewayAuth validates the bearer token of an oauth-gateway tunnel.
func (r *Relay) gatewayAuth(req *http.Request, id string, conf *tunnelConf) verdict {
	challenge := `Bearer resource_metadata="` + r.metadataURL(id) + `"`
	if len(conf.oauth.Scopes) > 0 {
		challenge += `, scope="` + strings.Join(conf.oauth.Scopes, " ") + `"`
	}
	tok, ok := bearer(req)
	if !ok || tok == "" {
		return verdict{status: http.StatusUnauthorized, challenge: challenge, msg: "a bearer token is required", outcome: outcomeUnauthorized}
	}
	if conf.gw == nil { // not attached: New and SetTunnels always attach
		return verdict{status: http.StatusServiceUnavailable, msg: "token validation is not set up", outcome: outcomeUnavailable}
	}
	sub, err := conf.gw.verify(req.Context(), tok)
	var te *tokenError
	switch {
	case err == nil:
		return verdict{caller: sub, key: subjectKey(id, sub)}
	case errors.As(err, &te):
		r.log.Info("bearer token refused", "tunnel", id, "reason", te.desc)
		out := outcomeUnauthorized
		if te.status == http.StatusForbidden {
			out = outcomeForbidden
		}
		return verdict{status: te.status, msg: te.desc, outcome: out,
			challenge: challenge + `, error="` + te.code + `", error_description="` + te.desc + `"`}
	}
	r.log.Warn("cannot validate bearer tokens: the authorization server is unavailable", "tunnel", id, "err", err)
	return verdict{status: http.StatusServiceUnavailable, msg: "cannot validate the token now: retry", outcome: outcomeUnavailable}
}

// refuse writes v's refusal.
func (r *Relay) refuse(w http.ResponseWriter, v verdict) {
	if v.challenge != "" {
		w.Header().Set("WWW-Authenticate", v.challenge)
	}
	switch v.status {
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "5")
		writeAPIError(w, v.status, "server_error", "", v.msg)
	default:
		writeAPIError(w, v.status, "invalid_request_error", "", v.msg)
	}
}

// carryIdentity is the one hook between the front door and the command: it
// records the caller on p's command (the caller extension) and, in
// oauth-gateway mode, adds the header that tells the MCP server the request
// passed the gateway.
func (p *pending) carryIdentity(conf *tunnelConf, caller string) {
	p.carryCaller(caller)
	if conf.authMode == AuthOAuthGateway && conf.oauth.UpstreamHeader != "" {
		if p.cmd.Headers == nil {
			p.cmd.Headers = map[string][]string{}
		}
		p.cmd.Headers[http.CanonicalHeaderKey(conf.oauth.UpstreamHeader)] = []string{conf.oauth.UpstreamSecret}
	}
}

// attachGateways gives every oauth-gateway tunnel of confs its validator,
// keeping the one (and its key and token caches) of a tunnel whose OAuth
// settings did not change.
func (r *Relay) attachGateways(confs []*tunnelConf) {
	for _, c := range confs {
		if c.authMode != AuthOAuthGateway {
			continue
		}
		if t := r.tunnel(c.id); t != nil {
			if old := t.conf.Load(); old.gw != nil && old.authMode == AuthOAuthGateway && sameOAuth(old.oauth, c.oauth) {
				c.gw = old.gw
				continue
			}
		}
		c.gw = newGateway(c.oauth, r.resourceURL(c.id), r.asClient)
	}
}

func sameOAuth(a, b OAuthConfig) bool {
	sa, _ := json.Marshal(a)
	sb, _ := json.Marshal(b)
	return string(sa) == string(sb)
}

// serveGatewayMetadata answers the protected-resource metadata (RFC 9728)
// of an oauth-gateway tunnel: the relay is the resource, its authorization
// server the configured issuer. Nothing goes through the tunnel.
func (r *Relay) serveGatewayMetadata(w http.ResponseWriter, id string, conf *tunnelConf) {
	md := struct {
		Resource               string   `json:"resource"`
		AuthorizationServers   []string `json:"authorization_servers"`
		BearerMethodsSupported []string `json:"bearer_methods_supported"`
		ScopesSupported        []string `json:"scopes_supported,omitempty"`
		ResourceName           string   `json:"resource_name,omitempty"`
	}{
		Resource:               r.resourceURL(id),
		AuthorizationServers:   []string{conf.oauth.Issuer},
		BearerMethodsSupported: []string{"header"},
		ScopesSupported:        conf.oauth.Scopes,
		ResourceName:           conf.name,
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, md)
}

// defaultASClient fetches from authorization servers when Options.ASClient
// is nil: bounded, no redirects followed.
func defaultASClient() *http.Client {
	return &http.Client{
		Timeout: asFetchTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: asFetchTimeout,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
		},
	}
}
