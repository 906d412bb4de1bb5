package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/relay"
	"github.com/sluicemcp/sluice/engine/relay/natsconn"
	"github.com/sluicemcp/sluice/engine/relay/natsq"
	"github.com/sluicemcp/sluice/engine/relay/store"
)

// resolveTunnels maps the configured tunnels to relay.Tunnel, resolving
// their key references.
func (s *session) resolveTunnels(cfg *Config) ([]relay.Tunnel, error) {
	out := make([]relay.Tunnel, 0, len(cfg.Relay.Tunnels))
	for i, t := range cfg.Relay.Tunnels {
		p := fmt.Sprintf("relay.tunnels[%d]", i)
		rk, err := t.RuntimeKey.resolve(p+".runtime-key", s.cli.env)
		if err != nil {
			return nil, err
		}
		rt := relay.Tunnel{ID: t.ID, Name: t.Name, Description: t.Description, RuntimeKey: rk,
			AuthMode: t.AuthMode, ResponseTimeout: t.ResponseTimeout}
		if rt.OAuth, err = s.resolveTunnelOAuth(p+".oauth", t.OAuth); err != nil {
			return nil, err
		}
		if rt.ResponseTimeout == 0 {
			rt.ResponseTimeout = cfg.Relay.ResponseTimeout
		}
		for j, ck := range t.ClientKeys {
			key, err := ck.Key.resolve(fmt.Sprintf("%s.client-keys[%d].key", p, j), s.cli.env)
			if err != nil {
				return nil, err
			}
			rt.ClientKeys = append(rt.ClientKeys, relay.ClientKey{Name: ck.Name, Key: key})
		}
		out = append(out, rt)
	}
	return out, nil
}

// resolveTunnelOAuth maps a tunnel's OAuth settings, resolving their
// secret references.
func (s *session) resolveTunnelOAuth(p string, o TunnelOAuth) (relay.OAuthConfig, error) {
	out := relay.OAuthConfig{AuthorizationServer: o.AuthorizationServer, Issuer: o.Issuer, JWKSURL: o.JWKSURL,
		IntrospectionURL: o.IntrospectionURL, IntrospectionClientID: o.IntrospectionClientID,
		Scopes: o.Scopes, UpstreamHeader: o.UpstreamHeader}
	var err error
	if out.IntrospectionClientSecret, err = o.IntrospectionClientSecret.resolve(p+".introspection-client-secret", s.cli.env); err != nil {
		return out, err
	}
	if out.UpstreamSecret, err = o.UpstreamSecret.resolve(p+".upstream-secret", s.cli.env); err != nil {
		return out, err
	}
	return out, nil
}

// relayParts is a started relay: its public listener is bound, not yet served.
type relayParts struct {
	relay    *relay.Relay
	pipeline *engine.Pipeline
	ln       net.Listener
	url      string // the public base URL
	adminURL string
}

// relayAdminKeys resolves relay.admin-key (none when unset).
func (s *session) relayAdminKeys(cfg *Config) ([]string, error) {
	if !cfg.Relay.AdminKey.IsSet() {
		return nil, nil
	}
	k, err := cfg.Relay.AdminKey.resolve("relay.admin-key", s.cli.env)
	if err != nil {
		return nil, err
	}
	return []string{k}, nil
}

