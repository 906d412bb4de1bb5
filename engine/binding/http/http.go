package httpbinding

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/internal/httpx"
	"github.com/sluicemcp/sluice/engine/internal/wwwauth"
	"github.com/sluicemcp/sluice/engine/wire"
)

// DefaultMaxResponseBytes caps one response body (JSON) or one SSE event when
// Config.MaxResponseBytes is zero.
const DefaultMaxResponseBytes = 16 << 20

// acceptBoth is the Accept header of every POST: the binding reads both.
const acceptBoth = "application/json, text/event-stream"

// Config says which MCP server to reach.
type Config struct {
	// URL is the MCP endpoint (for example http://10.0.0.5:3000/mcp).
	URL string
	// ExtraHeaders are sent to the MCP server on every request; forwarded
	// client headers with the same name override them.
	ExtraHeaders http.Header
	// MaxResponseBytes caps a JSON response body and each SSE event
	// (0 = DefaultMaxResponseBytes).
	MaxResponseBytes int64
	// UserAgent is sent as User-Agent unless ExtraHeaders set one ("" = the
	// HTTP client's default).
	UserAgent string
}

// Options holds the optional dependencies of a Binding; the zero value is the
// defaults.
type Options struct {
	// Logger receives debug logs (nil = discard). Payloads are never logged.
	Logger *slog.Logger
	// HTTPClient sends the requests (nil = a client with a tuned Transport, no
	// overall Timeout and no redirects: deadlines come from the ctx of Do).
	HTTPClient *http.Client
}

// Binding delivers JSON-RPC messages to one MCP server over Streamable HTTP.
// It is safe for concurrent use.
type Binding struct {
	url       string
	origin    *url.URL
	extra     http.Header
	max       int64
	client    *http.Client
	transport interface{ CloseIdleConnections() } // owned, closed by Close; nil when injected
	log       *slog.Logger
	as        asCache // the authorization server (oauthas.go)
}

// Interface guard.
var _ binding.Binding = (*Binding)(nil)

// serverURL parses raw, the MCP server URL of a binding (what, in errors):
// an absolute http or https URL.
func serverURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: parse url: %w", what, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: url %q: want an absolute http or https URL", what, u.Redacted())
	}
	return u, nil
}

