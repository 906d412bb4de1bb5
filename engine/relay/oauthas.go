package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sluicemcp/sluice/engine/wire"
)

// A private authorization server, through the tunnel (OAuthConfig
// AuthorizationServer: tunnel; the wire.ExtOAuthAS extension; docs/oauth.md).
//
// When the MCP server's authorization server is reachable only from the
// agent's side, the relay stands in for it: the protected-resource
// metadata names the relay's issuer (PublicURL/oauth/{tunnel}), the relay
// serves that issuer's metadata (the real server's, fetched through the
// agent, its URLs rewritten to the relay) and the endpoints the metadata
// declares (authorize, token, registration, JWKS), each request made by
// the agent. Nothing the client receives names the real server: members of
// its documents that point into it are rewritten or dropped, and the agent
// refuses a redirect into it. The client's authorization response keeps
// RFC 9207's iss parameter meaningful: the real issuer becomes the relay's.

// asProxyTTL is how long the relay uses the authorization server metadata it
// fetched through the agent.
const asProxyTTL = 5 * time.Minute

// asRoutes maps the relay's endpoint paths to the metadata members they
// stand for, and the methods each takes.
var asRoutes = map[string]struct {
	member  string
	methods string
}{
	"authorize": {wire.ASAuthorization, "GET POST"},
	"token":     {wire.ASToken, "POST"},
	"register":  {wire.ASRegistration, "POST"},
	"jwks":      {wire.ASJWKS, "GET"},
}

// asMemberRoute is the inverse of asRoutes.
var asMemberRoute = map[string]string{wire.ASAuthorization: "authorize", wire.ASToken: "token", wire.ASRegistration: "register", wire.ASJWKS: "jwks"}

// asProxy is the relay's view of one tunnel's private authorization server.
type asProxy struct {
	mu       sync.Mutex
	metadata []byte          // rewritten for the relay
	issuer   string          // the real issuer
	origin   string          // the real issuer's origin
	declared map[string]bool // metadata members the relay serves
	at       time.Time
}

// asIssuer is the relay's issuer identifier for tunnel id.
func (r *Relay) asIssuer(id string) string { return r.set.publicOrigin + "/oauth/" + id }

// asTunnel returns the tunnel and its config when it serves a private
// authorization server, writing the refusal itself otherwise (404: the
// routes do not exist for other tunnels). On success it holds the
// request's slot in the per-address limit (the routes are unauthenticated
// and go through the tunnel): release it when done.
func (r *Relay) asTunnel(w http.ResponseWriter, req *http.Request) (*tunnelState, *tunnelConf, slot, bool) {
	id := req.PathValue("id")
	if !wire.ValidTunnelID(id) {
		writeAPIError(w, http.StatusBadRequest, "invalid_request_error", wire.CodeInvalidTunnelIDFormat, "tunnel id must match ^tunnel_[a-z0-9]{32}$")
		return nil, nil, slot{}, false
	}
	if !r.hostAllowed(req) {
		writeAPIError(w, http.StatusForbidden, "invalid_request_error", "", "Host or Origin does not match the relay's public URL")
		return nil, nil, slot{}, false
	}
	t := r.tunnel(id)
	if t == nil || t.conf.Load().authMode != AuthOAuth || t.conf.Load().oauth.AuthorizationServer != ASTunnel {
		writeAPIError(w, http.StatusNotFound, "invalid_request_error", "", "not found")
		return nil, nil, slot{}, false
	}
	if r.closed() || r.isDraining() {
		w.Header().Set("Retry-After", retryAfterDraining)
		writeAPIError(w, http.StatusServiceUnavailable, "server_error", "", "relay is shutting down: retry")
		return nil, nil, slot{}, false
	}
	sl, ok := r.admit(w, req, keyID{})
	if !ok {
		return nil, nil, slot{}, false
	}
	return t, t.conf.Load(), sl, true
}