// startRelay binds the relay's listeners and builds it. The admin listener
// serves until ctx ends; the public one is served by serveRelay. st keeps
// the tunnels and keys of the admin API (nil: in memory); cluster joins the
// relay to its replicas (nil: alone).
func (s *session) startRelay(ctx context.Context, reg prometheus.Registerer, tunnels []relay.Tunnel, chain *engine.Chain, adminAddr string, st store.Store, cluster relay.Cluster) (*relayParts, error) {
	cfg := s.cfg
	// What the config names is resolved before anything binds: a config
	// error is reported as one whether or not the ports are free.
	admins, err := s.relayAdminKeys(cfg)
	if err != nil {
		return nil, err
	}
	var cert tls.Certificate
	if cfg.Relay.TLSCert != "" {
		if cert, err = relayCert(cfg); err != nil {
			return nil, err
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Relay.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("relay.listen-addr: listen on %s: %w", cfg.Relay.ListenAddr, err)
	}
	scheme := "http"
	if cfg.Relay.TLSCert != "" {
		scheme = "https"
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"}})
	}
	bound := ln.Addr().String()
	public, err := relayPublicURL(cfg, scheme, bound)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	p := &relayParts{ln: ln, url: public, pipeline: engine.NewPipeline(chain)}
	rc := relayConfig(cfg, bound, public, tunnels)
	rc.AdminKeys = admins
	p.relay, err = relay.New(rc,
		relay.Options{Logger: s.log, Registerer: reg, Pipeline: p.pipeline, Audit: s.auditFor("relay"), Store: st, Cluster: cluster})
	if err != nil {
		_ = ln.Close()
		return nil, &ConfigError{Msg: oneLine(err)}
	}
	if adminAddr != "" {
		if h, _, err := net.SplitHostPort(adminAddr); err == nil && !isLoopbackHost(h) {
			s.log.Warn("relay.admin-listen-addr is not loopback: the admin API, health and metrics are reachable from the network", "addr", adminAddr)
		}
		aln, err := lc.Listen(ctx, "tcp", adminAddr)
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("relay.admin-listen-addr: listen on %s: %w", adminAddr, err)
		}
		p.adminURL = "http://" + aln.Addr().String()
		srv := &http.Server{Handler: p.relay.AdminHandler(), ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second}
		go func() {
			if err := srv.Serve(aln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("relay admin server stopped", "err", err)
			}
		}()
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	return p, nil
}

// relayCert loads relay.tls-cert and relay.tls-key.
func relayCert(cfg *Config) (tls.Certificate, error) {
	certPEM, err := readFileLimited(cfg.Relay.TLSCert, maxPEMFileBytes)
	if err != nil {
		return tls.Certificate{}, cfgErr("relay.tls-cert", "load certificate and key: %v", unwrapPathErr(err))
	}
	keyPEM, err := readFileLimited(cfg.Relay.TLSKey, maxPEMFileBytes)
	if err != nil {
		return tls.Certificate{}, cfgErr("relay.tls-cert", "load certificate and key: %v", unwrapPathErr(err))
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return cert, cfgErr("relay.tls-cert", "load certificate and key: %v", err)
	}
	return cert, nil
}

// relayPublicURL is relay.public-url, or scheme://bound when it is unset and
// bound names a host.
func relayPublicURL(cfg *Config, scheme, bound string) (string, error) {
	if cfg.Relay.PublicURL != "" {
		return cfg.Relay.PublicURL, nil
	}
	if h, _, _ := net.SplitHostPort(bound); h == "" || net.ParseIP(h) != nil && net.ParseIP(h).IsUnspecified() {
		return "", cfgErr("relay.public-url", "required when relay.listen-addr %s names no host (clients check it against Host/Origin)", cfg.Relay.ListenAddr)
	}
	return scheme + "://" + bound, nil
}

// relayConfig maps the configuration to the relay's own.
func relayConfig(cfg *Config, bound, public string, tunnels []relay.Tunnel) relay.Config {
	return relay.Config{
		ListenAddr:                 bound,
		PublicURL:                  public,
		MaxBodyBytes:               cfg.Relay.MaxBodyBytes,
		MaxResponseBytes:           cfg.Relay.MaxResponseBytes,
		ResponseTimeout:            cfg.Relay.ResponseTimeout,
		DrainTimeout:               cfg.DrainTimeout,
		BodyReadTimeout:            cfg.Relay.BodyReadTimeout,
		MaxBodyBytesInFlight:       cfg.Relay.MaxBodyBytesInFlight,
		MaxBodyBytesInFlightPerKey: cfg.Relay.MaxBodyBytesInFlightPerKey,
		MaxConcurrentPerKey:        noLimit(cfg.Relay.MaxConcurrentPerKey),
		MaxConcurrentPerAddress:    noLimit(cfg.Relay.MaxConcurrentPerAddress),
		Tunnels:                    tunnels,
	}
}

// noLimit maps a limit whose 0 means "none" (the config's) to the relay's,
// where 0 means the default and a negative value none.
func noLimit(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func (s *session) runRelay(ctx context.Context) error {
	cfg := s.cfg
	tunnels, err := s.resolveTunnels(cfg)
	if err != nil {
		return err
	}
	reg := s.newRegistry()
	pl := s.newPipelines(reg)
	defer func() { _ = pl.close(context.WithoutCancel(ctx)) }()
	chain, err := pl.build(ctx, "relay.pipeline", cfg.Relay.Pipeline)
	if err != nil {
		return asConfigError(err)
	}
	// One NATS connection (relay.nats.url) carries both the tunnel store
	// and the replicas' work queue.
	nc, err := s.connectNATS(ctx)
	if err != nil {
		_ = chain.Close()
		return err
	}
	if nc != nil {
		defer func() { _ = nc.Drain() }()
	}
	// The queue first: natsq.New waits out a NATS cluster that is still
	// electing its JetStream leader, after which the store's bucket can be
	// made at once.
	cluster, closeCluster, err := s.joinCluster(ctx, nc)
	if err != nil {
		_ = chain.Close()
		return err
	}
	defer closeCluster()
	st, err := s.openRelayStore(ctx, nc)
	if err != nil {
		_ = chain.Close()
		return err
	}
	defer st.close()
	p, err := s.startRelay(ctx, reg, tunnels, chain, cfg.Relay.AdminListenAddr, st, cluster)
	if err != nil {
		_ = chain.Close()
		return err
	}
	defer func() { _ = p.pipeline.Close() }()
	if err := s.bootstrapAdminKey(ctx, p); err != nil {
		return err
	}
	live := s.relayLiveKeys(pl, p)
	s.log.Info("relay listening", "url", p.url, "mcp", p.url+"/v1/mcp/{tunnel}", "tunnels", len(tunnels), "store", st.where)
	if p.adminURL != "" {
		s.log.Info("relay admin listening", "url", p.adminURL, "endpoints", "/healthz /readyz /metrics /v1/tunnels")
	}
	s.log.Info("active chain", s.chainAttrs()...)
	rctx, stopReload := context.WithCancel(ctx)
	defer stopReload()
	go s.reloadLoop(rctx, live, nil)
	return p.relay.Serve(ctx, p.ln)
}

// bootstrapAdminKey prints the relay's first admin key on standard output,
// once: on the first start on an empty store without relay.admin-key. The
// log says that it happened, never the key. With the admin listener off
// there is no admin API to use a key on, so none is made: the first start
// with the listener on prints it.
func (s *session) bootstrapAdminKey(ctx context.Context, p *relayParts) error {
	if p.adminURL == "" {
		return nil
	}
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	key, err := p.relay.Bootstrap(bctx)
	if err != nil {
		return fmt.Errorf("relay: first admin key: %w", err)
	}
	if key == "" {
		return nil
	}
	admin := p.adminURL
	fmt.Fprintf(s.cli.stdout, `
First start: the relay's admin key, shown this once and stored only as a hash.
Keep it now (a password manager, a secret store):

  %s

Manage tunnels and keys with it:
  export SLUICE_ADMIN_KEY=<the key>
  sluice admin --admin-url %s tunnels create --name my-tunnel

`, key, admin)
	s.log.Warn("first start: an admin key was created and printed once on standard output; it is not shown again")
	return nil
}

// relayEntries are the relay's pipeline entries (none by default).
func relayEntries(c *Config) []PluginConfig { return c.Relay.Pipeline }

// relayLiveKeys are the relay's live-reloadable keys.
func (s *session) relayLiveKeys(pl *pipelines, p *relayParts) []liveKey {
	return []liveKey{
		s.pipelineKey(pl, "relay.pipeline", p.pipeline, relayEntries),
		{key: "relay.tunnels", apply: func(_ context.Context, cfg *Config) error {
			ts, err := s.resolveTunnels(cfg)
			if err != nil {
				return err
			}
			return p.relay.SetTunnels(ts)
		}, value: func(c *Config) any { return c.Relay.Tunnels }, always: func(*Config) bool { return true }},
	}
}

// joinCluster returns the replicas' shared queue on nc (nil, with nothing
// to close, when the relay is alone: nc nil).
func (s *session) joinCluster(ctx context.Context, nc *nats.Conn) (relay.Cluster, func(), error) {
	if nc == nil {
		return nil, func() {}, nil
	}
	n := s.cfg.Relay.NATS
	q, err := natsq.New(ctx, nc, natsq.Options{Prefix: n.Prefix, Replicas: n.Replicas, Logger: s.log})
	if err != nil {
		return nil, nil, fmt.Errorf("relay.nats: %w", err)
	}
	s.log.Info("relay joined NATS: replicas share work", "server", natsconn.Redact(nc.ConnectedUrl()), "replica", q.ID())
	return q, func() { _ = q.Close() }, nil
}
