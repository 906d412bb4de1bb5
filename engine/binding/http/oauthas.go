package httpbinding

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// The agent's side of the oauth-as extension (wire.ExtOAuthAS): requests to
// the MCP server's authorization server, for a relay that serves it under
// its own URL because only this network can reach it.
//
// The binding trusts nothing in a request but the endpoint's name. It finds
// the authorization server in the MCP server's own protected-resource
// metadata (the first of authorization_servers), reads that server's
// metadata itself (RFC 8414, then OpenID Connect Discovery), which must name
// the same issuer, and sends a request only to the URL the metadata declares
// for the endpoint, and only when that URL is on the issuer's own origin.

// asCacheTTL is how long a discovered authorization server is used before
// the next request discovers it again.
const asCacheTTL = 5 * time.Minute

// asForwarded are the client request headers an authorization server
// request carries (Authorization only to the token and registration
// endpoints: a client's credentials, or an initial access token).
var asForwarded = []string{"Content-Type", "Accept", "Dpop", "Traceparent", "Tracestate"}

// asKept are the authorization server's response headers passed back.
var asKept = []string{"Content-Type", "Location", "Cache-Control", "Pragma", "Www-Authenticate", "Dpop-Nonce"}

// asServer is a discovered authorization server.
type asServer struct {
	issuer    *url.URL
	metadata  []byte            // the document as fetched
	endpoints map[string]string // RFC 8414 member → URL, on the issuer's origin only
	at        time.Time
}

// asCache holds the binding's discovered authorization server.
type asCache struct {
	mu  sync.Mutex
	cur *asServer
}

// OAuthAS makes one request of the oauth-as extension. h holds the
// command's forwarded headers. The reply is the authorization server's
// answer (any status), or the binding's own refusal: 404 for an endpoint the
// metadata does not declare, 502 when discovery fails, the endpoint is off
// the issuer's origin, or the answer redirects into it. An error means no
// request got an answer.
func (b *Binding) OAuthAS(ctx context.Context, req *wire.ASRequest, h http.Header) (*binding.Reply, error) {
	if req == nil || !wire.ValidASEndpoint(req.Endpoint) {
		return asRefusal(http.StatusBadRequest, "invalid_request", "unknown authorization server endpoint"), nil
	}
	as, refusal := b.authorizationServer(ctx, h)
	if refusal != nil {
		return refusal, nil
	}
	if req.Endpoint == wire.ASMetadata {
		return &binding.Reply{Status: http.StatusOK, Final: true, Body: as.metadata,
			Header: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}}}, nil
	}
	target, ok := as.endpoints[req.Endpoint]
	if !ok {
		return asRefusal(http.StatusNotFound, "invalid_request", "the authorization server declares no such endpoint on its own origin"), nil
	}
	u, err := url.Parse(target)
	if err != nil {
		return asRefusal(http.StatusBadGateway, "server_error", "the authorization server's endpoint is not a URL"), nil
	}
	if req.Query != "" {
		if u.RawQuery != "" {
			u.RawQuery += "&" + req.Query
		} else {
			u.RawQuery = req.Query
		}
	}
	method := http.MethodGet
	var body io.Reader
	if req.Method == http.MethodPost {
		method, body = http.MethodPost, strings.NewReader(req.Body)
	}
	fctx, cancel := context.WithTimeout(ctx, discoveryFetchTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(fctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("http binding: build authorization server request: %w", err)
	}
	for _, k := range asForwarded {
		if vs := h.Values(k); len(vs) > 0 {
			hreq.Header[k] = vs
		}
	}
	if v := h.Get("Authorization"); v != "" && (req.Endpoint == wire.ASToken || req.Endpoint == wire.ASRegistration) {
		hreq.Header.Set("Authorization", v)
	}
	resp, err := b.noRedirects().Do(hreq)
	if err != nil {
		return nil, classify(fctx, err, false)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxOAuthASBody+1))
	if err != nil {
		return nil, classify(fctx, err, true)
	}
	if len(raw) > wire.MaxOAuthASBody {
		return asRefusal(http.StatusBadGateway, "server_error", "the authorization server's answer is too large"), nil
	}
	out := http.Header{}
	for _, k := range asKept {
		if vs := resp.Header.Values(k); len(vs) > 0 {
			out[k] = vs
		}
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		l, err := u.Parse(loc)
		if err != nil || sameOrigin(l, as.issuer) {
			// A login or consent page of the authorization server: the
			// client cannot reach it, and its address is not to leave the
			// network.
			b.log.Debug("http binding: authorization server redirected to its own origin: refused")
			return asRefusal(http.StatusBadGateway, "server_error",
				"the authorization server sent the client to a page only the agent's network can reach"), nil
		}
		out.Set("Location", l.String())
	}
	reply := &binding.Reply{Status: resp.StatusCode, Header: out, Final: true}
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) > 0 && t[0] == '{' && json.Valid(raw) {
		reply.Body = raw
	} else {
		out.Del("Content-Type") // the body is not carried
	}
	return reply, nil
}