// handleASMetadata serves the private authorization server's metadata at
// the relay's well-known locations (RFC 8414, and both OpenID Connect
// Discovery forms MCP clients try).
func (r *Relay) handleASMetadata(w http.ResponseWriter, req *http.Request) {
	t, conf, sl, ok := r.asTunnel(w, req)
	if !ok {
		return
	}
	defer sl.release()
	p := r.asProxyFor(w, req, t, conf)
	if p == nil {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeRPC(w, http.StatusOK, p.metadata)
}

// handleASEndpoint serves one endpoint the private authorization server's
// metadata declares, through the agent.
func (r *Relay) handleASEndpoint(w http.ResponseWriter, req *http.Request) {
	t, conf, sl, ok := r.asTunnel(w, req)
	if !ok {
		return
	}
	defer sl.release()
	route, known := asRoutes[req.PathValue("endpoint")]
	if !known {
		writeAPIError(w, http.StatusNotFound, "invalid_request_error", "", "not found")
		return
	}
	if !strings.Contains(route.methods, req.Method) {
		w.Header().Set("Allow", strings.ReplaceAll(route.methods, " ", ", "))
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "method not allowed")
		return
	}
	p := r.asProxyFor(w, req, t, conf)
	if p == nil {
		return
	}
	if !p.declared[route.member] {
		writeAPIError(w, http.StatusNotFound, "invalid_request_error", "", "the authorization server declares no such endpoint")
		return
	}
	if len(req.URL.RawQuery) > 8<<10 {
		writeOAuthError(w, http.StatusRequestURITooLong, "invalid_request", "query too long")
		return
	}
	areq := &wire.ASRequest{Endpoint: route.member, Method: req.Method, Query: req.URL.RawQuery}
	if req.Method == http.MethodPost {
		body, outcome := r.readBody(w, req, wire.MaxOAuthASBody, keyID{})
		if outcome != "" {
			return
		}
		if !utf8.Valid(body) {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the body is not UTF-8 text")
			return
		}
		areq.Body = string(body)
	}
	headers := map[string][]string{}
	for _, k := range []string{"Content-Type", "Accept", "Dpop", "Traceparent", "Tracestate"} {
		if vs := req.Header.Values(k); len(vs) > 0 {
			headers[k] = append([]string(nil), vs...)
		}
	}
	if v := req.Header.Values("Authorization"); len(v) > 0 && (route.member == wire.ASToken || route.member == wire.ASRegistration) {
		headers["Authorization"] = append([]string(nil), v...) // the client's credentials for the authorization server
	}
	m := r.asCall(w, req, t, conf, areq, headers)
	if m == nil {
		return
	}
	r.log.Debug("authorization server request answered", "tunnel", t.id, "request_id", m.RequestID, "endpoint", route.member, "status", m.RespCode)
	st := mapStatus(m.RespCode)
	for k, vs := range m.RespHeaders {
		switch ck := http.CanonicalHeaderKey(k); ck {
		case "Location":
			if len(vs) > 0 {
				w.Header().Set(ck, rewriteIss(vs[0], p.issuer, r.asIssuer(t.id)))
			}
		case "Cache-Control", "Pragma", "Www-Authenticate", "Dpop-Nonce":
			for _, v := range vs {
				if v != "" && !strings.ContainsAny(v, "\r\n") {
					w.Header().Add(ck, v)
				}
			}
		}
	}
	if isNull(m.RespJSON) {
		w.WriteHeader(st)
		return
	}
	body := m.RespJSON
	if nb, err := editMembers(body, func(_ string, v json.RawMessage) ([]byte, bool) {
		return v, !pointsInto(v, p.origin)
	}); err == nil {
		body = nb
	}
	writeRPC(w, st, body)
}

// asProxyFor returns the tunnel's authorization server view, fetching its
// metadata through the agent when there is none or it is stale. On failure
// it answers the client itself and returns nil.
func (r *Relay) asProxyFor(w http.ResponseWriter, req *http.Request, t *tunnelState, conf *tunnelConf) *asProxy {
	v, _ := r.asProxies.LoadOrStore(t.id, &asProxy{})
	p := v.(*asProxy)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.metadata != nil && time.Since(p.at) < asProxyTTL {
		return p
	}
	m := r.asCall(w, req, t, conf, &wire.ASRequest{Endpoint: wire.ASMetadata, Method: http.MethodGet}, nil)
	if m == nil {
		return nil
	}
	err := errors.New("no metadata")
	if m.RespCode == http.StatusOK && !isNull(m.RespJSON) {
		err = p.load(m.RespJSON, r.asIssuer(t.id))
	}
	if err != nil {
		r.log.Warn("no authorization server metadata through the agent", "tunnel", t.id, "status", m.RespCode, "err", err)
		writeOAuthError(w, http.StatusBadGateway, "temporarily_unavailable", "the authorization server cannot be reached through the tunnel now")
		return nil
	}
	return p
}

