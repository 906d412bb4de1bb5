package main

import (
	"fmt"
	"time"

	"github.com/sluicemcp/sluice/engine/logs"
)

// Config is the whole typed configuration of the sluice binary. Its zero value
// plus defaults() is what runs when nothing is configured. Keys are the koanf
// tags: kebab-case, identical in YAML and flags.
type Config struct {
	ControlPlane    ControlPlane   `koanf:"control-plane"`
	MCP             MCP            `koanf:"mcp"`
	Health          Health         `koanf:"health"`
	Log             Log            `koanf:"log"`
	PID             PID            `koanf:"pid"`
	CABundle        string         `koanf:"ca-bundle"`
	HTTPProxy       string         `koanf:"http-proxy"`
	EmbeddedMCPStub bool           `koanf:"embedded-mcp-stub"`
	DrainTimeout    time.Duration  `koanf:"drain-timeout"`
	Pipeline        []PluginConfig `koanf:"pipeline"`
	Relay           Relay          `koanf:"relay"`
}

// ControlPlane configures how the agent reaches the relay (or OpenAI's hosted
// tunnel service).
type ControlPlane struct {
	BaseURL        string        `koanf:"base-url"`
	URLPath        string        `koanf:"url-path"`
	TunnelID       string        `koanf:"tunnel-id"`
	APIKey         Secret        `koanf:"api-key"`
	OrganizationID string        `koanf:"organization-id"`
	MaxInflight    int           `koanf:"max-inflight"`
	PollTimeout    time.Duration `koanf:"poll-timeout"`
	ExtraHeaders   []string      `koanf:"extra-headers"`
	// ResponseBatch uses Sluice's response-batch extension when the relay
	// offers it.
	ResponseBatch bool `koanf:"response-batch"`
	// GetStream carries MCP clients' standalone GET streams (Sluice's
	// get-stream extension) when the relay offers it.
	GetStream bool `koanf:"get-stream"`
}

// MCP configures the private MCP servers the agent forwards to.
type MCP struct {
	// ServerURL entries are "channel=NAME,url=URL" or a bare URL for main.
	ServerURL             []string      `koanf:"server-url"`
	Command               []string      `koanf:"command"`
	MaxConcurrentRequests int           `koanf:"max-concurrent-requests"`
	ExtraHeaders          []string      `koanf:"extra-headers"`
	StartupWaitTimeout    time.Duration `koanf:"startup-wait-timeout"`
	// MaxStreams bounds the MCP clients' GET streams open at once.
	MaxStreams int `koanf:"max-streams"`
	// Bindings bind channels in a YAML list (config_bindings.go): to a URL,
	// a command, or a Wasm binding plugin.
	Bindings []BindingEntry `koanf:"bindings"`
}

// Health configures the agent's health, readiness and metrics listener.
type Health struct {
	ListenAddr string `koanf:"listen-addr"`
	URLFile    string `koanf:"url-file"`
}

// Log configures logging.
type Log struct {
	Level         string `koanf:"level"`
	Format        string `koanf:"format"`
	HTTPRawUnsafe bool   `koanf:"http-raw-unsafe"`
	// Audit is where the one-record-per-tool-call audit trail goes: "log"
	// (the log stream, at info whatever log.level), "off", or a file path
	// (JSON lines, appended, reopened on SIGHUP for log rotation).
	Audit string `koanf:"audit"`
	// RepeatWindow is how long a repeated warning or error (or per-call info
	// line) is counted instead of written after its first occurrence; 0
	// writes every line.
	RepeatWindow time.Duration `koanf:"repeat-window"`
}

// PID configures the pid file.
type PID struct {
	File string `koanf:"file"`
}

