package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// Readiness reasons (exact strings; /readyz answers them with 503).
const (
	ReasonProbePending = "mcp startup probe pending"
	ReasonProbeFailed  = "mcp probe failed: "
	ReasonRelay        = "relay unreachable"
	ReasonKeyRejected  = "runtime key rejected"
)

// ProbeProtocolVersion is the protocol version of the readiness probe.
const ProbeProtocolVersion = "2025-11-25"

type relayState uint8

const (
	relayUnknown relayState = iota
	relayOK
	relayUnreachable
	relayRejected
)

type readiness struct {
	mu        sync.Mutex
	relay     relayState
	rejected  string // the relay's reason for rejecting the key, if it gave one
	mcpDone   bool
	mcpOK     bool
	mcpReason string
}

func (r *readiness) setRelay(s relayState) {
	r.mu.Lock()
	r.relay = s
	r.mu.Unlock()
}

// setRejected records that the relay refused the runtime key, with its
// reason ("" if it gave none).
func (r *readiness) setRejected(reason string) {
	r.mu.Lock()
	r.relay, r.rejected = relayRejected, reason
	r.mu.Unlock()
}

func (r *readiness) setMCP(ok bool, reason string) {
	r.mu.Lock()
	r.mcpDone, r.mcpOK, r.mcpReason = true, ok, reason
	r.mu.Unlock()
}

// Ready reports whether the agent can serve: the MCP server answered the
// initialize probe and the relay accepted the key and a call. reason is one of
// the Reason* strings when not ready; ReasonKeyRejected is followed by ": "
// and the relay's own reason when it gave one (a revoked key says so).
func (a *Agent) Ready() (ok bool, reason string) {
	r := &a.ready
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.relay == relayRejected && r.rejected != "":
		return false, ReasonKeyRejected + ": " + r.rejected
	case r.relay == relayRejected:
		return false, ReasonKeyRejected
	case !r.mcpDone:
		return false, ReasonProbePending
	case !r.mcpOK:
		return false, ReasonProbeFailed + r.mcpReason
	case r.relay != relayOK:
		return false, ReasonRelay
	}
	return true, ""
}

// OpenCircuits returns the names of the agent's plugin stages whose circuit
// breaker is open: their failure policy applies without running them.
func (a *Agent) OpenCircuits() []string {
	if a.pipeline == nil {
		return nil
	}
	return a.pipeline.Chain().OpenCircuits()
}

// HealthHandler serves /healthz (always 200 "ok"), /readyz (200 "ready" or
// 503 with the reason, then one line per plugin stage whose circuit is
// open) and /metrics (Prometheus text).
func (a *Agent) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ok, reason := a.Ready()
		body := "ready\n"
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			body = reason + "\n"
		}
		// Stages whose circuit is open are listed, one line each; they do not
		// make the agent unready (RATIONALE.md, "An open plugin circuit is
		// listed, not made unready").
		for _, name := range a.OpenCircuits() {
			body += "plugin " + name + ": circuit open\n"
		}
		_, _ = w.Write([]byte(body))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.gatherer, promhttp.HandlerOpts{}))
	return mux
}

