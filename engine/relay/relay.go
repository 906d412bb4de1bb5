package relay

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/relay/store"
	"github.com/sluicemcp/sluice/engine/wire"
)

// Options are the relay's collaborators. The zero value is valid.
type Options struct {
	// Logger receives the relay's logs (nil = discard).
	Logger *slog.Logger
	// Registerer receives the relay's sluice_relay_* metrics (nil = none; the
	// admin /metrics endpoint then serves a private registry).
	Registerer prometheus.Registerer
	// Pipeline is the relay's plugin chain (nil = no chain).
	Pipeline *engine.Pipeline
	// ASClient fetches from authorization servers in oauth-gateway mode
	// (metadata, key sets, introspection); nil means a client with bounded
	// timeouts that follows no redirect.
	ASClient *http.Client
	// Audit, when set, receives one record per tools/call an MCP client
	// makes through the relay (engine.ToolCallAudit): tunnel, channel,
	// request id, session, caller (the client key's name or the verified
	// token subject), tool, verdict and deciding plugin, outcome, the HTTP
	// status the client got, and latency. Never arguments or results.
	Audit *slog.Logger
	// Cluster, when set, joins this relay to other replicas serving the
	// same tunnels (a shared work queue; see Cluster). Nil: the relay is
	// alone, with its queue in process.
	Cluster Cluster
	// Store keeps the tunnels and keys managed through the admin API (nil:
	// a store in memory, lost when the relay stops). The relay follows its
	// changes, another replica's included, until Close; the caller closes
	// it after Close.
	Store store.Store
}

// Relay is the public side of the tunnel. Create it with New; it is safe for
// concurrent use.
type Relay struct {
	set      settings
	log      *slog.Logger
	pipeline *engine.Pipeline
	audit    *slog.Logger // nil = no audit trail
	met      *metrics
	asClient *http.Client // authorization server fetches (gateway mode)
	// A private authorization server through the tunnel (oauthas.go): per
	// tunnel id, its *asProxy and when an agent last offered the extension.
	asProxies, asOffers sync.Map
	lim                 *limits // limits for hostile clients (limits.go)
	// asRemote: when another replica last said an agent offering the
	// OAuth AS extension polls it (a Cluster).
	asRemote sync.Map

	// cl is the replicas' shared queue (nil: alone); replica is this
	// replica's id in it ("" when alone).
	cl      Cluster
	replica string
	// handOuts watches the commands other replicas' polls took (handout.go);
	// outboxes hold the commands being offered to them (offer.go).
	handOuts handOuts
	outboxes outboxes

	mu      sync.RWMutex
	tunnels map[string]*tunnelState // what is served: configuration tunnels, then stored ones
	// cfgConfs are the configuration's tunnels (SetTunnels), managed the
	// store's (registry.go); a configuration tunnel wins over a stored one
	// of the same id.
	cfgConfs map[string]*tunnelConf
	managed  map[string]*tunnelConf

	reg       *registry
	ownStore  store.Store // the memory store New made (nil: the caller's)
	stopWatch context.CancelFunc
	// admins are the valid admin keys: the configuration's and the store's.
	admins    atomic.Pointer[adminKeys]
	cfgAdmins []hashedKey
	limiter   *authLimiter

	closing   chan struct{}
	closeOnce sync.Once
	serving   atomic.Bool
	// draining is closed when a drain starts: no new calls, no new polls;
	// delivered calls may finish (drain.go).
	draining  chan struct{}
	drainOnce sync.Once

	// conns maps the public listener's connections to what they carry
	// (liveness.go).
	connsMu sync.Mutex
	conns   map[net.Conn]*connInfo
	// idleTimeout is the server's: a connection idle that long was closed
	// by the server, not by its agent.
	idleTimeout time.Duration

	// keepalive is the SSE comment interval on long calls (a field so tests
	// can shorten it).
	keepalive time.Duration

	// streamIdle ends an open GET stream the agent has been silent on for
	// that long (wire.StreamIdleTimeout; a field so tests can shorten it).
	streamIdle time.Duration
}