// logger is o.Logger, or one that discards.
func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// client is o.HTTPClient, or else a client of the binding's own on
// NewTransport, which follows no redirect; own is that transport, for the
// binding's Close (nil for an injected client).
func (o Options) client() (c *http.Client, own interface{ CloseIdleConnections() }) {
	if o.HTTPClient != nil {
		return o.HTTPClient, nil
	}
	t := NewTransport()
	return &http.Client{
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, t
}

// New returns a Binding for cfg.URL.
func New(cfg Config, opts Options) (*Binding, error) {
	u, err := serverURL("http binding", cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.MaxResponseBytes < 0 {
		return nil, fmt.Errorf("http binding: max response bytes %d: must not be negative", cfg.MaxResponseBytes)
	}
	extra := cfg.ExtraHeaders.Clone()
	if cfg.UserAgent != "" && extra.Get("User-Agent") == "" {
		if extra == nil {
			extra = http.Header{}
		}
		extra.Set("User-Agent", cfg.UserAgent)
	}
	b := &Binding{
		url:    u.String(),
		origin: u,
		extra:  extra,
		max:    cfg.MaxResponseBytes,
		log:    opts.logger(),
	}
	if b.max == 0 {
		b.max = DefaultMaxResponseBytes
	}
	b.client, b.transport = opts.client()
	return b, nil
}

// NewTransport returns the transport a Binding uses when Options.HTTPClient
// is nil: HTTP/1.1 exchanges run on the calling goroutine (engine/internal/
// httpx: a quarter less latency per exchange than net/http's Transport here),
// many idle connections per host, no compression (so SSE events are not held
// back by a gzip writer). Requests to a proxy from the environment go through
// net/http's Transport.
func NewTransport() interface {
	http.RoundTripper
	CloseIdleConnections()
} {
	return httpx.New(httpx.Options{
		Dialer:             &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
		Proxy:              http.ProxyFromEnvironment,
		MaxIdlePerHost:     512,
		IdleTimeout:        90 * time.Second,
		DisableCompression: true,
	})
}

// Info describes the binding: HTTP servers hold no per-process state the
// tunnel must pin.
func (b *Binding) Info() binding.Info { return binding.Info{ProcAffinity: false} }

// Close releases idle connections of the binding's own transport.
func (b *Binding) Close() error {
	if b.transport != nil {
		b.transport.CloseIdleConnections()
	}
	return nil
}

// Do delivers req to the MCP server and emits each message of its answer as it
// arrives (see binding.Binding).
func (b *Binding) Do(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
	var emitErr error
	tracked := func(r *binding.Reply) error {
		emitErr = emit(r)
		return emitErr
	}
	var err error
	switch req.Kind {
	case binding.KindJSONRPC:
		err = b.post(ctx, req, tracked)
	case binding.KindSessionTermination:
		err = b.terminate(ctx, req, tracked)
	default:
		return fmt.Errorf("http binding: request kind %d: unknown", req.Kind)
	}
	if err != nil && err != emitErr && ctx.Err() != nil {
		// Whatever broke, the deadline or the cancellation came first.
		return classify(ctx, err, true)
	}
	return err
}

// skipHeader lists forwarded headers the binding never sends on: hop-by-hop
// headers, those the HTTP client computes itself, and client-identifying ones.
var skipHeader = map[string]bool{
	"Host":                true,
	"Content-Length":      true,
	"Content-Type":        true,
	"Accept":              true,
	"Accept-Encoding":     true,
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Authorization": true,
	"Proxy-Connection":    true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
	"Cookie":              true,
	"Forwarded":           true,
	"X-Real-Ip":           true,
	"Origin":              true,
}

// header builds the request header: extra headers, then forwarded ones
// (overriding), then the binding's own.
func (b *Binding) header(fwd http.Header) http.Header {
	h := make(http.Header, len(b.extra)+len(fwd)+2)
	for k, v := range b.extra {
		h[k] = v
	}
	var conn []string
	if c := fwd["Connection"]; len(c) > 0 {
		for _, v := range c {
			for f := range strings.SplitSeq(v, ",") {
				conn = append(conn, http.CanonicalHeaderKey(strings.TrimSpace(f)))
			}
		}
	}
	for k, v := range fwd {
		ck := http.CanonicalHeaderKey(k)
		if skipHeader[ck] || strings.HasPrefix(ck, "X-Forwarded-") || len(v) == 0 {
			continue
		}
		if len(conn) > 0 && contains(conn, ck) {
			continue
		}
		h[ck] = v
	}
	return h
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (b *Binding) post(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url, bytes.NewReader(req.Body))
	if err != nil {
		return fmt.Errorf("http binding: build request: %w", err)
	}
	hreq.Header = b.header(req.Header)
	hreq.Header["Content-Type"] = []string{"application/json"}
	hreq.Header["Accept"] = []string{acceptBoth}

	resp, err := b.client.Do(hreq)
	if err != nil {
		return classify(ctx, err, false)
	}
	defer resp.Body.Close()

	status := resp.StatusCode
	switch {
	case status == http.StatusAccepted || (req.Notification && status >= 200 && status < 300):
		// An accepted notification or client response: no body to read.
		b.drain(resp.Body)
		return emit(&binding.Reply{Status: status, Header: resp.Header, Final: true})
	case status >= 400:
		return b.httpError(ctx, resp, emit)
	case status < 200 || status >= 300:
		return protocolError(kindNonProtocol, fmt.Errorf("unexpected status %d", status))
	}

	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "text/event-stream" {
		return b.stream(ctx, req, resp, emit)
	}
	body, err := b.readBody(ctx, resp)
	if err != nil {
		return err
	}
	if _, err := peekMessage(body); err != nil {
		return err
	}
	return emit(&binding.Reply{Status: status, Header: resp.Header, Body: body, Final: true})
}

// httpError handles a 4xx/5xx answer: a JSON-RPC body passes through with its
// status, and so does every 4xx (the body only when it is a JSON object). A
// 5xx without a JSON-RPC body is a target_http failure the agent reports with
// the status as provenance.
func (b *Binding) httpError(ctx context.Context, resp *http.Response, emit func(*binding.Reply) error) error {
	status := resp.StatusCode
	body, err := b.readBody(ctx, resp)
	if err != nil {
		var be *binding.Error
		if errors.As(err, &be) && be.Source == wire.SourceProtocol {
			// Unreadable or oversize error body: the status is what we know.
			return &binding.Error{Source: wire.SourceTargetHTTP, Kind: kindHTTPStatus, UpstreamStatus: status, Err: err}
		}
		return err
	}
	p, perr := peekMessage(body)
	if perr == nil && p.HasResult {
		return emit(&binding.Reply{Status: status, Header: resp.Header, Body: body, Final: true})
	}
	if status < 500 {
		// The server answered: its status decides what the client does next
		// (404 starts a new session, 400 may mean another protocol era,
		// 401/403 start OAuth discovery), so it passes through with the
		// headers, and with the body when that is a JSON object (the wire
		// carries nothing else).
		return emit(&binding.Reply{Status: status, Header: resp.Header, Body: jsonObjectOrNil(body), Final: true})
	}
	return &binding.Error{
		Source:         wire.SourceTargetHTTP,
		Kind:           kindHTTPStatus,
		UpstreamStatus: status,
		Err:            fmt.Errorf("http status %d without a JSON-RPC body", status),
	}
}

// jsonObjectOrNil returns b when it is one JSON object, else nil.
func jsonObjectOrNil(b []byte) json.RawMessage {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || t[0] != '{' || !json.Valid(t) {
		return nil
	}
	return b
}

// readBody reads the whole response body, at most b.max bytes.
func (b *Binding) readBody(ctx context.Context, resp *http.Response) ([]byte, error) {
	size := 512
	if n := resp.ContentLength; n > b.max {
		return nil, protocolError(kindBodyTooLarge, fmt.Errorf("content length %d over limit %d", n, b.max))
	} else if n >= 0 {
		size = int(n) + 1 // +1 so that EOF is read without growing
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := resp.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > b.max {
			return nil, protocolError(kindBodyTooLarge, fmt.Errorf("body over limit %d", b.max))
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, classify(ctx, err, true)
		}
	}
}

// drain reads a little of an unwanted body so the connection can be reused.
func (b *Binding) drain(r io.Reader) {
	_, _ = io.CopyN(io.Discard, r, 4096)
}

// stream splits an SSE response into messages and emits each as it arrives,
// stopping at the response to the request.
func (b *Binding) stream(ctx context.Context, req *binding.Request, resp *http.Response, emit func(*binding.Reply) error) error {
	id := req.ID
	if len(id) == 0 {
		id = requestID(req.Body)
	}
	defer func() { resp.Body.Close() }() // the resumed stream, if any (post closes the first)
	maxEvent := int(min(b.max, int64(^uint(0)>>1)))
	sr := newSSEReader(resp.Body, maxEvent)
	header := resp.Header
	first := true
	resumes, events := 0, 0
	for {
		ev, err := sr.next()
		if err == io.EOF && events == 0 && resumes == 0 && sr.lastID == "" && engine.AcceptsEventStream(req.Header) {
			// The server answered with an event stream and closed it without
			// a single event: no response, and no event id to resume from.
			// Pass that on as it came (a final reply with no body), so the
			// MCP client sees the same empty stream a direct client does.
			return emit(&binding.Reply{Status: resp.StatusCode, Header: header, Final: true})
		}
		if err == io.EOF {
			// The server ended the stream before the response (SSE polling,
			// SEP-1699). Resume it privately with GET + Last-Event-ID, as a
			// direct client would: the tunnel wire has no event ids, so the
			// MCP client cannot do it through the relay.
			next, rerr := b.resume(ctx, req, sr, resumes)
			if rerr != nil {
				return rerr
			}
			resumes++
			resp.Body.Close()
			resp = next
			lastID := sr.lastID // a resumed stream without ids of its own resumes from here again
			sr = newSSEReader(resp.Body, maxEvent)
			sr.lastID = lastID
			continue
		}
		if err != nil {
			return classify(ctx, err, true)
		}
		events++
		if len(bytes.TrimSpace(ev.Data)) == 0 {
			continue // priming or keep-alive event
		}
		p, perr := peekMessage(ev.Data)
		if ev.Type != "" && ev.Type != "message" {
			if perr != nil {
				b.log.Debug("http binding: skipped non-message SSE event", "method", ev.Type)
				continue
			}
		} else if perr != nil {
			return perr
		}
		final := p.HasResult && sameID(p.ID, id)
		h := header
		if !first {
			h = header.Clone()
		}
		first = false
		if err := emit(&binding.Reply{Status: resp.StatusCode, Header: h, Body: ev.Data, Final: final}); err != nil {
			return err
		}
		if final {
			finishStream(resp.Body)
			return nil
		}
	}
}

// maxResumes bounds how often one request's stream is resumed.
const maxResumes = 5

// maxResumeWait caps the server's retry hint.
const maxResumeWait = 5 * time.Second

// resume reopens an event stream that ended before the response: after the
// server's retry delay (capped), GET the endpoint with Last-Event-ID in the
// same session. It fails with the transport_closed error the caller would
// have returned when resumption is impossible (no event id, no session, the
// server refuses).
func (b *Binding) resume(ctx context.Context, req *binding.Request, sr *sseReader, n int) (*http.Response, error) {
	closed := &binding.Error{Source: wire.SourceTransportClosed, Kind: kindUnexpectedEOF,
		Err: errors.New("event stream ended before the response")}
	session := req.Header.Get("Mcp-Session-Id")
	if sr.lastID == "" || session == "" || n >= maxResumes {
		return nil, closed
	}
	if wait := min(sr.retry, maxResumeWait); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, classify(ctx, ctx.Err(), true)
		}
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return nil, closed
	}
	hreq.Header = b.header(req.Header)
	hreq.Header["Accept"] = []string{"text/event-stream"}
	hreq.Header["Last-Event-Id"] = []string{sr.lastID}
	resp, err := b.client.Do(hreq)
	if err != nil {
		return nil, classify(ctx, err, false)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || mt != "text/event-stream" {
		b.drain(resp.Body)
		resp.Body.Close()
		b.log.Debug("http binding: server refused to resume an event stream", "status", resp.StatusCode)
		return nil, closed
	}
	return resp, nil
}

// finishStream gives a server that ends its event stream right after the
// response a moment to do so, so the connection goes back to the pool
// instead of being torn down; a stream that stays open is closed by the
// caller after the wait. The reply was already emitted: this costs the
// client nothing.
func finishStream(body io.Reader) {
	done := make(chan struct{})
	go func() {
		_, _ = io.CopyN(io.Discard, body, 64<<10)
		close(done)
	}()
	t := time.NewTimer(20 * time.Millisecond)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
}

// terminate ends a session with DELETE and reports the server's status.
func (b *Binding) terminate(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodDelete, b.url, nil)
	if err != nil {
		return fmt.Errorf("http binding: build request: %w", err)
	}
	hreq.Header = b.header(req.Header)
	resp, err := b.client.Do(hreq)
	if err != nil {
		return classify(ctx, err, false)
	}
	defer resp.Body.Close()
	b.drain(resp.Body)
	return emit(&binding.Reply{Status: resp.StatusCode, Header: resp.Header, Final: true})
}

