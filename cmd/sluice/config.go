package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"

	"github.com/sluicemcp/sluice/engine/binding/stdio"
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
	AllowRemoteUI   bool           `koanf:"allow-remote-ui"`
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
}

// MCP configures the private MCP servers the agent forwards to.
type MCP struct {
	// ServerURL entries are "channel=NAME,url=URL" or a bare URL for main.
	ServerURL             []string      `koanf:"server-url"`
	Command               []string      `koanf:"command"`
	MaxConcurrentRequests int           `koanf:"max-concurrent-requests"`
	ExtraHeaders          []string      `koanf:"extra-headers"`
	StartupWaitTimeout    time.Duration `koanf:"startup-wait-timeout"`
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
	// (JSON lines, appended).
	Audit string `koanf:"audit"`
}

// PID configures the pid file.
type PID struct {
	File string `koanf:"file"`
}

// Relay configures `sluice relay` (and the relay half of `sluice dev`).
type Relay struct {
	ListenAddr      string         `koanf:"listen-addr"`
	PublicURL       string         `koanf:"public-url"`
	AdminListenAddr string         `koanf:"admin-listen-addr"`
	AdminKey        Secret         `koanf:"admin-key"`
	TLSCert         string         `koanf:"tls-cert"`
	TLSKey          string         `koanf:"tls-key"`
	MaxBodyBytes    int64          `koanf:"max-body-bytes"`
	ResponseTimeout time.Duration  `koanf:"response-timeout"`
	Tunnels         []TunnelConfig `koanf:"tunnels"`
	Pipeline        []PluginConfig `koanf:"pipeline"`
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
}

// Defaults, documented in koanf.yaml and docs/configuration.md.
const (
	defaultBaseURL          = "https://api.openai.com"
	defaultMaxInflight      = 20
	maxMaxInflight          = 10000
	defaultPollTimeout      = 30 * time.Second
	defaultMaxConcurrent    = 10
	defaultHealthAddr       = "127.0.0.1:8080"
	defaultRelayAddr        = "127.0.0.1:8787"
	defaultRelayAdminAddr   = "127.0.0.1:8788"
	defaultMaxBodyBytes     = 4 << 20
	defaultResponseTimeout  = 120 * time.Second
	defaultDrainTimeout     = 30 * time.Second
	defaultLogLevel         = "info"
	defaultLogFormat        = "auto"
	devMinConcurrency       = 64
	envConfig               = "SLUICE_CONFIG"
	secretHint              = "a secret must be a reference (env:NAME or file:/path) in files and flags, never a literal value"
	maxExtraHeaderValueSize = 8 << 10
)