// load rewrites fetched metadata for the relay: issuer and the served
// endpoints point at the relay, every other member that points into the
// real server is dropped.
func (p *asProxy) load(doc []byte, relayIssuer string) error {
	var head struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(doc, &head); err != nil || head.Issuer == "" {
		return errors.New("metadata without an issuer")
	}
	u, err := url.Parse(head.Issuer)
	if err != nil || u.Host == "" {
		return errors.New("metadata issuer is not a URL")
	}
	origin := u.Scheme + "://" + u.Host
	declared := map[string]bool{}
	out, err := editMembers(doc, func(key string, v json.RawMessage) ([]byte, bool) {
		if key == "issuer" {
			b, _ := json.Marshal(relayIssuer)
			return b, true
		}
		if route, ok := asMemberRoute[key]; ok && pointsInto(v, origin) {
			declared[key] = true
			b, _ := json.Marshal(relayIssuer + "/" + route)
			return b, true
		}
		if key == "mtls_endpoint_aliases" {
			return nil, false
		}
		return v, !pointsInto(v, origin)
	})
	if err != nil {
		return err
	}
	p.metadata, p.issuer, p.origin, p.declared, p.at = out, head.Issuer, origin, declared, time.Now()
	return nil
}

// pointsInto reports whether a JSON value is a string URL on origin.
func pointsInto(v json.RawMessage, origin string) bool {
	var s string
	if json.Unmarshal(v, &s) != nil {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Scheme+"://"+u.Host, origin)
}

// asCall sends one oauth_as command and waits for its answer. On failure it
// answers the client itself (unless it left) and returns nil.
func (r *Relay) asCall(w http.ResponseWriter, req *http.Request, t *tunnelState, conf *tunnelConf, areq *wire.ASRequest, headers map[string][]string) *wire.Response {
	now := time.Now()
	if !t.connected(now, r.set.agentTimeout) {
		w.Header().Set("Retry-After", retryAfterNotConnected)
		writeAPIError(w, http.StatusServiceUnavailable, "server_error", wire.CodeTunnelClientNotConnected, "no tunnel agent is connected for this tunnel")
		return nil
	}
	if !r.asOffered(t.id, now) {
		w.Header().Set("Retry-After", retryAfterNotConnected)
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "no connected agent can reach the authorization server (it needs sluice run)")
		return nil
	}
	timeout := min(conf.responseTimeout, 30*time.Second)
	p := newPending(r.replica, wire.CommandOAuthAS, wire.DefaultChannel, headers, nil, timeout, now)
	p.cmd.OAuthAS = areq
	if err := r.enqueue(t, p); err != nil {
		r.refuseEnqueue(w, t, err)
		return nil
	}
	m, err := r.waitFinal(req, t, p)
	if err != nil {
		if !errors.Is(err, errClientGone) {
			w.Header().Set("Retry-After", "1")
			writeOAuthError(w, http.StatusGatewayTimeout, "temporarily_unavailable", "the authorization server cannot be reached through the tunnel now")
		}
		return nil
	}
	return m
}

// asOffers records, per tunnel, when an agent last polled offering the
// extension (unix nanoseconds).
func (r *Relay) noteASOffer(req *http.Request, t *tunnelState) {
	if !wire.HasExtension(req.Header.Get(wire.HeaderExtensions), wire.ExtOAuthAS) {
		return
	}
	v, _ := r.asOffers.LoadOrStore(t.id, new(atomic.Int64))
	v.(*atomic.Int64).Store(time.Now().UnixNano())
}

