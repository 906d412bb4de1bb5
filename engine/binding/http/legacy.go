package httpbinding

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/internal/jsonscan"
	"github.com/sluicemcp/sluice/engine/wire"
)

// Defaults for LegacyConfig's zero fields.
const (
	// DefaultSessionIdleTimeout closes a legacy session nobody used for this
	// long (its client gets 404 and initializes again).
	DefaultSessionIdleTimeout = 10 * time.Minute
	// DefaultMaxSessions bounds the legacy sessions open at once.
	DefaultMaxSessions = 256
	// legacyProtocolVersion is what the binding's own shared session
	// initializes with: the HTTP+SSE transport's revision.
	legacyProtocolVersion = "2024-11-05"
	// maxQueuedNotes bounds the server messages queued for one call; beyond
	// it notifications are dropped (the response never is).
	maxQueuedNotes = 256
)

// LegacyConfig says which MCP server speaking the deprecated 2024-11-05
// HTTP+SSE transport to reach.
type LegacyConfig struct {
	// URL is the server's SSE endpoint, e.g. http://10.0.0.5:3001/sse.
	URL string
	// ExtraHeaders are sent on every request (the GET stream and each POST);
	// forwarded client headers with the same name override them.
	ExtraHeaders http.Header
	// MaxResponseBytes caps one SSE event (0 = DefaultMaxResponseBytes).
	MaxResponseBytes int64
	// SessionIdleTimeout closes a session unused this long (0 =
	// DefaultSessionIdleTimeout).
	SessionIdleTimeout time.Duration
	// MaxSessions bounds the open sessions (0 = DefaultMaxSessions).
	MaxSessions int
	// ClientName and ClientVersion identify the binding when it initializes
	// the session it shares among requests that carry none (2026-07-28
	// clients); "" = "sluice" and "0".
	ClientName, ClientVersion string
}

// LegacySSE delivers JSON-RPC messages to an MCP server that speaks the
// deprecated 2024-11-05 HTTP+SSE transport, so old servers work behind the
// tunnel. The server has one session per open GET stream: it sends the POST
// endpoint as the stream's first event, takes each message as a POST there
// (202), and sends every response and notification on the stream.
//
// The binding maps the tunnel's Streamable HTTP sessions onto those: an
// initialize without Mcp-Session-Id opens a stream and answers with a
// session id the binding mints; later requests with that id go to the same
// stream; DELETE closes it. A request's response is matched on the stream
// by id (the binding rewrites request ids to its own, so clients of a shared
// session cannot collide, and restores them in the response); progress
// notifications go to the call whose progressToken they carry, other server
// messages to the session's latest running call. Requests without a session
// share one stream the binding initializes itself. It is safe for
// concurrent use.
type LegacySSE struct {
	url         *url.URL
	extra       http.Header
	max         int64
	idle        time.Duration
	maxSessions int
	clientName  string
	clientVer   string
	client      *http.Client
	transport   interface{ CloseIdleConnections() }
	log         *slog.Logger

	mu       sync.Mutex
	sessions map[string]*legacySession
	shared   *legacySession
	sharedMu sync.Mutex // serializes opening the shared session
	closed   bool
}

// Interface guard.
var _ binding.Binding = (*LegacySSE)(nil)

// NewLegacySSE returns a binding for the HTTP+SSE server at cfg.URL.
func NewLegacySSE(cfg LegacyConfig, opts Options) (*LegacySSE, error) {
	u, err := serverURL("legacy sse binding", cfg.URL)
	if err != nil {
		return nil, err
	}
	b := &LegacySSE{
		url: u, extra: cfg.ExtraHeaders.Clone(), max: cfg.MaxResponseBytes, idle: cfg.SessionIdleTimeout,
		maxSessions: cfg.MaxSessions, clientName: cfg.ClientName, clientVer: cfg.ClientVersion,
		log: opts.logger(), sessions: map[string]*legacySession{},
	}
	if b.max <= 0 {
		b.max = DefaultMaxResponseBytes
	}
	if b.idle <= 0 {
		b.idle = DefaultSessionIdleTimeout
	}
	if b.maxSessions <= 0 {
		b.maxSessions = DefaultMaxSessions
	}
	if b.clientName == "" {
		b.clientName, b.clientVer = "sluice", "0"
	}
	b.client, b.transport = opts.client()
	return b, nil
}

// Info describes the binding: sessions live in this process.
func (b *LegacySSE) Info() binding.Info { return binding.Info{ProcAffinity: true} }