func defaults() Config {
	return Config{
		ControlPlane: ControlPlane{BaseURL: defaultBaseURL, MaxInflight: defaultMaxInflight, PollTimeout: defaultPollTimeout, ResponseBatch: true},
		MCP:          MCP{MaxConcurrentRequests: defaultMaxConcurrent},
		Health:       Health{ListenAddr: defaultHealthAddr},
		Log:          Log{Level: defaultLogLevel, Format: defaultLogFormat, Audit: "log"},
		DrainTimeout: defaultDrainTimeout,
		Relay: Relay{
			ListenAddr:      defaultRelayAddr,
			AdminListenAddr: defaultRelayAdminAddr,
			MaxBodyBytes:    defaultMaxBodyBytes,
			ResponseTimeout: defaultResponseTimeout,
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

// envVar maps one environment variable to a config key.
type envVar struct {
	name   string
	key    string
	list   bool // newline-separated list
	secret bool // the value is the literal secret: becomes env:NAME
}

// envTable is the explicit environment mapping (CONVENTIONS.md); names differ
// from keys, so there is no generic transform.
var envTable = []envVar{
	{name: "CONTROL_PLANE_BASE_URL", key: "control-plane.base-url"},
	{name: "CONTROL_PLANE_URL_PATH", key: "control-plane.url-path"},
	{name: "CONTROL_PLANE_TUNNEL_ID", key: "control-plane.tunnel-id"},
	{name: "CONTROL_PLANE_API_KEY", key: "control-plane.api-key", secret: true},
	{name: "OPENAI_API_KEY", key: "control-plane.api-key", secret: true}, // fallback
	{name: "CONTROL_PLANE_ORGANIZATION_ID", key: "control-plane.organization-id"},
	{name: "CONTROL_PLANE_MAX_INFLIGHT_REQUESTS", key: "control-plane.max-inflight"},
	{name: "CONTROL_PLANE_POLL_TIMEOUT", key: "control-plane.poll-timeout"},
	{name: "CONTROL_PLANE_EXTRA_HEADERS", key: "control-plane.extra-headers", list: true},
	{name: "CONTROL_PLANE_RESPONSE_BATCH", key: "control-plane.response-batch"},
	{name: "MCP_SERVER_URL", key: "mcp.server-url", list: true},
	{name: "MCP_COMMAND", key: "mcp.command", list: true},
	{name: "MCP_MAX_CONCURRENT_REQUESTS", key: "mcp.max-concurrent-requests"},
	{name: "MCP_EXTRA_HEADERS", key: "mcp.extra-headers", list: true},
	{name: "MCP_STARTUP_WAIT_TIMEOUT", key: "mcp.startup-wait-timeout"},
	{name: "HEALTH_LISTEN_ADDR", key: "health.listen-addr"},
	{name: "HEALTH_URL_FILE", key: "health.url-file"},
	{name: "ALLOW_REMOTE_UI", key: "allow-remote-ui"},
	{name: "LOG_LEVEL", key: "log.level"},
	{name: "LOG_FORMAT", key: "log.format"},
	{name: "LOG_HTTP_RAW_UNSAFE", key: "log.http-raw-unsafe"},
	{name: "LOG_AUDIT", key: "log.audit"},
	{name: "CA_BUNDLE", key: "ca-bundle"},
	{name: "HTTPS_PROXY", key: "http-proxy"},
	{name: "HTTP_PROXY", key: "http-proxy"}, // fallback
	{name: "PID_FILE", key: "pid.file"},
	{name: "SLUICE_DRAIN_TIMEOUT", key: "drain-timeout"},
	{name: "RELAY_LISTEN_ADDR", key: "relay.listen-addr"},
	{name: "RELAY_PUBLIC_URL", key: "relay.public-url"},
	{name: "RELAY_ADMIN_LISTEN_ADDR", key: "relay.admin-listen-addr"},
	{name: "RELAY_ADMIN_KEY", key: "relay.admin-key", secret: true},
	{name: "RELAY_TLS_CERT", key: "relay.tls-cert"},
	{name: "RELAY_TLS_KEY", key: "relay.tls-key"},
	{name: "RELAY_MAX_BODY_BYTES", key: "relay.max-body-bytes"},
	{name: "RELAY_RESPONSE_TIMEOUT", key: "relay.response-timeout"},
}

// envSource resolves environment variables; tests inject their own.
type envSource func() []string

func (e envSource) lookup(name string) (string, bool) {
	var environ []string
	if e == nil {
		environ = os.Environ()
	} else {
		environ = e()
	}
	// The last assignment wins, as with os.Getenv.
	val, ok := "", false
	for _, kv := range environ {
		if k, v, found := strings.Cut(kv, "="); found && k == name {
			val, ok = v, true
		}
	}
	return val, ok
}

// envProvider builds the koanf env provider over the explicit table. A name
// listed twice for one key (a fallback) is used only when the first is unset.
func envProvider(src envSource) *env.Env {
	present := map[string]bool{}
	for _, ev := range envTable {
		if v, ok := src.lookup(ev.name); ok && v != "" {
			present[ev.name] = true
		}
	}
	byName := map[string]envVar{}
	winner := map[string]string{} // key -> env name that supplies it
	for _, ev := range envTable {
		byName[ev.name] = ev
		if _, done := winner[ev.key]; !done && present[ev.name] {
			winner[ev.key] = ev.name
		}
	}
	environ := func() []string {
		if src == nil {
			return os.Environ()
		}
		return src()
	}
	return env.Provider(".", env.Opt{
		EnvironFunc: environ,
		TransformFunc: func(k, v string) (string, any) {
			ev, ok := byName[k]
			if !ok || v == "" || winner[ev.key] != k {
				return "", nil
			}
			switch {
			case ev.secret:
				// The environment holds the literal secret; keep only a
				// reference to it in the merged config.
				return ev.key, "env:" + ev.name
			case ev.list:
				return ev.key, splitLines(v)
			}
			return ev.key, v
		},
	})
}

func splitLines(v string) []string {
	var out []string
	for _, s := range strings.Split(v, "\n") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// loader loads the configuration from its three sources. It is kept so that
// a reload reads the same flags, environment and file again.
type loader struct {
	flags *pflag.FlagSet // parsed; nil = no flags
	env   envSource      // nil = the process environment
	path  string         // config file; "" = none
}

// configPath returns the file named by --config or SLUICE_CONFIG.
func configPath(fs *pflag.FlagSet, src envSource) string {
	if fs != nil {
		if f := fs.Lookup("config"); f != nil && f.Changed {
			return f.Value.String()
		}
	}
	v, _ := src.lookup(envConfig)
	return v
}

// nonConfigFlags are flags that are not config keys.
var nonConfigFlags = map[string]bool{"config": true, "help": true, "public": true}

// load merges file, env and flags (in rising precedence) over the defaults,
// rejects unknown file keys, and decodes into a Config. The returned Koanf
// holds only what was configured (no defaults), for reload diffs.
func (l *loader) load() (*Config, *koanf.Koanf, error) {
	k := koanf.New(".")
	if l.path != "" {
		kf := koanf.New(".")
		if err := kf.Load(file.Provider(l.path), yaml.Parser()); err != nil {
			return nil, nil, &ConfigError{Msg: fmt.Sprintf("read %s: %v", l.path, oneLine(err))}
		}
		if key := unknownKey(kf.Raw(), reflect.TypeFor[Config](), ""); key != "" {
			return nil, nil, cfgErr(key, "unknown key in %s", l.path)
		}
		if err := k.Merge(kf); err != nil {
			return nil, nil, &ConfigError{Msg: fmt.Sprintf("merge %s: %v", l.path, err)}
		}
	}
	if err := k.Load(envProvider(l.env), nil); err != nil {
		return nil, nil, &ConfigError{Msg: fmt.Sprintf("environment: %v", err)}
	}
	if l.flags != nil {
		fs := l.flags
		p := posflag.ProviderWithFlag(fs, ".", k, func(f *pflag.Flag) (string, any) {
			if !f.Changed || nonConfigFlags[f.Name] {
				return "", nil
			}
			return f.Name, posflag.FlagVal(fs, f)
		})
		if err := k.Load(p, nil); err != nil {
			return nil, nil, &ConfigError{Msg: fmt.Sprintf("flags: %v", err)}
		}
	}
	cfg := defaults()
	if err := decode(k, &cfg); err != nil {
		return nil, nil, err
	}
	return &cfg, k, nil
}

func decode(k *koanf.Koanf, cfg *Config) error {
	err := k.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				mapstructure.StringToTimeDurationHookFunc(),
				stringToSingletonSlice,
			),
			WeaklyTypedInput: true,
			ErrorUnused:      true,
		},
	})
	if err == nil {
		return nil
	}
	var de *mapstructure.DecodeError
	if errors.As(err, &de) {
		return cfgErr(de.Name(), "%s", describeDecodeError(de))
	}
	return &ConfigError{Msg: oneLine(err)}
}