// Relay configures `sluice relay` (and the relay half of `sluice dev`).
type Relay struct {
	ListenAddr      string `koanf:"listen-addr"`
	PublicURL       string `koanf:"public-url"`
	AdminListenAddr string `koanf:"admin-listen-addr"`
	TLSCert         string `koanf:"tls-cert"`
	TLSKey          string `koanf:"tls-key"`
	MaxBodyBytes    int64  `koanf:"max-body-bytes"`
	// MaxResponseBytes caps an agent's response POST (one response, or a
	// batch of them).
	MaxResponseBytes int64          `koanf:"max-response-bytes"`
	ResponseTimeout  time.Duration  `koanf:"response-timeout"`
	Tunnels          []TunnelConfig `koanf:"tunnels"`
	Pipeline         []PluginConfig `koanf:"pipeline"`
	// BodyReadTimeout bounds reading a request body, a client's or an
	// agent's (plus one second per 64 KiB received): 408 after it.
	BodyReadTimeout time.Duration `koanf:"body-read-timeout"`
	// MaxBodyBytesInFlight bounds the bytes of request bodies being read at
	// once, relay-wide (0: 64 MiB, or the per-key budget if larger).
	MaxBodyBytesInFlight int64 `koanf:"max-body-bytes-in-flight"`
	// MaxBodyBytesInFlightPerKey bounds them per client key or runtime key
	// (0: 16 MiB, or the larger body cap if larger).
	MaxBodyBytesInFlightPerKey int64 `koanf:"max-body-bytes-in-flight-per-key"`
	// MaxConcurrentPerKey bounds the MCP requests in progress per client
	// key (0: no limit).
	MaxConcurrentPerKey int `koanf:"max-concurrent-per-key"`
	// MaxConcurrentPerAddress bounds the MCP requests in progress per
	// remote IP address (0: no limit).
	MaxConcurrentPerAddress int `koanf:"max-concurrent-per-address"`
	// DataDir is where `sluice relay` keeps the tunnels and keys managed
	// through its admin API when it is not on NATS (default
	// $XDG_STATE_HOME/sluice/relay, else ~/.local/state/sluice/relay).
	DataDir string `koanf:"data-dir"`
	// AdminKey is an admin key for the admin API besides those the relay
	// issues (a reference); with it the relay prints no first admin key.
	AdminKey Secret `koanf:"admin-key"`
	// NATS joins the relay to other replicas of it (empty url: alone).
	NATS RelayNATS `koanf:"nats"`
}

// RelayNATS joins `sluice relay` replicas through a NATS cluster: a shared
// work queue (JetStream) and messages between replicas.
type RelayNATS struct {
	// URL is one or more NATS server URLs, comma-separated; empty: the
	// relay is alone, with its queue in process.
	URL string `koanf:"url"`
	// Credentials is a reference to a NATS credentials file's content.
	Credentials Secret `koanf:"credentials"`
	// Token is a reference to a NATS authentication token.
	Token Secret       `koanf:"token"`
	TLS   RelayNATSTLS `koanf:"tls"`
	// Replicas is the work-queue stream's replication factor (0: 3 when the
	// cluster has three servers or more, else 1).
	Replicas int `koanf:"replicas"`
	// Prefix starts every subject the relay uses (default "sluice").
	Prefix string `koanf:"prefix"`
}

// RelayNATSTLS is TLS to the NATS servers.
type RelayNATSTLS struct {
	CAFile     string `koanf:"ca-file"`
	CertFile   string `koanf:"cert-file"`
	KeyFile    string `koanf:"key-file"`
	ServerName string `koanf:"server-name"`
}

// TunnelConfig is one tunnel the relay serves.
type TunnelConfig struct {
	ID              string        `koanf:"id"`
	Name            string        `koanf:"name"`
	Description     string        `koanf:"description"`
	RuntimeKey      Secret        `koanf:"runtime-key"`
	ClientKeys      []ClientKey   `koanf:"client-keys"`
	AuthMode        string        `koanf:"auth-mode"`
	ResponseTimeout time.Duration `koanf:"response-timeout"`
	// OAuth configures auth modes oauth and oauth-gateway (docs/oauth.md).
	OAuth TunnelOAuth `koanf:"oauth"`
}

// TunnelOAuth is a tunnel's OAuth settings.
type TunnelOAuth struct {
	// AuthorizationServer: direct (default) or tunnel (oauth mode: a
	// private authorization server served through the agent).
	AuthorizationServer string `koanf:"authorization-server"`
	// The rest is for auth-mode oauth-gateway.
	Issuer                    string   `koanf:"issuer"`
	JWKSURL                   string   `koanf:"jwks-url"`
	IntrospectionURL          string   `koanf:"introspection-url"`
	IntrospectionClientID     string   `koanf:"introspection-client-id"`
	IntrospectionClientSecret Secret   `koanf:"introspection-client-secret"`
	Scopes                    []string `koanf:"scopes"`
	UpstreamHeader            string   `koanf:"upstream-header"`
	UpstreamSecret            Secret   `koanf:"upstream-secret"`
}

// ClientKey is one named key an MCP client presents to the relay.
type ClientKey struct {
	Name string `koanf:"name"`
	Key  Secret `koanf:"key"`
}

// PluginConfig is one entry of a pipeline.
type PluginConfig struct {
	// Name identifies the stage in logs; it defaults to Plugin.
	Name string `koanf:"name"`
	// Plugin is a built-in plugin name (redact, headers, …) or a .wasm path.
	Plugin  string         `koanf:"plugin"`
	SHA256  string         `koanf:"sha256"`
	Config  map[string]any `koanf:"config"`
	Hooks   []string       `koanf:"hooks"`
	Methods []string       `koanf:"methods"`
	Limits  PluginLimits   `koanf:"limits"`
	Breaker PluginBreaker  `koanf:"breaker"`
	OnError string         `koanf:"on-error"`
	Shadow  bool           `koanf:"shadow"`
}