// Close closes every session's stream.
func (b *LegacySSE) Close() error {
	b.mu.Lock()
	b.closed = true
	ss := make([]*legacySession, 0, len(b.sessions)+1)
	for _, s := range b.sessions {
		ss = append(ss, s)
	}
	if b.shared != nil {
		ss = append(ss, b.shared)
	}
	b.sessions, b.shared = map[string]*legacySession{}, nil
	b.mu.Unlock()
	for _, s := range ss {
		s.close(errors.New("binding closed"))
	}
	if b.transport != nil {
		b.transport.CloseIdleConnections()
	}
	return nil
}

// legacySession is one open GET stream of the server.
type legacySession struct {
	b        *LegacySSE
	id       string // the Mcp-Session-Id minted for the client ("" for the shared one)
	endpoint string // where messages are POSTed
	shared   bool   // the binding's own session: no client's headers
	cancel   context.CancelFunc
	ready    chan struct{} // closed once the endpoint is known
	done     chan struct{} // closed when the stream has ended
	err      error         // why it ended (set before done closes)

	mu       sync.Mutex
	nextID   int64
	pending  map[string]*legacyCall // by the id the binding gave the request
	order    []*legacyCall          // running calls, oldest first
	lastUsed time.Time
}

// legacyCall is one request waiting for its response on the stream.
type legacyCall struct {
	id       string          // the binding's id for it (a JSON number)
	clientID json.RawMessage // the client's id, restored in the response
	token    string          // the progressToken it asked for ("" = none)
	notes    chan []byte     // server messages for it, in stream order
	final    chan []byte     // its response
}

// Do delivers req (see binding.Binding).
func (b *LegacySSE) Do(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
	b.sweep()
	sid := req.Header.Get("Mcp-Session-Id")
	if req.Kind == binding.KindSessionTermination {
		return b.terminate(sid, emit)
	}
	var p engine.Peek
	if pp, err := engine.PeekMessage(req.Body); err == nil {
		p = pp
	}
	var s *legacySession
	minted := false
	switch {
	case sid != "":
		b.mu.Lock()
		s = b.sessions[sid]
		b.mu.Unlock()
		if s != nil && s.ended() {
			b.drop(s, errors.New("stream ended"))
			s = nil
		}
		if s == nil { // unknown or ended: the client initializes again
			return emit(&binding.Reply{Status: http.StatusNotFound, Header: jsonHeader(),
				Body: engine.ErrorResponse(req.ID, &engine.RPCError{Code: -32001, Message: "session not found"}), Final: true})
		}
	case p.Method == "initialize":
		var err error
		if s, err = b.open(ctx, req.Header, true); err != nil {
			return err
		}
		minted = true
	default:
		var err error
		if s, err = b.sharedSession(ctx); err != nil {
			return err
		}
	}
	err := s.do(ctx, req, p, func(r *binding.Reply) error {
		if minted && r.Final {
			if r.Header == nil {
				r.Header = http.Header{}
			}
			r.Header.Set("Mcp-Session-Id", s.id)
		}
		return emit(r)
	})
	if minted && err != nil {
		b.drop(s, err)
	}
	return err
}

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

// terminate closes the session's stream.
func (b *LegacySSE) terminate(sid string, emit func(*binding.Reply) error) error {
	b.mu.Lock()
	s := b.sessions[sid]
	delete(b.sessions, sid)
	b.mu.Unlock()
	if s == nil {
		return emit(&binding.Reply{Status: http.StatusNotFound, Final: true})
	}
	s.close(errors.New("session terminated"))
	return emit(&binding.Reply{Status: http.StatusOK, Final: true})
}

// drop forgets and closes s.
func (b *LegacySSE) drop(s *legacySession, why error) {
	b.mu.Lock()
	if b.sessions[s.id] == s {
		delete(b.sessions, s.id)
	}
	if b.shared == s {
		b.shared = nil
	}
	b.mu.Unlock()
	s.close(why)
}

// sweep closes sessions idle for longer than the idle timeout.
func (b *LegacySSE) sweep() {
	now := time.Now()
	var stale []*legacySession
	b.mu.Lock()
	for id, s := range b.sessions {
		s.mu.Lock()
		idle := len(s.pending) == 0 && now.Sub(s.lastUsed) > b.idle
		s.mu.Unlock()
		if idle {
			delete(b.sessions, id)
			stale = append(stale, s)
		}
	}
	b.mu.Unlock()
	for _, s := range stale {
		b.log.Debug("legacy sse binding: closing an idle session")
		s.close(errors.New("idle"))
	}
}