// stringToSingletonSlice turns a scalar string into a one-element list, so a
// single `mcp.server-url: http://…` works and commas inside an entry are kept
// (mapstructure's weak decoding would otherwise split or refuse it).
func stringToSingletonSlice(from, to reflect.Type, data any) (any, error) {
	if from.Kind() == reflect.String && to.Kind() == reflect.Slice && to.Elem().Kind() == reflect.String {
		if s := data.(string); s != "" {
			return []string{s}, nil
		}
		return []string{}, nil
	}
	return data, nil
}

func describeDecodeError(de *mapstructure.DecodeError) string {
	inner := de.Unwrap()
	var pe *mapstructure.ParseError
	var ue *mapstructure.UnconvertibleTypeError
	switch {
	case errors.As(inner, &pe):
		return "want " + kindName(pe.Expected.Type())
	case errors.As(inner, &ue):
		return "want " + kindName(ue.Expected.Type())
	}
	return oneLine(inner)
}

func kindName(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "a duration such as 30s or 2m"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Uint32, reflect.Uint64, reflect.Uint:
		return "a non-negative integer"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// unknownKey returns the first key of m (in sorted order, as a dotted path)
// that t has no field for, or "".
func unknownKey(m map[string]any, t reflect.Type, prefix string) string {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := f.Tag.Get("koanf"); tag != "" {
			fields[tag] = f.Type
		}
	}
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		path := prefix + key
		ft, ok := fields[key]
		if !ok {
			return path
		}
		switch ft.Kind() {
		case reflect.Struct:
			if sub, ok := m[key].(map[string]any); ok && ft != reflect.TypeFor[time.Duration]() {
				if u := unknownKey(sub, ft, path+"."); u != "" {
					return u
				}
			}
		case reflect.Slice:
			if ft.Elem().Kind() != reflect.Struct {
				continue
			}
			list, _ := m[key].([]any)
			for i, e := range list {
				if sub, ok := e.(map[string]any); ok {
					if u := unknownKey(sub, ft.Elem(), fmt.Sprintf("%s[%d].", path, i)); u != "" {
						return u
					}
				}
			}
		}
	}
	return ""
}