// Limits of OAuthDiscovery.
const (
	// maxMetadataBytes caps one discovery answer (metadata documents are a
	// few hundred bytes).
	maxMetadataBytes = 1 << 20
	// discoveryFetchTimeout bounds each request of a discovery.
	discoveryFetchTimeout = 10 * time.Second
)

// wellKnownPRM is the RFC 9728 well-known path prefix.
const wellKnownPRM = "/.well-known/oauth-protected-resource"

// discoveryProbe is the body of the unauthenticated request whose 401 names
// the metadata URL: a ping, which every MCP server may answer at any time
// and which changes no state.
var discoveryProbe = []byte(`{"jsonrpc":"2.0","id":"sluice-oauth-discovery","method":"ping"}`)

// OAuthDiscovery fetches the MCP server's RFC 9728 protected-resource
// metadata from inside the network, the way an MCP client discovers it:
//
//  1. an unauthenticated POST (a ping) to the MCP endpoint; a 401 whose
//     WWW-Authenticate names a resource_metadata URL on the server's own
//     origin makes that URL the first candidate (other origins are ignored:
//     the agent never fetches URLs the server does not own);
//  2. /.well-known/oauth-protected-resource followed by the endpoint's path;
//  3. /.well-known/oauth-protected-resource at the root.
//
// Candidates are tried in order until one answers with something other
// than 404. It returns that answer's status, headers and body (whatever the
// status; the body is not checked to be JSON). h holds the command's headers:
// they are forwarded like Do's, minus Authorization (discovery is
// unauthenticated). Every request is bounded in time and size and never
// follows a redirect.
func (b *Binding) OAuthDiscovery(ctx context.Context, h http.Header) (*binding.Reply, error) {
	fwd := h.Clone()
	if fwd != nil {
		fwd.Del("Authorization")
	}
	var candidates []string
	if u := b.probeResourceMetadata(ctx, fwd); u != "" {
		candidates = append(candidates, u)
	}
	path := strings.TrimSuffix(b.origin.EscapedPath(), "/")
	for _, p := range []string{wellKnownPRM + path, wellKnownPRM} {
		u := url.URL{Scheme: b.origin.Scheme, Host: b.origin.Host, User: b.origin.User, RawPath: p}
		if up, err := url.PathUnescape(p); err == nil {
			u.Path = up
		} else {
			u.Path = p
		}
		if s := u.String(); !slices.Contains(candidates, s) {
			candidates = append(candidates, s)
		}
	}
	var reply *binding.Reply
	for _, u := range candidates {
		rep, err := b.fetchMetadata(ctx, u, fwd)
		if err != nil {
			return nil, err
		}
		reply = rep
		if rep.Status != http.StatusNotFound {
			break
		}
	}
	return reply, nil
}