// open opens a stream and waits for its endpoint. register adds it to the
// sessions under a fresh id.
func (b *LegacySSE) open(ctx context.Context, fwd http.Header, register bool) (*legacySession, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, &binding.Error{Source: wire.SourceClientInternal, Kind: kindUnknown, Err: errors.New("legacy sse binding closed")}
	}
	if register && len(b.sessions) >= b.maxSessions {
		b.mu.Unlock()
		return nil, &binding.Error{Source: wire.SourceClientInternal, Kind: kindUnknown, Err: fmt.Errorf("%d legacy sessions open: no room for another", b.maxSessions)}
	}
	b.mu.Unlock()
	sctx, cancel := context.WithCancel(context.Background())
	s := &legacySession{b: b, shared: !register, cancel: cancel, ready: make(chan struct{}), done: make(chan struct{}),
		pending: map[string]*legacyCall{}, lastUsed: time.Now()}
	hreq, err := http.NewRequestWithContext(sctx, http.MethodGet, b.url.String(), nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("legacy sse binding: build request: %w", err)
	}
	hreq.Header = b.header(fwd)
	hreq.Header["Accept"] = []string{"text/event-stream"}
	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := b.client.Do(hreq)
		got <- result{resp, err}
	}()
	var resp *http.Response
	select {
	case r := <-got:
		if r.err != nil {
			cancel()
			return nil, classify(ctx, r.err, false)
		}
		resp = r.resp
	case <-ctx.Done():
		cancel()
		go func() { // the GET may still answer: do not leak its body
			if r := <-got; r.resp != nil {
				r.resp.Body.Close()
			}
		}()
		return nil, classify(ctx, ctx.Err(), false)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || mt != "text/event-stream" {
		_, _ = io.CopyN(io.Discard, resp.Body, 4096)
		resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusOK {
			return nil, &binding.Error{Source: wire.SourceTargetHTTP, Kind: kindHTTPStatus, UpstreamStatus: resp.StatusCode,
				Err: fmt.Errorf("GET of the SSE endpoint answered %d", resp.StatusCode)}
		}
		return nil, protocolError(kindNonProtocol, fmt.Errorf("GET of the SSE endpoint answered %s, not an event stream", mt))
	}
	go s.read(resp.Body)
	select {
	case <-s.ready:
	case <-s.done:
		return nil, s.err
	case <-ctx.Done():
		s.close(ctx.Err())
		return nil, classify(ctx, ctx.Err(), true)
	}
	if register {
		s.id = newSessionID()
		b.mu.Lock()
		b.sessions[s.id] = s
		b.mu.Unlock()
	}
	return s, nil
}

func newSessionID() string {
	var r [16]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

// sharedSession returns the session for requests without one, opening and
// initializing it (as the binding itself) when needed. It carries no
// client's headers: its clients are many.
func (b *LegacySSE) sharedSession(ctx context.Context) (*legacySession, error) {
	b.sharedMu.Lock()
	defer b.sharedMu.Unlock()
	b.mu.Lock()
	s := b.shared
	b.mu.Unlock()
	if s != nil && !s.ended() {
		return s, nil
	}
	s, err := b.open(ctx, nil, false)
	if err != nil {
		return nil, err
	}
	init := fmt.Appendf(nil, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":%q,"capabilities":{},"clientInfo":{"name":%q,"version":%q}}}`,
		legacyProtocolVersion, b.clientName, b.clientVer)
	var answer []byte
	err = s.do(ctx, &binding.Request{Kind: binding.KindJSONRPC, ID: json.RawMessage(`0`), Body: init}, engine.Peek{ID: json.RawMessage(`0`), Method: "initialize"},
		func(r *binding.Reply) error {
			if r.Final {
				answer = r.Body
			}
			return nil
		})
	if err == nil {
		if p, perr := engine.PeekMessage(answer); perr != nil || !p.HasResult || bytes.Contains(answer, []byte(`"error"`)) {
			err = protocolError(kindInvalidResponse, errors.New("the server refused the binding's initialize"))
		}
	}
	if err == nil {
		err = s.post(ctx, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), nil)
	}
	if err != nil {
		s.close(err)
		return nil, err
	}
	b.mu.Lock()
	b.shared = s
	b.mu.Unlock()
	return s, nil
}

