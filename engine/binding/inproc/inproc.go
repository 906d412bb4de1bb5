package inproc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"

	"github.com/mark3labs/mcp-go/server"

	"github.com/sluicemcp/sluice/engine/binding"
	httpbinding "github.com/sluicemcp/sluice/engine/binding/http"
)

// endpoint is the URL the in-memory transport pretends to serve; no request
// ever leaves the process.
const endpoint = "http://inproc.invalid/mcp"

// Options holds the optional settings of a Binding; the zero value is the
// defaults.
type Options struct {
	// Logger receives debug logs (nil = discard).
	Logger *slog.Logger
	// MaxResponseBytes caps one message (0 = httpbinding.DefaultMaxResponseBytes).
	MaxResponseBytes int64
	// HTTPOptions are extra mcp-go Streamable HTTP options (for example
	// server.WithStateful(true)). The endpoint path and logger are set by New.
	HTTPOptions []server.StreamableHTTPOption
}

// Binding delivers requests to an mcp-go server in the same process. It is
// safe for concurrent use.
type Binding struct {
	http *httpbinding.Binding
}

// Interface guard.
var _ binding.Binding = (*Binding)(nil)

// New returns a Binding serving s.
func New(s *server.MCPServer, opts Options) (*Binding, error) {
	if s == nil {
		return nil, fmt.Errorf("inproc binding: server is nil")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hopts := append([]server.StreamableHTTPOption{
		server.WithEndpointPath("/mcp"),
		server.WithStreamableHTTPLogger(logger),
	}, opts.HTTPOptions...)
	h := server.NewStreamableHTTPServer(s, hopts...)
	hb, err := httpbinding.New(
		httpbinding.Config{URL: endpoint, MaxResponseBytes: opts.MaxResponseBytes},
		httpbinding.Options{Logger: logger, HTTPClient: &http.Client{Transport: Transport(h)}},
	)
	if err != nil {
		return nil, fmt.Errorf("inproc binding: %w", err)
	}
	return &Binding{http: hb}, nil
}

// Do delivers req to the server and emits each message as the handler writes
// it (see binding.Binding).
func (b *Binding) Do(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
	return b.http.Do(ctx, req, emit)
}

// Info describes the binding: sessions live in this process.
func (b *Binding) Info() binding.Info { return binding.Info{ProcAffinity: true} }

// Close releases the binding's resources.
func (b *Binding) Close() error { return b.http.Close() }

// Transport returns an http.RoundTripper that serves every request with h in
// memory. The response body streams what h writes as it writes it; closing the
// body cancels the handler's context.
func Transport(h http.Handler) http.RoundTripper { return memTransport{h: h} }

type memTransport struct{ h http.Handler }

func (t memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	pr, pw := io.Pipe()
	w := &pipeWriter{header: make(http.Header), pw: pw, ready: make(chan struct{})}
	sreq := req.WithContext(ctx)
	sreq.RemoteAddr = "inproc"
	sreq.RequestURI = req.URL.RequestURI()
	if sreq.Host == "" {
		sreq.Host = req.URL.Host
	}
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	go func() {
		defer func() {
			if p := recover(); p != nil {
				w.WriteHeader(http.StatusInternalServerError)
				pw.CloseWithError(fmt.Errorf("inproc: handler panic: %v", p))
				return
			}
			w.WriteHeader(http.StatusOK) // no-op when already written
			if err := ctx.Err(); err != nil {
				pw.CloseWithError(err) // the reader sees why the body ended
				return
			}
			pw.Close()
		}()
		t.h.ServeHTTP(w, sreq)
	}()
	select {
	case <-w.ready:
	case <-ctx.Done():
		cancel()
		pr.CloseWithError(ctx.Err())
		return nil, ctx.Err()
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.sent,
		Body:          &pipeBody{pr: pr, cancel: cancel},
		ContentLength: -1,
		Request:       req,
	}, nil
}

// pipeWriter is the http.ResponseWriter (and Flusher) of one in-memory call.
type pipeWriter struct {
	header http.Header
	sent   http.Header // snapshot at WriteHeader
	status int
	once   sync.Once
	ready  chan struct{}
	pw     *io.PipeWriter
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(code int) {
	w.once.Do(func() {
		w.status = code
		w.sent = w.header.Clone()
		close(w.ready)
	})
}

// Write blocks until the reader takes the bytes: nothing is buffered.
func (w *pipeWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(p)
}

// Flush is a no-op: every Write already reached the reader.
func (w *pipeWriter) Flush() {}

type pipeBody struct {
	pr     *io.PipeReader
	cancel context.CancelFunc
}

func (b *pipeBody) Read(p []byte) (int, error) { return b.pr.Read(p) }

func (b *pipeBody) Close() error {
	b.cancel()
	return b.pr.Close()
}