// Secret is a configured secret: in the merged config always a reference,
// "env:NAME" or "file:/path" (a value from the environment is turned into a
// reference to its own variable when loaded).
type Secret string

// IsSet reports whether a reference is configured.
func (s Secret) IsSet() bool { return s != "" }

// check rejects a literal.
func (s Secret) check(key string) error {
	if s == "" {
		return nil
	}
	ref := string(s)
	switch {
	case strings.HasPrefix(ref, "env:"):
		if strings.TrimPrefix(ref, "env:") == "" {
			return cfgErr(key, "env: reference without a variable name")
		}
	case strings.HasPrefix(ref, "file:"):
		if strings.TrimPrefix(ref, "file:") == "" {
			return cfgErr(key, "file: reference without a path")
		}
	default:
		return cfgErr(key, "%s", secretHint)
	}
	return nil
}

// resolve returns the secret's value. Errors name the key and the reference,
// never the value.
func (s Secret) resolve(key string, src envSource) (string, error) {
	if err := s.check(key); err != nil || s == "" {
		return "", err
	}
	ref := string(s)
	if name, ok := strings.CutPrefix(ref, "env:"); ok {
		v, found := src.lookup(name)
		if !found || v == "" {
			return "", cfgErr(key, "environment variable %s (from %s) is not set", name, ref)
		}
		return v, nil
	}
	path := strings.TrimPrefix(ref, "file:")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", cfgErr(key, "read secret file %s: %v", path, unwrapPathErr(err))
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", cfgErr(key, "secret file %s is empty", path)
	}
	return v, nil
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Channel is one parsed mcp.server-url or mcp.command entry.
type Channel struct {
	Name    string
	URL     string
	Command []string
}