func (s *legacySession) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// close ends the stream; calls waiting on it fail with why.
func (s *legacySession) close(why error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = &binding.Error{Source: wire.SourceTransportClosed, Kind: kindEOF, Err: fmt.Errorf("legacy sse stream ended: %w", why)}
	}
	s.mu.Unlock()
	s.cancel()
}

// read reads the stream until it ends: the endpoint first, then messages.
func (s *legacySession) read(body io.ReadCloser) {
	defer func() {
		body.Close()
		s.mu.Lock()
		if s.err == nil {
			s.err = &binding.Error{Source: wire.SourceTransportClosed, Kind: kindUnexpectedEOF, Err: errors.New("the server closed its event stream")}
		}
		s.mu.Unlock()
		close(s.done)
	}()
	sr := newSSEReader(body, int(min(s.b.max, int64(^uint(0)>>1))))
	gotEndpoint := false
	for {
		ev, err := sr.next()
		if err != nil {
			return
		}
		switch ev.Type {
		case "endpoint":
			if gotEndpoint {
				continue
			}
			ep, err := s.b.resolveEndpoint(string(bytes.TrimSpace(ev.Data)))
			if err != nil {
				s.b.log.Warn("legacy sse binding: unusable endpoint event", "err", err)
				s.close(err)
				return
			}
			s.endpoint, gotEndpoint = ep, true
			close(s.ready)
		case "", "message":
			if gotEndpoint {
				s.dispatch(ev.Data)
			}
		}
	}
}

// resolveEndpoint resolves the endpoint event's URI against the stream's
// URL; it must stay on the same origin.
func (b *LegacySSE) resolveEndpoint(ref string) (string, error) {
	r, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("endpoint %q is not a URL", ref)
	}
	u := b.url.ResolveReference(r)
	if u.Scheme != b.url.Scheme || u.Host != b.url.Host {
		return "", errors.New("endpoint on another origin than the SSE URL")
	}
	return u.String(), nil
}

// dispatch hands one server message to the call it belongs to.
func (s *legacySession) dispatch(data []byte) {
	p, err := engine.PeekMessage(data)
	if err != nil {
		s.b.log.Debug("legacy sse binding: skipped an event that is not a JSON-RPC message")
		return
	}
	msg := bytes.Clone(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.Method == "" && p.HasResult {
		c := s.pending[idKey(p.ID)]
		if c == nil {
			s.b.log.Debug("legacy sse binding: response for no running call")
			return
		}
		delete(s.pending, c.id)
		s.unorder(c)
		c.final <- msg
		return
	}
	var c *legacyCall
	if p.ID == nil { // a notification: progress goes where its token says
		if tok := progressToken(data); tok != "" {
			for _, x := range s.order {
				if x.token == tok {
					c = x
				}
			}
		}
	}
	if c == nil && len(s.order) > 0 {
		c = s.order[len(s.order)-1] // the latest running call
	}
	if c == nil {
		s.b.log.Debug("legacy sse binding: server message with no running call to carry it: dropped", "method", p.Method)
		return
	}
	select {
	case c.notes <- msg:
	default:
		s.b.log.Debug("legacy sse binding: too many queued server messages for one call: dropped", "method", p.Method)
	}
}

func (s *legacySession) unorder(c *legacyCall) {
	for i, x := range s.order {
		if x == c {
			s.order = append(s.order[:i], s.order[i+1:]...)
			return
		}
	}
}

// idKey is a JSON-RPC id as a map key (numbers as written).
func idKey(id json.RawMessage) string { return string(bytes.TrimSpace(id)) }

// progressToken returns params.progressToken (or params._meta.progressToken)
// as raw JSON, or "".
func progressToken(msg []byte) string {
	var m struct {
		Params struct {
			Token json.RawMessage `json:"progressToken"`
			Meta  struct {
				Token json.RawMessage `json:"progressToken"`
			} `json:"_meta"`
		} `json:"params"`
	}
	if json.Unmarshal(msg, &m) != nil {
		return ""
	}
	if len(m.Params.Token) > 0 {
		return string(m.Params.Token)
	}
	return string(m.Params.Meta.Token)
}

// do sends one message on the session and, for a request, waits for its
// response on the stream.
func (s *legacySession) do(ctx context.Context, req *binding.Request, p engine.Peek, emit func(*binding.Reply) error) error {
	s.mu.Lock()
	s.lastUsed = time.Now()
	s.mu.Unlock()
	if req.Notification || p.ID == nil || p.Method == "" {
		// A notification, or the client's answer to a server request.
		if err := s.post(ctx, req.Body, req.Header); err != nil {
			return err
		}
		return emit(&binding.Reply{Status: http.StatusAccepted, Final: true})
	}
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	s.nextID++
	c := &legacyCall{id: strconv.FormatInt(s.nextID, 10), clientID: p.ID, token: progressToken(req.Body),
		notes: make(chan []byte, maxQueuedNotes), final: make(chan []byte, 1)}
	s.pending[c.id] = c
	s.order = append(s.order, c)
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.pending, c.id)
		s.unorder(c)
		s.mu.Unlock()
	}
	body, err := replaceID(req.Body, []byte(c.id))
	if err != nil {
		forget()
		return protocolError(kindMalformedJSON, err)
	}
	if err := s.post(ctx, body, req.Header); err != nil {
		forget()
		return err
	}
	notes := 0
	for {
		select {
		case n := <-c.notes:
			notes++
			if err := emit(&binding.Reply{Status: http.StatusOK, Header: http.Header{"Content-Type": {engine.EventStream}}, Body: n}); err != nil {
				forget()
				return err
			}
		case resp := <-c.final:
			for drained := false; !drained; { // what came before the response goes first
				select {
				case n := <-c.notes:
					notes++
					if err := emit(&binding.Reply{Status: http.StatusOK, Header: http.Header{"Content-Type": {engine.EventStream}}, Body: n}); err != nil {
						return err
					}
				default:
					drained = true
				}
			}
			out, err := replaceID(resp, c.clientID)
			if err != nil {
				return protocolError(kindMalformedJSON, err)
			}
			ct := "application/json"
			if notes > 0 {
				ct = engine.EventStream
			}
			return emit(&binding.Reply{Status: http.StatusOK, Header: http.Header{"Content-Type": {ct}}, Body: out, Final: true})
		case <-s.done:
			forget()
			return s.err
		case <-ctx.Done():
			forget()
			return classify(ctx, ctx.Err(), true)
		}
	}
}