// New validates cfg and returns a relay serving its tunnels.
func New(cfg Config, opts Options) (*Relay, error) {
	set, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	confs, err := validateTunnels(cfg.Tunnels)
	if err != nil {
		return nil, err
	}
	cfgAdmins, err := validateAdminKeys(cfg.AdminKeys, confs)
	if err != nil {
		return nil, err
	}
	l := opts.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	r := &Relay{
		set:       set,
		log:       l,
		pipeline:  opts.Pipeline,
		audit:     opts.Audit,
		tunnels:   make(map[string]*tunnelState, len(confs)),
		closing:   make(chan struct{}),
		draining:  make(chan struct{}),
		keepalive: 15 * time.Second,
		conns:     make(map[net.Conn]*connInfo),
		asClient:  opts.ASClient,
		lim:       newLimits(set),
		cfgConfs:  make(map[string]*tunnelConf, len(confs)),
		managed:   make(map[string]*tunnelConf),
		cfgAdmins: cfgAdmins,
		limiter:   newAuthLimiter(cfg.AuthFailures),
	}
	if r.asClient == nil {
		r.asClient = defaultASClient()
	}
	r.admins.Store(&adminKeys{keys: cfgAdmins})
	r.streamIdle = wire.StreamIdleTimeout
	r.attachGateways(confs)
	if opts.Cluster != nil {
		r.cl, r.replica = opts.Cluster, opts.Cluster.ID()
	}
	for _, c := range confs {
		r.cfgConfs[c.id] = c
		r.tunnels[c.id] = r.newTunnel(c)
	}
	r.met, err = newMetrics(r, opts.Registerer)
	if err != nil {
		return nil, err
	}
	st := opts.Store
	if st == nil {
		st = store.NewMemory()
		r.ownStore = st
	}
	r.reg = newRegistry(r, st)
	wctx, cancel := context.WithCancel(context.Background())
	r.stopWatch = cancel
	if err := r.reg.start(wctx); err != nil {
		cancel()
		return nil, err
	}
	if r.cl != nil {
		r.cl.Handle(peerHandler{r})
		go r.every(liveEvery, r.sayLive)
		go r.every(handOutCheckEvery, r.checkHandOuts)
	}
	return r, nil
}

// adminKeys are the admin keys that work now, and those revoked.
type adminKeys struct {
	keys    []hashedKey
	revoked []revokedKey
}

// setStoreAdmins replaces the store's admin keys (registry.go).
func (r *Relay) setStoreAdmins(keys []scopedKey, revoked []revokedKey) {
	ak := &adminKeys{keys: slices.Clone(r.cfgAdmins), revoked: revoked}
	for _, k := range keys {
		if k.scope == ScopeAdmin {
			ak.keys = append(ak.keys, k.hashedKey)
		}
	}
	r.admins.Store(ak)
}

// cfgAdminCount is the number of admin keys in the configuration.
func (r *Relay) cfgAdminCount() int { return len(r.cfgAdmins) }

// Bootstrap mints the first admin key when there is none, in the store or
// in the configuration, and none was ever minted for this store (on any
// replica). It returns the key, which exists nowhere else: show it to the
// operator once. It returns "" when no key was minted.
func (r *Relay) Bootstrap(ctx context.Context) (string, error) {
	return r.reg.bootstrap(ctx)
}

// newTunnel returns the state of a new tunnel, with lost-agent detection.
func (r *Relay) newTunnel(c *tunnelConf) *tunnelState {
	t := newTunnelState(c, r.set.queueSize)
	t.shared = r.cl != nil
	t.onFinal = func(p *pending, resp *wire.Response) { r.notePin(t, p, resp) }
	t.lost = func(instance string, held int) {
		t.lostCalls.Add(uint64(held))
		r.log.Warn("agent lost: failing the calls it held", "tunnel", t.id, "instance", instance, "calls", held)
	}
	t.revokedCalls = func(n int) {
		r.log.Warn("runtime key revoked: failing the calls its agent held", "tunnel", t.id, "calls", n)
	}
	if r.cl != nil {
		t.elsewhere = func(instance string) bool {
			b, _ := json.Marshal(peerMsg{Op: opAlive, Tunnel: t.id, Instance: instance})
			alive, err := r.cl.Ask(context.Background(), b, askWait)
			if err != nil {
				// Cannot tell: a false "lost" would fail calls that run.
				r.log.Warn("cluster: could not ask whether an agent is alive elsewhere", "tunnel", t.id, "err", err)
				return true
			}
			return alive
		}
		t.announce = func(instance string) { r.broadcast(peerMsg{Op: opLost, Tunnel: t.id, Instance: instance}) }
	}
	return t
}

// SetTunnels replaces the configuration's tunnels and keys live. Tunnels
// whose id stays keep their queue, pollers and in-flight work (with the new
// keys and settings); removed tunnels fail their waiting callers (a stored
// tunnel of the same id, if any, is served from then on). On error nothing
// changes.
func (r *Relay) SetTunnels(ts []Tunnel) error {
	confs, err := validateTunnels(ts)
	if err != nil {
		return err
	}
	r.attachGateways(confs)
	next := make(map[string]*tunnelConf, len(confs))
	for _, c := range confs {
		next[c.id] = c
	}
	var removed []*tunnelState
	r.mu.Lock()
	prev := r.cfgConfs
	r.cfgConfs = next
	for id := range prev {
		removed = r.syncLocked(id, removed)
	}
	for id := range next {
		removed = r.syncLocked(id, removed)
	}
	r.mu.Unlock()
	r.closeRemoved(removed)
	return nil
}