// noRedirects returns the binding's client, never following a redirect.
func (b *Binding) noRedirects() *http.Client {
	c := *b.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// asRefusal is the binding's own answer to an oauth-as request, an OAuth
// error object (RFC 6749 section 5.2).
func asRefusal(status int, code, desc string) *binding.Reply {
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
	return &binding.Reply{Status: status, Final: true, Body: body,
		Header: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}}}
}

// authorizationServer returns the MCP server's authorization server,
// discovering it when the cache is empty or stale. The reply, when not nil,
// is the refusal to answer with.
func (b *Binding) authorizationServer(ctx context.Context, h http.Header) (*asServer, *binding.Reply) {
	b.as.mu.Lock()
	defer b.as.mu.Unlock()
	if c := b.as.cur; c != nil && time.Since(c.at) < asCacheTTL {
		return c, nil
	}
	as, why := b.discoverAS(ctx, h)
	if as == nil {
		b.log.Debug("http binding: authorization server discovery failed", "reason", why)
		return nil, asRefusal(http.StatusBadGateway, "temporarily_unavailable", "the agent could not discover the authorization server: "+why)
	}
	b.as.cur = as
	return as, nil
}

// discoverAS reads the MCP server's protected-resource metadata and its
// first authorization server's metadata. It returns nil and a reason
// (never a URL) on failure.
func (b *Binding) discoverAS(ctx context.Context, h http.Header) (*asServer, string) {
	fwd := http.Header{}
	for _, k := range []string{"Traceparent", "Tracestate"} {
		if vs := h.Values(k); len(vs) > 0 {
			fwd[k] = vs
		}
	}
	prm, err := b.OAuthDiscovery(ctx, fwd)
	if err != nil || prm == nil || prm.Status != http.StatusOK {
		return nil, "the MCP server has no protected-resource metadata"
	}
	var doc struct {
		AuthorizationServers []string `json:"authorization_servers"`
	}
	if json.Unmarshal(prm.Body, &doc) != nil || len(doc.AuthorizationServers) == 0 {
		return nil, "the protected-resource metadata names no authorization server"
	}
	issuer, err := url.Parse(doc.AuthorizationServers[0])
	if err != nil || (issuer.Scheme != "https" && issuer.Scheme != "http") || issuer.Host == "" || issuer.User != nil ||
		issuer.RawQuery != "" || issuer.Fragment != "" {
		return nil, "the authorization server is not an http(s) issuer URL"
	}
	for _, mu := range asMetadataURLs(issuer) {
		body, ok := b.asGet(ctx, mu)
		if !ok {
			continue
		}
		var md map[string]any
		if json.Unmarshal(body, &md) != nil {
			continue
		}
		iss, _ := md["issuer"].(string)
		if !sameIssuer(iss, issuer.String()) {
			return nil, "the authorization server's metadata names another issuer"
		}
		as := &asServer{issuer: issuer, metadata: body, endpoints: map[string]string{}, at: time.Now()}
		for _, k := range []string{wire.ASAuthorization, wire.ASToken, wire.ASRegistration, wire.ASJWKS} {
			s, _ := md[k].(string)
			if s == "" {
				continue
			}
			if eu, err := url.Parse(s); err == nil && sameOrigin(eu, issuer) && eu.Fragment == "" {
				as.endpoints[k] = eu.String()
			}
		}
		return as, ""
	}
	return nil, "the authorization server's metadata could not be fetched"
}

// asGet fetches one metadata candidate: a 200 JSON body of at most
// maxMetadataBytes. The MCP server's extra headers are not sent: they are
// for the MCP server, and the authorization server may be another service.
func (b *Binding) asGet(ctx context.Context, u string) ([]byte, bool) {
	fctx, cancel := context.WithTimeout(ctx, discoveryFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(fctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false
	}
	req.Header.Set("Accept", "application/json")
	resp, err := b.noRedirects().Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil || resp.StatusCode != http.StatusOK || len(body) > maxMetadataBytes {
		return nil, false
	}
	return body, true
}

// asMetadataURLs are an issuer's metadata locations, in the order MCP
// clients try them: RFC 8414 (well-known inserted before the path), then
// OpenID Connect Discovery (inserted, then appended).
func asMetadataURLs(issuer *url.URL) []string {
	path := strings.TrimSuffix(issuer.EscapedPath(), "/")
	o := issuer.Scheme + "://" + issuer.Host
	if path == "" {
		return []string{o + "/.well-known/oauth-authorization-server", o + "/.well-known/openid-configuration"}
	}
	return []string{o + "/.well-known/oauth-authorization-server" + path,
		o + "/.well-known/openid-configuration" + path, o + path + "/.well-known/openid-configuration"}
}

// sameIssuer compares issuer identifiers, tolerating one trailing slash (as
// MCP clients do: a URL's string form gains one).
func sameIssuer(a, b string) bool {
	return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/") && a != ""
}