// probeResourceMetadata sends the unauthenticated probe and returns the
// resource_metadata URL of a 401's WWW-Authenticate when it is on the MCP
// server's own origin, or "".
func (b *Binding) probeResourceMetadata(ctx context.Context, fwd http.Header) string {
	pctx, cancel := context.WithTimeout(ctx, discoveryFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodPost, b.url, bytes.NewReader(discoveryProbe))
	if err != nil {
		return ""
	}
	req.Header = b.header(fwd)
	req.Header.Del("Mcp-Session-Id")
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Accept"] = []string{acceptBoth}
	resp, err := b.client.Do(req)
	if err != nil {
		return ""
	}
	b.drain(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return ""
	}
	for _, v := range resp.Header.Values("Www-Authenticate") {
		raw := wwwauth.Value(v, "resource_metadata")
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || !sameOrigin(u, b.origin) {
			b.log.Debug("http binding: ignored a resource_metadata URL off the MCP server's origin")
			return ""
		}
		return u.String()
	}
	return ""
}

// fetchMetadata GETs one discovery candidate.
func (b *Binding) fetchMetadata(ctx context.Context, u string, fwd http.Header) (*binding.Reply, error) {
	fctx, cancel := context.WithTimeout(ctx, discoveryFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(fctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("http binding: build metadata request: %w", err)
	}
	req.Header = b.header(fwd)
	req.Header.Del("Mcp-Session-Id")
	req.Header["Accept"] = []string{"application/json"}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, classify(fctx, err, false)
	}
	defer resp.Body.Close()
	if resp.ContentLength > maxMetadataBytes {
		return nil, protocolError(kindBodyTooLarge, fmt.Errorf("metadata of %d bytes over limit %d", resp.ContentLength, maxMetadataBytes))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return nil, classify(fctx, err, true)
	}
	if len(body) > maxMetadataBytes {
		return nil, protocolError(kindBodyTooLarge, fmt.Errorf("metadata over limit %d", maxMetadataBytes))
	}
	return &binding.Reply{Status: resp.StatusCode, Header: resp.Header, Body: body, Final: true}, nil
}

// sameOrigin reports whether u has a's scheme, host and port (default ports
// filled in).
func sameOrigin(u, a *url.URL) bool {
	if !strings.EqualFold(u.Scheme, a.Scheme) || u.User != nil && a.User == nil {
		return false
	}
	port := func(x *url.URL) string {
		if p := x.Port(); p != "" {
			return p
		}
		if strings.EqualFold(x.Scheme, "https") {
			return "443"
		}
		return "80"
	}
	return strings.EqualFold(u.Hostname(), a.Hostname()) && port(u) == port(a)
}