// ServeHealth listens on addr (127.0.0.1:0 picks a port), writes the resolved
// base URL (http://host:port) to urlFile when it is set, and serves h in the
// background until ctx ends. It returns once listening.
func ServeHealth(ctx context.Context, addr, urlFile string, h http.Handler, log *slog.Logger) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("health.listen-addr: listen on %q: %w", addr, err)
	}
	u := "http://" + ln.Addr().String()
	if urlFile != "" {
		if err := writeFileAtomic(urlFile, []byte(u+"\n")); err != nil {
			_ = ln.Close()
			return "", fmt.Errorf("health.url-file: %w", err)
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health server stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("health listening", "url", u)
	return u, nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".health-url-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// probe timing.
const (
	probeTimeout    = 10 * time.Second
	probeBackoffMin = 500 * time.Millisecond
	probeBackoffMax = 30 * time.Second
)

// probeLoop probes the main binding until it answers, with backoff.
func (a *Agent) probeLoop(ctx context.Context) {
	d := probeBackoffMin
	reachable := false
	for ctx.Err() == nil {
		reason := a.probeOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := a.cfg.ProbeInterval
		if reason == "" {
			if !reachable {
				a.log.Info("mcp server reachable", "channel", wire.DefaultChannel)
			}
			reachable, d = true, probeBackoffMin
			a.ready.setMCP(true, "")
		} else {
			a.ready.setMCP(false, reason)
			if reachable {
				a.log.Error("mcp server stopped answering: not ready", "channel", wire.DefaultChannel, "err", reason)
			} else {
				a.log.Warn("mcp probe failed", "channel", wire.DefaultChannel, "err", reason, "retry_in", d)
			}
			reachable, wait = false, d
			d = min(d*2, probeBackoffMax)
		}
		if sleepCtx(ctx, time.Time{}, wait) != nil {
			return
		}
	}
}

// probeBody is the readiness probe's initialize request.
func (a *Agent) probeBody() []byte {
	return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":"sluice-readiness-probe","method":"initialize","params":{"protocolVersion":%q,"capabilities":{},"clientInfo":{"name":%q,"version":%q}}}`,
		ProbeProtocolVersion, a.cfg.ClientName, a.cfg.ClientVersion)
}

// probeOnce sends initialize through the main binding and returns "" when
// the server is reachable, else a short reason (never a URL or body).
func (a *Agent) probeOnce(ctx context.Context) string {
	b := a.bindings[wire.DefaultChannel]
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if p, ok := b.(binding.Prober); ok {
		err := p.Probe(pctx)
		if err == nil {
			return ""
		}
		return probeReason(pctx, err)
	}
	req := &binding.Request{Kind: binding.KindJSONRPC, Body: a.probeBody(), ID: []byte(`"sluice-readiness-probe"`),
		Header: http.Header{"Accept": {"application/json, text/event-stream"}, "Content-Type": {"application/json"}}}
	var final *binding.Reply
	err := b.Do(pctx, req, func(r *binding.Reply) error {
		if r.Final {
			cp := *r
			final = &cp
		}
		return nil
	})
	if final == nil {
		if err == nil {
			return "no reply"
		}
		return probeReason(pctx, err)
	}
	if sid := final.Header.Get("Mcp-Session-Id"); sid != "" {
		a.deleteProbeSession(ctx, b, sid, final.Header.Get("Mcp-Protocol-Version"))
	}
	if final.Status == http.StatusUnauthorized || final.Status == http.StatusForbidden {
		return ""
	}
	if _, perr := engine.PeekMessage(final.Body); perr == nil && len(final.Body) > 0 {
		return ""
	}
	if final.Status != 0 && final.Status != http.StatusOK {
		return statusText(final.Status)
	}
	return "no JSON-RPC reply"
}

// probeReason turns a failed probe into a short reason ("" when the server
// is there but protected).
func probeReason(pctx context.Context, err error) string {
	f := binding.Failure(err)
	if f.UpstreamStatus != nil && (*f.UpstreamStatus == http.StatusUnauthorized || *f.UpstreamStatus == http.StatusForbidden) {
		return "" // protected but there
	}
	if pctx.Err() != nil {
		return "timeout"
	}
	if f.UpstreamStatus != nil {
		return statusText(*f.UpstreamStatus)
	}
	if f.TransportErrorKind != "" && f.TransportErrorKind != "unknown" {
		return f.Source + " (" + f.TransportErrorKind + ")"
	}
	return f.Source
}

func (a *Agent) deleteProbeSession(ctx context.Context, b binding.Binding, sid, version string) {
	dctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	h := http.Header{"Mcp-Session-Id": {sid}}
	if version == "" {
		version = ProbeProtocolVersion
	}
	h.Set("Mcp-Protocol-Version", version)
	err := b.Do(dctx, &binding.Request{Kind: binding.KindSessionTermination, Header: h}, func(*binding.Reply) error { return nil })
	if err != nil {
		a.log.Debug("could not delete the probe session", "channel", wire.DefaultChannel, "err", err)
	}
}