// post sends one message to the session's endpoint with the client's
// headers fwd; the server answers 202 (the reply, if any, comes on the
// stream).
func (s *legacySession) post(ctx context.Context, body []byte, fwd http.Header) error {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("legacy sse binding: build request: %w", err)
	}
	if s.shared {
		fwd = nil
	}
	hreq.Header = s.b.header(fwd)
	hreq.Header["Content-Type"] = []string{"application/json"}
	resp, err := s.b.client.Do(hreq)
	if err != nil {
		return classify(ctx, err, false)
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 4096)
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode == http.StatusNotFound {
			s.b.drop(s, errors.New("the server no longer knows the session"))
		}
		return &binding.Error{Source: wire.SourceTargetHTTP, Kind: kindHTTPStatus, UpstreamStatus: resp.StatusCode,
			Err: fmt.Errorf("POST to the session endpoint answered %d", resp.StatusCode)}
	}
	return nil
}

// replaceID returns msg with its top-level "id" value replaced by id.
func replaceID(msg []byte, id []byte) ([]byte, error) {
	sc := &jsonscan.Scanner{B: msg}
	start, end := -1, -1
	err := sc.Object(func(key []byte) error {
		v, err := sc.Value(0)
		if err == nil && start < 0 && string(key) == "id" {
			end = sc.I
			start = end - len(v)
		}
		return err
	})
	if err == jsonscan.ErrFallback { // escaped member names: decode and re-encode
		var m map[string]json.RawMessage
		if err := json.Unmarshal(msg, &m); err != nil {
			return nil, err
		}
		m["id"] = id
		return json.Marshal(m)
	}
	if err == nil {
		err = sc.End()
	}
	if err != nil {
		return nil, err
	}
	if start < 0 {
		return nil, errors.New("message has no id")
	}
	out := make([]byte, 0, len(msg)-(end-start)+len(id))
	out = append(out, msg[:start]...)
	out = append(out, id...)
	return append(out, msg[end:]...), nil
}

// header builds a request's headers like the Streamable HTTP binding does,
// without the Streamable HTTP session headers (the session is the stream).
func (b *LegacySSE) header(fwd http.Header) http.Header {
	h := (&Binding{extra: b.extra}).header(fwd)
	delete(h, "Mcp-Session-Id")
	delete(h, "Mcp-Protocol-Version")
	delete(h, "Last-Event-Id")
	return h
}
