package relay

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// Defaults applied to zero fields of Config and Tunnel.
const (
	DefaultListenAddr       = "127.0.0.1:8787"
	DefaultMaxBodyBytes     = 4 << 20
	DefaultMaxResponseBytes = 16 << 20
	DefaultMaxPollWait      = 30 * time.Second
	DefaultQueueSize        = 1024
	DefaultAgentTimeout     = 45 * time.Second
	DefaultResponseTimeout  = 120 * time.Second
	DefaultDrainTimeout     = 30 * time.Second
	// DefaultBodyReadTimeout bounds reading one request body (plus
	// BodyReadAllowance per 64 KiB received).
	DefaultBodyReadTimeout = 10 * time.Second
	// DefaultMaxBodyBytesInFlight is the relay-wide budget of request body
	// bytes being read at once (raised to the per-key budget if that is
	// larger).
	DefaultMaxBodyBytesInFlight = 64 << 20
	// DefaultMaxBodyBytesInFlightPerKey is the per-key budget of request
	// body bytes being read at once (raised to MaxBodyBytes and
	// MaxResponseBytes if either is larger).
	DefaultMaxBodyBytesInFlightPerKey = 16 << 20
	// DefaultMaxConcurrentPerKey bounds the MCP requests one client key has
	// in progress.
	DefaultMaxConcurrentPerKey = 256
	// DefaultMaxConcurrentPerAddress bounds the MCP requests in progress
	// from one remote IP address.
	DefaultMaxConcurrentPerAddress = 1024
)

// BodyReadAllowance is the time a request body gets, on top of its
// BodyReadTimeout, for every 64 KiB of it that has arrived: a large body on a
// slow but steady link is read to the end, a trickle is cut at the timeout.
const BodyReadAllowance = time.Second

// Authentication modes of a tunnel's public MCP endpoint.
const (
	// AuthClientKey: the relay requires one of the tunnel's client keys as a
	// Bearer token and strips Authorization before enqueueing.
	AuthClientKey = "client-key"
	// AuthOAuth: the relay checks nothing itself and forwards Authorization to
	// the MCP server (which is the OAuth resource server).
	AuthOAuth = "oauth"
	// AuthPublic: no authentication at all (development only).
	AuthPublic = "public"
	// AuthOAuthGateway: the relay is the OAuth resource server. It
	// validates each bearer token itself (Tunnel.OAuth) and forwards none;
	// the MCP server trusts the relay instead (OAuthConfig.UpstreamHeader).
	AuthOAuthGateway = "oauth-gateway"
)

// Where an oauth tunnel's clients find the authorization server
// (OAuthConfig.AuthorizationServer).
const (
	// ASDirect: clients reach the authorization server the MCP server names
	// themselves (the default).
	ASDirect = "direct"
	// ASTunnel: the authorization server is reachable only from the agent's
	// side; the relay serves its metadata and endpoints under its own URL,
	// fetched through the agent (docs/oauth.md).
	ASTunnel = "tunnel"
)

// OAuthConfig is the OAuth part of a tunnel's configuration.
type OAuthConfig struct {
	// Issuer is the authorization server's issuer identifier (oauth-gateway,
	// required): tokens must name it in iss, and its metadata (RFC 8414, or
	// OpenID Connect Discovery) must name it too.
	Issuer string
	// JWKSURL is where the signing keys are; default the metadata's
	// jwks_uri.
	JWKSURL string
	// IntrospectionURL, when set, validates tokens by introspection (RFC
	// 7662) instead of as JWTs.
	IntrospectionURL string
	// IntrospectionClientID and IntrospectionClientSecret (the literal
	// secret) authenticate the relay to the introspection endpoint (HTTP
	// Basic), when set.
	IntrospectionClientID     string
	IntrospectionClientSecret string
	// Scopes every token must carry; one missing is 403 insufficient_scope.
	Scopes []string
	// UpstreamHeader and UpstreamSecret (the literal secret) are a header
	// the relay adds to every command of the tunnel once it validated the
	// token, for the MCP server to check: how it knows a request came
	// through the gateway.
	UpstreamHeader string
	UpstreamSecret string
	// AuthorizationServer is ASDirect (default) or ASTunnel (oauth mode
	// only).
	AuthorizationServer string
}