// parseChannelEntry parses "channel=NAME,url=URL", "url=URL" or a bare URL
// (field is "url" or "command").
func parseChannelEntry(key, field, s string) (Channel, error) {
	c := Channel{Name: "main"}
	val := s
	if strings.HasPrefix(s, "channel=") || strings.HasPrefix(s, field+"=") {
		val = ""
		rest := s
		for rest != "" {
			var part string
			if strings.HasPrefix(rest, field+"=") {
				// The value is the rest of the entry: URLs and commands may hold commas.
				part, rest = rest, ""
			} else {
				part, rest, _ = strings.Cut(rest, ",")
			}
			name, v, ok := strings.Cut(part, "=")
			if !ok {
				return c, cfgErr(key, "entry %q: want channel=NAME,%s=VALUE", s, field)
			}
			switch strings.TrimSpace(name) {
			case "channel":
				c.Name = strings.TrimSpace(v)
			case field:
				val = strings.TrimSpace(v)
			default:
				return c, cfgErr(key, "entry %q: unknown field %q (want channel and %s)", s, name, field)
			}
		}
	}
	if !validChannel(c.Name) {
		return c, cfgErr(key, "channel %q: want [a-z0-9_-]{1,64}", c.Name)
	}
	if val == "" {
		return c, cfgErr(key, "entry %q has no %s", s, field)
	}
	if field == "url" {
		u, err := url.Parse(val)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, cfgErr(key, "channel %s: want an http:// or https:// URL", c.Name)
		}
		c.URL = val
	} else {
		argv, err := stdio.SplitCommand(val)
		if err != nil || len(argv) == 0 {
			return c, cfgErr(key, "channel %s: cannot split the command line (quotes?)", c.Name)
		}
		c.Command = argv
	}
	return c, nil
}

