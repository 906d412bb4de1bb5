package main

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicemcp/sluice/engine/binding/stdio"
	"github.com/sluicemcp/sluice/engine/relay"
	"github.com/sluicemcp/sluice/engine/relay/natsconn"
)

// Channel is one parsed mcp.server-url, mcp.command or mcp.bindings entry.
type Channel struct {
	Name    string
	URL     string
	Command []string
	// Transport is "sse" for a legacy HTTP+SSE server ("" = Streamable HTTP).
	Transport string
	// Wasm is the channel's binding plugin (nil = none).
	Wasm *WasmBinding
	// Key is the mcp.bindings entry the channel came from ("" otherwise).
	Key string
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
	if w := c.Log.RepeatWindow; w != 0 && (w < time.Second || w > maxRepeatWindow) {
		return cfgErr("log.repeat-window", "want 0 (write every line) or 1s..1h")
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
	if c.MCP.MaxStreams < 1 || c.MCP.MaxStreams > maxMaxStreams {
		return cfgErr("mcp.max-streams", "want 1..%d", maxMaxStreams)
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
			return cfgErr("mcp.server-url", "the main channel is required (MCP_SERVER_URL, mcp.bindings, or --embedded-mcp-stub)")
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
	"X-Sluice-Extensions",
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
	if err := c.bindingChannels(out); err != nil {
		return nil, err
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
	if r.MaxResponseBytes < 1024 {
		return cfgErr("relay.max-response-bytes", "want at least 1024")
	}
	if r.ResponseTimeout <= 0 {
		return cfgErr("relay.response-timeout", "must be positive")
	}
	if err := r.validateLimits(); err != nil {
		return err
	}
	if err := r.NATS.validate(); err != nil {
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
		case "oauth-gateway":
			if t.OAuth.Issuer == "" {
				return cfgErr(p+".oauth.issuer", "required with auth-mode oauth-gateway (the authorization server's issuer URL)")
			}
		default:
			return cfgErr(p+".auth-mode", "want client-key, oauth, oauth-gateway or public")
		}
		for _, sec := range []struct {
			key string
			s   Secret
		}{{".oauth.introspection-client-secret", t.OAuth.IntrospectionClientSecret}, {".oauth.upstream-secret", t.OAuth.UpstreamSecret}} {
			if err := sec.s.check(p + sec.key); err != nil {
				return err
			}
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
	if err := r.AdminKey.check("relay.admin-key"); err != nil {
		return err
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
		if e.Limits.MaxMemory < 0 {
			return cfgErr(k+".limits.max-memory", "must not be negative")
		}
		if e.Limits.PoolSize < 0 {
			return cfgErr(k+".limits.pool-size", "must not be negative")
		}
		if err := e.Breaker.validate(k + ".breaker"); err != nil {
			return err
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

// validateLimits checks the limits for hostile clients: a byte budget that
// is set must hold one body of the largest cap (per key) and the per-key
// budget (relay-wide).
func (r Relay) validateLimits() error {
	if r.BodyReadTimeout <= 0 {
		return cfgErr("relay.body-read-timeout", "must be positive")
	}
	largest := max(r.MaxBodyBytes, r.MaxResponseBytes)
	perKey := r.MaxBodyBytesInFlightPerKey
	switch {
	case perKey < 0:
		return cfgErr("relay.max-body-bytes-in-flight-per-key", "must not be negative (0 = automatic)")
	case perKey == 0:
		perKey = max(relay.DefaultMaxBodyBytesInFlightPerKey, largest)
	case perKey < largest:
		return cfgErr("relay.max-body-bytes-in-flight-per-key", "want at least %d (relay.max-body-bytes or relay.max-response-bytes, whichever is larger), or 0", largest)
	}
	switch total := r.MaxBodyBytesInFlight; {
	case total < 0:
		return cfgErr("relay.max-body-bytes-in-flight", "must not be negative (0 = automatic)")
	case total > 0 && total < perKey:
		return cfgErr("relay.max-body-bytes-in-flight", "want at least %d (the per-key budget), or 0", perKey)
	}
	if r.MaxConcurrentPerKey < 0 {
		return cfgErr("relay.max-concurrent-per-key", "must not be negative (0 = no limit)")
	}
	if r.MaxConcurrentPerAddress < 0 {
		return cfgErr("relay.max-concurrent-per-address", "must not be negative (0 = no limit)")
	}
	return nil
}

// validate checks relay.nats.* without connecting.
func (n RelayNATS) validate() error {
	if err := n.Credentials.check("relay.nats.credentials"); err != nil {
		return err
	}
	if err := n.Token.check("relay.nats.token"); err != nil {
		return err
	}
	if n.URL == "" {
		for key, set := range map[string]bool{
			"relay.nats.credentials": n.Credentials.IsSet(), "relay.nats.token": n.Token.IsSet(),
			"relay.nats.tls.ca-file": n.TLS.CAFile != "", "relay.nats.tls.cert-file": n.TLS.CertFile != "",
			"relay.nats.replicas": n.Replicas != 0, "relay.nats.prefix": n.Prefix != "",
		} {
			if set {
				return cfgErr(key, "needs relay.nats.url")
			}
		}
		return nil
	}
	if n.Credentials.IsSet() && n.Token.IsSet() {
		return cfgErr("relay.nats.token", "set relay.nats.credentials or relay.nats.token, not both")
	}
	if n.Replicas < 0 || n.Replicas > 5 {
		return cfgErr("relay.nats.replicas", "want 0 (automatic) to 5")
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		return cfgErr("relay.nats.tls.key-file", "relay.nats.tls.cert-file and relay.nats.tls.key-file go together")
	}
	if err := (natsconn.Config{URL: n.URL}).Validate(); err != nil {
		return cfgErr("relay.nats.url", "%s", strings.TrimPrefix(err.Error(), "nats: url "))
	}
	return nil
}