// putManaged serves (or updates) a stored tunnel. It reports whether a
// configuration tunnel of the same id hides it.
func (r *Relay) putManaged(c *tunnelConf) bool {
	r.mu.Lock()
	r.managed[c.id] = c
	removed := r.syncLocked(c.id, nil)
	_, shadowed := r.cfgConfs[c.id]
	r.mu.Unlock()
	r.closeRemoved(removed)
	return shadowed
}

// dropManaged stops serving a stored tunnel that was deleted.
func (r *Relay) dropManaged(id string) {
	r.mu.Lock()
	delete(r.managed, id)
	removed := r.syncLocked(id, nil)
	r.mu.Unlock()
	r.closeRemoved(removed)
}

// syncLocked makes r.tunnels[id] serve what the configuration or the store
// says, appending a tunnel no longer served to removed.
func (r *Relay) syncLocked(id string, removed []*tunnelState) []*tunnelState {
	want := r.cfgConfs[id]
	if want == nil {
		want = r.managed[id]
	}
	t := r.tunnels[id]
	switch {
	case want == nil && t != nil:
		delete(r.tunnels, id)
		removed = append(removed, t)
	case want != nil && t == nil:
		r.tunnels[id] = r.newTunnel(want)
	case want != nil && t.conf.Load() != want:
		t.setConf(want)
	}
	return removed
}

func (r *Relay) closeRemoved(removed []*tunnelState) {
	for _, t := range removed {
		t.close()
		r.log.Info("tunnel removed", "tunnel", t.id)
	}
}

// Close fails every waiting MCP caller (503) and ends outstanding polls. The
// relay answers 503 afterwards. It does not close listeners: cancel Serve's
// context for that.
func (r *Relay) Close() {
	r.closeOnce.Do(func() {
		r.serving.Store(false)
		close(r.closing)
		r.stopWatch()
		if r.ownStore != nil {
			_ = r.ownStore.Close()
		}
	})
}

func (r *Relay) closed() bool {
	select {
	case <-r.closing:
		return true
	default:
		return false
	}
}

// Handler returns the public handler: the MCP endpoint, the OAuth metadata
// route and the agent endpoints. No request body can hold a connection the
// handler is done with (guardBodies).
func (r *Relay) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tunnels/{id}", r.handleMetadata)
	mux.HandleFunc("GET /v1/tunnels/{id}/poll", r.handlePoll)
	mux.HandleFunc("POST /v1/tunnels/{id}/response", r.handleResponse)
	mux.HandleFunc("POST /v1/tunnels/{id}"+wire.BatchPath, r.handleResponses)
	mux.HandleFunc("POST /v1/mcp/{id}", r.behindFrontDoor(r.handleMCPPost))
	mux.HandleFunc("DELETE /v1/mcp/{id}", r.behindFrontDoor(r.handleMCPDelete))
	mux.HandleFunc("GET /v1/mcp/{id}", r.behindFrontDoor(r.handleMCPGet))
	mux.HandleFunc("HEAD /v1/mcp/{id}", r.handleMCPOther) // else the GET pattern takes it
	mux.HandleFunc("/v1/mcp/{id}", r.handleMCPOther)
	mux.HandleFunc("GET /.well-known/oauth-protected-resource/v1/mcp/{id}", r.handleOAuthMetadata)
	// A private authorization server through the tunnel (oauthas.go).
	mux.HandleFunc("GET /.well-known/oauth-authorization-server/oauth/{id}", r.handleASMetadata)
	mux.HandleFunc("GET /.well-known/openid-configuration/oauth/{id}", r.handleASMetadata)
	mux.HandleFunc("GET /oauth/{id}/.well-known/openid-configuration", r.handleASMetadata)
	mux.HandleFunc("/oauth/{id}/{endpoint}", r.handleASEndpoint)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeAPIError(w, http.StatusNotFound, "invalid_request_error", "", "not found")
	})
	return r.guardBodies(mux)
}

// Serve serves Handler on ln until ctx is cancelled, then drains (Drain,
// bounded by Config.DrainTimeout), closes the relay and shuts the server
// down. It sets server timeouts suited to long-polls and SSE: a header
// timeout and an idle timeout, but no write timeout.
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           r.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	r.ConfigureServer(srv)
	errc := make(chan error, 1)
	r.serving.Store(!r.closed())
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		r.serving.Store(false)
		return err
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.Background(), r.set.drainTimeout)
	r.Drain(dctx)
	cancel()
	r.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// MarkServing tells /readyz that the public handler is being served by a
// server the caller runs itself (Serve does this on its own).
func (r *Relay) MarkServing() { r.serving.Store(!r.closed()) }

func (r *Relay) tunnel(id string) *tunnelState {
	r.mu.RLock()
	t := r.tunnels[id]
	r.mu.RUnlock()
	return t
}

func (r *Relay) snapshot() []*tunnelState {
	r.mu.RLock()
	out := make([]*tunnelState, 0, len(r.tunnels))
	for _, t := range r.tunnels {
		out = append(out, t)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}