// Config configures a Relay. Zero fields take the defaults above.
type Config struct {
	// ListenAddr is where Serve's caller should listen ("127.0.0.1:8787").
	ListenAddr string
	// PublicURL is the relay's external base URL ("https://relay.example.com"):
	// the one source for Host/Origin checks and OAuth rewrites. Default:
	// "http://" + ListenAddr when ListenAddr names a host.
	PublicURL string
	// MaxBodyBytes caps an MCP client's POST body (default 4 MiB).
	MaxBodyBytes int64
	// MaxResponseBytes caps an agent's response POST body (default 16 MiB).
	MaxResponseBytes int64
	// MaxPollWait bounds the timeout_ms an agent may ask for (default 30s).
	MaxPollWait time.Duration
	// QueueSize is the per-tunnel bound on queued commands (default 1024).
	QueueSize int
	// AgentTimeout is how long after its last poll an agent still counts as
	// connected (default 45s). An outstanding poll always counts.
	AgentTimeout time.Duration
	// ResponseTimeout is the response timeout of tunnels created through
	// the admin API that set none (default 120s).
	ResponseTimeout time.Duration
	// DrainTimeout bounds how long, once Serve's context ends, calls already
	// delivered to an agent may take to finish (default 30s; see Drain).
	DrainTimeout time.Duration
	// BodyReadTimeout bounds reading a request body, an MCP client's or an
	// agent's (default 10s), plus BodyReadAllowance for every 64 KiB
	// received; a body not read by then is answered 408.
	BodyReadTimeout time.Duration
	// MaxBodyBytesInFlight bounds the bytes of request bodies being read at
	// once, relay-wide (default 64 MiB, and never below the per-key budget).
	// A read that would pass it is refused with 503 and Retry-After.
	MaxBodyBytesInFlight int64
	// MaxBodyBytesInFlightPerKey bounds the bytes of request bodies being
	// read at once per key: a client key, or a tunnel's runtime key for its
	// agents' response POSTs (default 16 MiB, and never below MaxBodyBytes
	// or MaxResponseBytes, so that one body of each cap always fits). A read
	// that would pass it is refused with 429 and Retry-After.
	MaxBodyBytesInFlightPerKey int64
	// MaxConcurrentPerKey bounds the MCP requests (POST, DELETE, GET
	// streams) one client key has in progress at once (default 256;
	// negative: no limit). Excess requests get 429 with Retry-After.
	MaxConcurrentPerKey int
	// MaxConcurrentPerAddress bounds the MCP requests in progress at once
	// from one remote IP address, whatever their key or tunnel (default
	// 1024; negative: no limit). Behind a proxy every request has the
	// proxy's address: the limit then bounds the whole relay.
	MaxConcurrentPerAddress int
	// Tunnels are the tunnels the relay serves from its configuration. The
	// admin API shows them as read-only; tunnels created through it live in
	// Options.Store.
	Tunnels []Tunnel
	// AdminKeys are admin keys from the configuration (literal secrets,
	// already resolved), valid besides those in the store.
	AdminKeys []string
	// AuthFailures limits failed authentications (the zero value: the
	// defaults of AuthLimit).
	AuthFailures AuthLimit
}

// Tunnel is one tunnel the relay serves.
type Tunnel struct {
	// ID is "tunnel_" + 32 lowercase alphanumerics (NewTunnelID mints one).
	ID          string
	Name        string
	Description string
	// RuntimeKey is the agent's key (the literal secret, already resolved).
	RuntimeKey string
	// ClientKeys are the keys MCP clients may present in client-key mode.
	ClientKeys []ClientKey
	// AuthMode is AuthClientKey (default), AuthOAuth or AuthPublic.
	AuthMode string
	// ResponseTimeout is how long the relay waits for a command's final
	// response; it is sent as the command's response_timeout (default 120s).
	ResponseTimeout time.Duration
	// OAuth configures auth modes oauth and oauth-gateway.
	OAuth OAuthConfig
}