// asOffered reports whether an agent offering the extension polled within
// the agent timeout (its polls are continuous while it runs).
// In a Cluster, another replica's word counts too (asRemote).
func (r *Relay) asOffered(id string, now time.Time) bool {
	return r.asOfferedIn(&r.asOffers, id, now) || r.asOfferedIn(&r.asRemote, id, now)
}

func (r *Relay) asOfferedIn(m *sync.Map, id string, now time.Time) bool {
	v, ok := m.Load(id)
	if !ok {
		return false
	}
	return now.Sub(time.Unix(0, v.(*atomic.Int64).Load())) < r.set.agentTimeout+r.set.maxPollWait
}

// remoteASOffer notes another replica's word that an agent offering the
// extension polls it.
func (r *Relay) remoteASOffer(id string, now time.Time) {
	v, _ := r.asRemote.LoadOrStore(id, new(atomic.Int64))
	v.(*atomic.Int64).Store(now.UnixNano())
}

// rewriteIss replaces the iss parameter (RFC 9207) of an authorization
// response's Location when it names the real issuer: the client checks it
// against the issuer it discovered, which is the relay's.
func rewriteIss(loc, realIssuer, relayIssuer string) string {
	base, query, ok := strings.Cut(loc, "?")
	if !ok {
		return loc
	}
	frag := ""
	if i := strings.IndexByte(query, '#'); i >= 0 {
		query, frag = query[:i], query[i:]
	}
	parts := strings.Split(query, "&")
	for i, part := range parts {
		v, ok := strings.CutPrefix(part, "iss=")
		if !ok {
			continue
		}
		if iss, err := url.QueryUnescape(v); err == nil && strings.TrimSuffix(iss, "/") == strings.TrimSuffix(realIssuer, "/") {
			parts[i] = "iss=" + url.QueryEscape(relayIssuer)
		}
	}
	return base + "?" + strings.Join(parts, "&") + frag
}

// rewritePRMForTunnelAS names the relay's issuer as the only authorization
// server of protected-resource metadata.
func (r *Relay) rewritePRMForTunnelAS(doc []byte, id string) []byte {
	issuer, _ := json.Marshal([]string{r.asIssuer(id)})
	out, err := editMembers(doc, func(key string, v json.RawMessage) ([]byte, bool) {
		if key == "authorization_servers" {
			return issuer, true
		}
		return v, true
	})
	if err != nil {
		return doc
	}
	return out
}

// editMembers rewrites the top-level members of the JSON object doc: edit
// gets each member's key and raw value and returns the value to keep (the
// same bytes to leave it) or false to drop the member. Key order and the
// bytes of every kept member are preserved; whitespace between members is
// not.
func editMembers(doc []byte, edit func(key string, v json.RawMessage) ([]byte, bool)) ([]byte, error) {
	i := skipWS(doc, 0)
	if i >= len(doc) || doc[i] != '{' {
		return nil, errors.New("relay: not a JSON object")
	}
	var out bytes.Buffer
	out.WriteByte('{')
	first := true
	i = skipWS(doc, i+1)
	for i < len(doc) && doc[i] != '}' {
		keyStart := i
		var key string
		n, err := decodeAt(doc, i, &key)
		if err != nil {
			return nil, err
		}
		keyEnd := i + n
		i = skipWS(doc, keyEnd)
		if i >= len(doc) || doc[i] != ':' {
			return nil, errors.New("relay: expected ':'")
		}
		i = skipWS(doc, i+1)
		var raw json.RawMessage
		n, err = decodeAt(doc, i, &raw)
		if err != nil {
			return nil, err
		}
		val := doc[i : i+n]
		i = skipWS(doc, i+n)
		if i < len(doc) && doc[i] == ',' {
			i = skipWS(doc, i+1)
		}
		nv, keep := edit(key, val)
		if !keep {
			continue
		}
		if !first {
			out.WriteByte(',')
		}
		first = false
		out.Write(doc[keyStart:keyEnd])
		out.WriteByte(':')
		out.Write(nv)
	}
	if i >= len(doc) {
		return nil, errors.New("relay: unterminated object")
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}

// writeOAuthError writes an OAuth error object (RFC 6749 section 5.2).
func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