func validChannel(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// validTunnelID mirrors wire.ValidTunnelID without the regexp.
func validTunnelID(s string) bool {
	rest, ok := strings.CutPrefix(s, "tunnel_")
	if !ok || len(rest) != 32 {
		return false
	}
	for _, r := range rest {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// parseHeaders parses "Name: value" entries.
func parseHeaders(key string, entries []string, forbidden []string) (map[string]string, error) {
	out := map[string]string{}
	for _, e := range entries {
		name, v, ok := strings.Cut(e, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, cfgErr(key, "want 'Name: value' entries")
		}
		if len(v) > maxExtraHeaderValueSize {
			return nil, cfgErr(key, "header %s is too long", name)
		}
		for _, f := range forbidden {
			if strings.EqualFold(name, f) {
				return nil, cfgErr(key, "header %s cannot be overridden", name)
			}
		}
		out[name] = strings.TrimSpace(v)
	}
	return out, nil
}

// Mode is the subcommand a config is validated for.
type Mode string

// Modes.
const (
	ModeRun   Mode = "run"
	ModeRelay Mode = "relay"
	ModeDev   Mode = "dev"
)

// validate checks everything that does not need a secret's value. The first
// problem is returned.
func (c *Config) validate(mode Mode) error {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return cfgErr("log.level", "want debug, info, warn or error")
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		return cfgErr("log.format", "want auto, text or json")
	}
	if c.Log.Audit == "" {
		return cfgErr("log.audit", `want "log", "off" or a file path`)
	}
	if c.DrainTimeout < 0 {
		return cfgErr("drain-timeout", "must not be negative")
	}
	if err := validatePipeline("pipeline", c.Pipeline); err != nil {
		return err
	}
	if mode == ModeRun || mode == ModeDev {
		if err := c.validateAgent(mode); err != nil {
			return err
		}
	}
	if mode == ModeRelay || mode == ModeDev {
		if err := c.validateRelay(mode); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateAgent(mode Mode) error {
	cp := c.ControlPlane
	if mode == ModeRun {
		u, err := url.Parse(cp.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfgErr("control-plane.base-url", "want an http:// or https:// URL")
		}
		if cp.TunnelID == "" {
			return cfgErr("control-plane.tunnel-id", "required (CONTROL_PLANE_TUNNEL_ID)")
		}
		if !validTunnelID(cp.TunnelID) {
			return cfgErr("control-plane.tunnel-id", "want tunnel_ followed by 32 lowercase letters or digits")
		}
		if !cp.APIKey.IsSet() {
			return cfgErr("control-plane.api-key", "required (CONTROL_PLANE_API_KEY in the environment, or env:NAME / file:/path)")
		}
	}
	if err := cp.APIKey.check("control-plane.api-key"); err != nil {
		return err
	}
	if cp.URLPath != "" && !strings.HasPrefix(cp.URLPath, "/") {
		return cfgErr("control-plane.url-path", "must start with /")
	}
	if cp.MaxInflight < 1 || cp.MaxInflight > maxMaxInflight {
		return cfgErr("control-plane.max-inflight", "want 1..%d", maxMaxInflight)
	}
	if cp.PollTimeout <= 0 {
		return cfgErr("control-plane.poll-timeout", "must be positive")
	}
	if _, err := parseHeaders("control-plane.extra-headers", cp.ExtraHeaders, forbiddenControlHeaders); err != nil {
		return err
	}
	if c.MCP.MaxConcurrentRequests < 1 {
		return cfgErr("mcp.max-concurrent-requests", "must be at least 1")
	}
	if c.MCP.StartupWaitTimeout < 0 {
		return cfgErr("mcp.startup-wait-timeout", "must not be negative")
	}
	if _, err := parseHeaders("mcp.extra-headers", c.MCP.ExtraHeaders, nil); err != nil {
		return err
	}
	chans, err := c.channels()
	if err != nil {
		return err
	}
	if mode == ModeRun && !c.EmbeddedMCPStub {
		if _, ok := chans["main"]; !ok {
			return cfgErr("mcp.server-url", "the main channel is required (MCP_SERVER_URL, or --embedded-mcp-stub)")
		}
	}
	if c.Health.ListenAddr != "" {
		if _, _, err := net.SplitHostPort(c.Health.ListenAddr); err != nil {
			return cfgErr("health.listen-addr", "want host:port")
		}
	}
	return nil
}

var forbiddenControlHeaders = []string{
	"Authorization", "OpenAI-Organization", "X-Tunnel-Client-Name", "X-Tunnel-Client-Version",
	"X-Tunnel-Client-Instance-Id", "X-Tunnel-MCP-Server-Info", "X-Tunnel-Shard-Token", "Host",
}

// channels parses mcp.server-url and mcp.command into channel → Channel.
func (c *Config) channels() (map[string]Channel, error) {
	out := map[string]Channel{}
	for _, src := range []struct {
		key, field string
		entries    []string
	}{
		{"mcp.server-url", "url", c.MCP.ServerURL},
		{"mcp.command", "command", c.MCP.Command},
	} {
		for _, e := range src.entries {
			ch, err := parseChannelEntry(src.key, src.field, e)
			if err != nil {
				return nil, err
			}
			if _, dup := out[ch.Name]; dup {
				return nil, cfgErr(src.key, "channel %s configured twice", ch.Name)
			}
			out[ch.Name] = ch
		}
	}
	return out, nil
}

func (c *Config) validateRelay(mode Mode) error {
	r := c.Relay
	if _, _, err := net.SplitHostPort(r.ListenAddr); err != nil {
		return cfgErr("relay.listen-addr", "want host:port")
	}
	if r.AdminListenAddr != "" {
		if _, _, err := net.SplitHostPort(r.AdminListenAddr); err != nil {
			return cfgErr("relay.admin-listen-addr", "want host:port")
		}
	}
	if r.PublicURL != "" {
		u, err := url.Parse(r.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return cfgErr("relay.public-url", "want an http:// or https:// origin such as https://relay.example.com")
		}
	}
	if (r.TLSCert == "") != (r.TLSKey == "") {
		return cfgErr("relay.tls-key", "relay.tls-cert and relay.tls-key go together")
	}
	if r.MaxBodyBytes < 1024 {
		return cfgErr("relay.max-body-bytes", "want at least 1024")
	}
	if r.ResponseTimeout <= 0 {
		return cfgErr("relay.response-timeout", "must be positive")
	}
	if err := r.AdminKey.check("relay.admin-key"); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, t := range r.Tunnels {
		p := fmt.Sprintf("relay.tunnels[%d]", i)
		if !validTunnelID(t.ID) {
			return cfgErr(p+".id", "want tunnel_ followed by 32 lowercase letters or digits")
		}
		if seen[t.ID] {
			return cfgErr(p+".id", "tunnel %s listed twice", t.ID)
		}
		seen[t.ID] = true
		if !t.RuntimeKey.IsSet() {
			return cfgErr(p+".runtime-key", "required (env:NAME or file:/path)")
		}
		if err := t.RuntimeKey.check(p + ".runtime-key"); err != nil {
			return err
		}
		switch t.AuthMode {
		case "", "client-key":
			if len(t.ClientKeys) == 0 {
				return cfgErr(p+".client-keys", "auth-mode client-key needs at least one client key")
			}
		case "oauth", "public":
		default:
			return cfgErr(p+".auth-mode", "want client-key, oauth or public")
		}
		for j, ck := range t.ClientKeys {
			kp := fmt.Sprintf("%s.client-keys[%d]", p, j)
			if ck.Name == "" {
				return cfgErr(kp+".name", "required")
			}
			if !ck.Key.IsSet() {
				return cfgErr(kp+".key", "required (env:NAME or file:/path)")
			}
			if err := ck.Key.check(kp + ".key"); err != nil {
				return err
			}
		}
		if t.ResponseTimeout < 0 {
			return cfgErr(p+".response-timeout", "must not be negative")
		}
	}
	return validatePipeline("relay.pipeline", r.Pipeline)
}

func validatePipeline(key string, p []PluginConfig) error {
	names := map[string]bool{}
	for i, e := range p {
		k := fmt.Sprintf("%s[%d]", key, i)
		if e.Plugin == "" {
			return cfgErr(k+".plugin", "required (a built-in name or a .wasm path)")
		}
		name := e.stageName()
		if names[name] {
			return cfgErr(k+".name", "stage %q listed twice (give each a distinct name)", name)
		}
		names[name] = true
		if e.SHA256 != "" && !isHex(e.SHA256, 64) {
			return cfgErr(k+".sha256", "want 64 lowercase hex digits")
		}
		for _, h := range e.Hooks {
			switch h {
			case "request", "response", "http_response":
			default:
				return cfgErr(k+".hooks", "unknown hook %q (want request, response or http_response)", h)
			}
		}
		switch e.OnError {
		case "", "fail_closed", "fail_open":
		default:
			return cfgErr(k+".on-error", "want fail_closed or fail_open")
		}
		if e.OnError == "fail_open" && e.Plugin == "redact" {
			return cfgErr(k+".on-error", "redact is always fail_closed")
		}
		if e.Limits.CallTimeout < 0 {
			return cfgErr(k+".limits.call-timeout", "must not be negative")
		}
		if e.Limits.MaxMessageSize < 0 {
			return cfgErr(k+".limits.max-message-size", "must not be negative")
		}
	}
	return nil
}

func (e PluginConfig) stageName() string {
	if e.Name != "" {
		return e.Name
	}
	if isModulePath(e.Plugin) {
		return strings.TrimSuffix(filepath.Base(e.Plugin), ".wasm")
	}
	return e.Plugin
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