// ClientKey is one MCP client key of a tunnel. Name identifies the caller to
// plugins (engine.Message.Caller) and in logs; Key is the literal secret.
type ClientKey struct {
	Name string
	Key  string
}

// settings is a validated Config with defaults applied.
type settings struct {
	publicURL        *url.URL
	publicOrigin     string // scheme://host[:port], no trailing slash
	maxBody          int64
	maxResponse      int64
	maxPollWait      time.Duration
	queueSize        int
	agentTimeout     time.Duration
	drainTimeout     time.Duration
	responseTimeout  time.Duration
	publicHostIsLoop bool
	bodyTimeout      time.Duration
	bodyBudget       int64 // relay-wide bytes of bodies being read
	keyBodyBudget    int64 // the same per key
	perKey           int   // concurrent MCP requests per client key (0 = no limit)
	perAddress       int   // concurrent MCP requests per remote IP (0 = no limit)
}

func (c Config) settings() (settings, error) {
	s := settings{
		maxBody:         c.MaxBodyBytes,
		maxResponse:     c.MaxResponseBytes,
		maxPollWait:     c.MaxPollWait,
		queueSize:       c.QueueSize,
		agentTimeout:    c.AgentTimeout,
		drainTimeout:    c.DrainTimeout,
		bodyTimeout:     c.BodyReadTimeout,
		responseTimeout: c.ResponseTimeout,
	}
	listen := c.ListenAddr
	if listen == "" {
		listen = DefaultListenAddr
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return s, fmt.Errorf("relay: listen-addr %q: %w", listen, err)
	}
	pub := c.PublicURL
	if pub == "" {
		if host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
			return s, fmt.Errorf("relay: public-url is required when listen-addr %q names no host", listen)
		}
		pub = "http://" + listen
	}
	u, err := url.Parse(strings.TrimSuffix(pub, "/"))
	if err != nil {
		return s, fmt.Errorf("relay: public-url: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return s, fmt.Errorf("relay: public-url %q: scheme must be http or https", pub)
	case u.Host == "":
		return s, fmt.Errorf("relay: public-url %q: no host", pub)
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return s, fmt.Errorf("relay: public-url %q: must be scheme://host[:port] with no path, query or user", pub)
	}
	u.Host = strings.ToLower(u.Host)
	s.publicURL = u
	s.publicOrigin = u.Scheme + "://" + u.Host
	s.publicHostIsLoop = isLoopbackName(u.Hostname())

	for _, f := range []struct {
		name string
		v    *int64
		def  int64
	}{
		{"max-body-bytes", &s.maxBody, DefaultMaxBodyBytes},
		{"max-response-bytes", &s.maxResponse, DefaultMaxResponseBytes},
	} {
		if *f.v < 0 {
			return s, fmt.Errorf("relay: %s: must not be negative", f.name)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"max-poll-wait", &s.maxPollWait, DefaultMaxPollWait},
		{"agent-timeout", &s.agentTimeout, DefaultAgentTimeout},
		{"drain-timeout", &s.drainTimeout, DefaultDrainTimeout},
		{"body-read-timeout", &s.bodyTimeout, DefaultBodyReadTimeout},
		{"response-timeout", &s.responseTimeout, DefaultResponseTimeout},
	} {
		if *f.v < 0 {
			return s, fmt.Errorf("relay: %s: must not be negative", f.name)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if s.queueSize < 0 {
		return s, errors.New("relay: queue-size: must not be negative")
	}
	if s.queueSize == 0 {
		s.queueSize = DefaultQueueSize
	}
	if err := c.limits(&s); err != nil {
		return s, err
	}
	return s, nil
}

// limits applies the defaults of the limits for hostile clients and checks
// that one body of each cap fits in the budgets.
func (c Config) limits(s *settings) error {
	if c.MaxBodyBytesInFlight < 0 || c.MaxBodyBytesInFlightPerKey < 0 {
		return errors.New("relay: max-body-bytes-in-flight, max-body-bytes-in-flight-per-key: must not be negative")
	}
	largest := max(s.maxBody, s.maxResponse)
	s.keyBodyBudget = c.MaxBodyBytesInFlightPerKey
	switch {
	case s.keyBodyBudget == 0:
		s.keyBodyBudget = max(DefaultMaxBodyBytesInFlightPerKey, largest)
	case s.keyBodyBudget < largest:
		return fmt.Errorf("relay: max-body-bytes-in-flight-per-key: %d is below the largest body cap (%d, max-body-bytes or max-response-bytes): such a body could never be read", s.keyBodyBudget, largest)
	}
	s.bodyBudget = c.MaxBodyBytesInFlight
	switch {
	case s.bodyBudget == 0:
		s.bodyBudget = max(DefaultMaxBodyBytesInFlight, s.keyBodyBudget)
	case s.bodyBudget < s.keyBodyBudget:
		return fmt.Errorf("relay: max-body-bytes-in-flight: %d is below max-body-bytes-in-flight-per-key (%d)", s.bodyBudget, s.keyBodyBudget)
	}
	for _, f := range []struct {
		v, def int
		out    *int
	}{
		{c.MaxConcurrentPerKey, DefaultMaxConcurrentPerKey, &s.perKey},
		{c.MaxConcurrentPerAddress, DefaultMaxConcurrentPerAddress, &s.perAddress},
	} {
		switch {
		case f.v == 0:
			*f.out = f.def
		case f.v > 0:
			*f.out = f.v
		}
	}
	return nil
}

// tunnelConf is a validated Tunnel with hashed keys.
// Where a tunnel comes from.
const (
	sourceConfig = "config" // relay.tunnels: read-only through the admin API
	sourceStore  = "store"  // created through the admin API
)

// tunnelConf is a validated tunnel with hashed keys: from the configuration
// (validateTunnels) or from the store (registry.go).
type tunnelConf struct {
	id, name, description string
	// runtimeKeys are the keys an agent may poll and respond with
	// (configuration: one; store: any number, for rotation).
	runtimeKeys     []hashedKey
	clientKeys      []hashedKey
	revoked         []revokedKey // store keys of this tunnel that were revoked
	authMode        string
	responseTimeout time.Duration
	source          string
	createdAt       int64 // unix seconds; 0 for configuration tunnels
	oauth           OAuthConfig
	// gw validates tokens in oauth-gateway mode (attached by the relay:
	// attachGateways).
	gw *gateway
}

// hashedKey is a key as the relay keeps it: its SHA-256, never the key.
type hashedKey struct {
	id   string // the store's key id ("" for configuration keys)
	name string
	sum  [32]byte
}

// revokedKey is a revoked key's hash, kept so its holder learns why it no
// longer works.
type revokedKey struct {
	scope string
	sum   [32]byte
	at    int64 // unix seconds
}

// validateTunnels checks ts and returns them in validated, hashed form. Errors
// name the field, never a key's value.
func validateTunnels(ts []Tunnel) ([]*tunnelConf, error) {
	out := make([]*tunnelConf, 0, len(ts))
	ids := make(map[string]bool, len(ts))
	runtime := make(map[[32]byte]int, len(ts))
	clients := make(map[[32]byte]int)
	for i, t := range ts {
		field := fmt.Sprintf("relay: tunnels[%d]", i)
		if !wire.ValidTunnelID(t.ID) {
			return nil, fmt.Errorf("%s.id: %q does not match ^tunnel_[a-z0-9]{32}$", field, t.ID)
		}
		field = fmt.Sprintf("relay: tunnels[%d] (%s)", i, t.ID)
		if ids[t.ID] {
			return nil, fmt.Errorf("%s.id: duplicate tunnel id", field)
		}
		ids[t.ID] = true
		if !wire.ValidKey(t.RuntimeKey) {
			return nil, fmt.Errorf("%s.runtime-key: missing or not matching ^[0-9A-Za-z_-]+$", field)
		}
		rk := sha256.Sum256([]byte(t.RuntimeKey))
		c := &tunnelConf{
			id: t.ID, name: t.Name, description: t.Description,
			runtimeKeys:     []hashedKey{{name: "runtime", sum: rk}},
			authMode:        t.AuthMode,
			responseTimeout: t.ResponseTimeout,
			oauth:           t.OAuth,
			source:          sourceConfig,
		}
		if j, dup := runtime[rk]; dup {
			return nil, fmt.Errorf("%s.runtime-key: same key as tunnels[%d] (a runtime key is scoped to one tunnel)", field, j)
		}
		runtime[rk] = i
		switch c.authMode {
		case "":
			c.authMode = AuthClientKey
		case AuthClientKey, AuthOAuth, AuthPublic, AuthOAuthGateway:
		default:
			return nil, fmt.Errorf("%s.auth-mode: %q is not one of client-key, oauth, oauth-gateway, public", field, t.AuthMode)
		}
		if err := validateOAuth(field+".oauth", c.authMode, &c.oauth); err != nil {
			return nil, err
		}
		if c.responseTimeout < 0 {
			return nil, fmt.Errorf("%s.response-timeout: must not be negative", field)
		}
		if c.responseTimeout == 0 {
			c.responseTimeout = DefaultResponseTimeout
		}
		for j, k := range t.ClientKeys {
			kf := fmt.Sprintf("%s.client-keys[%d]", field, j)
			if k.Name == "" {
				return nil, fmt.Errorf("%s.name: required", kf)
			}
			if !wire.ValidCaller(k.Name) {
				// The name is the caller plugins and agents see.
				return nil, fmt.Errorf("%s.name: at most %d bytes of UTF-8 without control characters", kf, wire.MaxCallerBytes)
			}
			if !wire.ValidKey(k.Key) {
				return nil, fmt.Errorf("%s.key: missing or not matching ^[0-9A-Za-z_-]+$", kf)
			}
			h := hashedKey{name: k.Name, sum: sha256.Sum256([]byte(k.Key))}
			if h.sum == rk {
				return nil, fmt.Errorf("%s.key: equals the tunnel's runtime key", kf)
			}
			clients[h.sum] = i
			c.clientKeys = append(c.clientKeys, h)
		}
		if c.authMode == AuthClientKey && len(c.clientKeys) == 0 {
			return nil, fmt.Errorf("%s.client-keys: auth-mode client-key needs at least one key", field)
		}
		out = append(out, c)
	}
	for sum, i := range clients {
		if j, ok := runtime[sum]; ok {
			return nil, fmt.Errorf("relay: tunnels[%d].client-keys: a client key equals the runtime key of tunnels[%d]", i, j)
		}
	}
	return out, nil
}

// validateAdminKeys hashes the configured admin keys; none may equal a
// tunnel's key (a key has one scope).
func validateAdminKeys(keys []string, confs []*tunnelConf) ([]hashedKey, error) {
	out := make([]hashedKey, 0, len(keys))
	for i, k := range keys {
		if !wire.ValidKey(k) {
			return nil, fmt.Errorf("relay: admin-key[%d]: missing or not matching ^[0-9A-Za-z_-]+$", i)
		}
		h := hashedKey{name: "config", sum: sha256.Sum256([]byte(k))}
		for _, c := range confs {
			for _, tk := range slices.Concat(c.runtimeKeys, c.clientKeys) {
				if tk.sum == h.sum {
					return nil, fmt.Errorf("relay: admin-key[%d]: equals a key of tunnel %s (an admin key must be its own)", i, c.id)
				}
			}
		}
		out = append(out, h)
	}
	return out, nil
}

// NewTunnelID mints a tunnel id: "tunnel_" + 32 lowercase hex digits.
func NewTunnelID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "tunnel_" + hex.EncodeToString(b[:])
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewKey mints a key: prefix + 40 random base62 characters (about 238 bits),
// e.g. NewKey("sk-sluice-"). The result matches ^[0-9A-Za-z_-]+$ when prefix
// does.
func NewKey(prefix string) string {
	var sb strings.Builder
	sb.Grow(len(prefix) + 40)
	sb.WriteString(prefix)
	max := big.NewInt(int64(len(base62)))
	for range 40 {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic("relay: crypto/rand failed: " + err.Error())
		}
		sb.WriteByte(base62[n.Int64()])
	}
	return sb.String()
}

func isLoopbackName(h string) bool {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// validateOAuth checks a tunnel's OAuth settings for its auth mode. Errors
// name the field, never a secret's value.
func validateOAuth(field, mode string, o *OAuthConfig) error {
	switch o.AuthorizationServer {
	case "":
		o.AuthorizationServer = ASDirect
	case ASDirect:
	case ASTunnel:
		if mode != AuthOAuth {
			return fmt.Errorf("%s.authorization-server: tunnel needs auth-mode oauth", field)
		}
	default:
		return fmt.Errorf("%s.authorization-server: %q is not direct or tunnel", field, o.AuthorizationServer)
	}
	if mode != AuthOAuthGateway {
		if o.Issuer != "" || o.JWKSURL != "" || o.IntrospectionURL != "" || o.UpstreamHeader != "" || len(o.Scopes) > 0 {
			return fmt.Errorf("%s: issuer, jwks-url, introspection-url, scopes and upstream-header apply to auth-mode oauth-gateway only", field)
		}
		return nil
	}
	if o.Issuer == "" {
		return fmt.Errorf("%s.issuer: required with auth-mode oauth-gateway", field)
	}
	for _, f := range []struct{ name, v string }{{"issuer", o.Issuer}, {"jwks-url", o.JWKSURL}, {"introspection-url", o.IntrospectionURL}} {
		if f.v == "" {
			continue
		}
		u, err := url.Parse(f.v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
			return fmt.Errorf("%s.%s: %q is not an http(s) URL", field, f.name, f.v)
		}
		if u.Scheme == "http" && !isLoopbackName(u.Hostname()) {
			return fmt.Errorf("%s.%s: must be https (http only on loopback)", field, f.name)
		}
		if f.name == "issuer" && u.RawQuery != "" {
			return fmt.Errorf("%s.issuer: an issuer has no query (RFC 8414)", field)
		}
	}
	if (o.IntrospectionClientID == "") != (o.IntrospectionClientSecret == "") {
		return fmt.Errorf("%s.introspection-client-secret: introspection-client-id and -secret go together", field)
	}
	if o.IntrospectionClientID != "" && o.IntrospectionURL == "" {
		return fmt.Errorf("%s.introspection-client-id: needs introspection-url", field)
	}
	if o.JWKSURL != "" && o.IntrospectionURL != "" {
		return fmt.Errorf("%s: jwks-url and introspection-url exclude each other (JWT or introspection)", field)
	}
	for i, sc := range o.Scopes {
		if sc == "" || strings.ContainsAny(sc, " \t\"\\") {
			return fmt.Errorf("%s.scopes[%d]: %q is not a scope token", field, i, sc)
		}
	}
	if o.UpstreamHeader != "" {
		if !validHeaderName(o.UpstreamHeader) || forwardedHeaders[http.CanonicalHeaderKey(o.UpstreamHeader)] ||
			strings.EqualFold(o.UpstreamHeader, "Authorization") || strings.HasPrefix(http.CanonicalHeaderKey(o.UpstreamHeader), "Mcp-") {
			return fmt.Errorf("%s.upstream-header: %q is not a header name the relay may set", field, o.UpstreamHeader)
		}
		if !validHeaderValue(o.UpstreamSecret) {
			return fmt.Errorf("%s.upstream-secret: required with upstream-header, printable, no line breaks", field)
		}
	} else if o.UpstreamSecret != "" {
		return fmt.Errorf("%s.upstream-secret: needs upstream-header", field)
	}
	return nil
}

// validHeaderName reports whether s is an HTTP field name (RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s is a non-empty visible-ASCII field
// value.
func validHeaderValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