// PluginLimits bound one plugin's resources; zero means the host's default.
type PluginLimits struct {
	MemoryPages    uint32        `koanf:"memory-pages"`
	CallTimeout    time.Duration `koanf:"call-timeout"`
	MaxMessageSize int           `koanf:"max-message-size"`
	AllowedHosts   []string      `koanf:"allowed-hosts"`
	// Trusted drops the loop checks that let call-timeout interrupt a guest
	// (faster compute; a runaway loop is then not stopped).
	Trusted bool `koanf:"trusted"`
	// MaxMemory bounds the memory of all the stage's instances together,
	// in bytes (host.PluginConfig.MaxMemory).
	MaxMemory int64 `koanf:"max-memory"`
	// PoolSize caps the stage's instances (default: as many as max-memory
	// allows).
	PoolSize int `koanf:"pool-size"`
}

// PluginBreaker configures a stage's circuit breaker; zero means the host's
// default (host.BreakerConfig).
type PluginBreaker struct {
	Failures   int           `koanf:"failures"`
	Backoff    time.Duration `koanf:"backoff"`
	MaxBackoff time.Duration `koanf:"max-backoff"`
	Disabled   bool          `koanf:"disabled"`
}

// validate checks the breaker of the entry at key.
func (b PluginBreaker) validate(key string) error {
	switch {
	case b.Failures < 0:
		return cfgErr(key+".failures", "must not be negative")
	case b.Backoff < 0:
		return cfgErr(key+".backoff", "must not be negative")
	case b.MaxBackoff < 0:
		return cfgErr(key+".max-backoff", "must not be negative")
	case b.Backoff > 0 && b.MaxBackoff > 0 && b.MaxBackoff < b.Backoff:
		return cfgErr(key+".max-backoff", "%s is less than backoff %s", b.MaxBackoff, b.Backoff)
	}
	return nil
}

// Defaults, documented in koanf.yaml and docs/configuration.md.
const (
	defaultBaseURL          = "https://api.openai.com"
	defaultMaxInflight      = 20
	maxMaxInflight          = 10000
	defaultPollTimeout      = 30 * time.Second
	defaultMaxConcurrent    = 10
	defaultMaxStreams       = 32
	maxMaxStreams           = 10000
	defaultHealthAddr       = "127.0.0.1:8080"
	defaultRelayAddr        = "127.0.0.1:8787"
	defaultRelayAdminAddr   = "127.0.0.1:8788"
	defaultMaxBodyBytes     = 4 << 20
	defaultMaxResponseBytes = 16 << 20
	defaultResponseTimeout  = 120 * time.Second
	defaultBodyReadTimeout  = 10 * time.Second
	defaultMaxPerKey        = 256
	defaultMaxPerAddress    = 1024
	defaultDrainTimeout     = 30 * time.Second
	defaultLogLevel         = "info"
	defaultLogFormat        = "auto"
	defaultRepeatWindow     = logs.DefaultWindow
	maxRepeatWindow         = time.Hour
	devMinConcurrency       = 64
	envConfig               = "SLUICE_CONFIG"
	secretHint              = "a secret must be a reference (env:NAME or file:/path) in files and flags, never a literal value"
	maxExtraHeaderValueSize = 8 << 10
)

func defaults() Config {
	return Config{
		ControlPlane: ControlPlane{BaseURL: defaultBaseURL, MaxInflight: defaultMaxInflight, PollTimeout: defaultPollTimeout, ResponseBatch: true, GetStream: true},
		MCP:          MCP{MaxConcurrentRequests: defaultMaxConcurrent, MaxStreams: defaultMaxStreams},
		Health:       Health{ListenAddr: defaultHealthAddr},
		Log:          Log{Level: defaultLogLevel, Format: defaultLogFormat, Audit: "log", RepeatWindow: defaultRepeatWindow},
		DrainTimeout: defaultDrainTimeout,
		Relay: Relay{
			ListenAddr:       defaultRelayAddr,
			AdminListenAddr:  defaultRelayAdminAddr,
			MaxBodyBytes:     defaultMaxBodyBytes,
			MaxResponseBytes: defaultMaxResponseBytes,
			ResponseTimeout:  defaultResponseTimeout,
			BodyReadTimeout:  defaultBodyReadTimeout,
			// MaxBodyBytesInFlight(PerKey): 0, derived from the body caps.
			MaxConcurrentPerKey:     defaultMaxPerKey,
			MaxConcurrentPerAddress: defaultMaxPerAddress,
		},
	}
}

// ConfigError is an invalid configuration: startup stops with exit code 2.
// Its message names the key and the problem and never holds a secret.
type ConfigError struct {
	Key string
	Msg string
}

func (e *ConfigError) Error() string {
	if e.Key == "" {
		return "config: " + e.Msg
	}
	return "config: " + e.Key + ": " + e.Msg
}

func cfgErr(key, format string, args ...any) error {
	return &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)}
}
