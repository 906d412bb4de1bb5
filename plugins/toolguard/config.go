package toolguard

import (
	"bytes"
	"fmt"

	"github.com/sluicemcp/sluice/sdk"
)

// Config is the plugin's configuration. The zero value allows every tool,
// learns pins on first sight and enforces them, and looks for every
// poisoning signal with the default actions (DefaultDescriptionActions,
// DefaultResultActions).
type Config struct {
	// Policy is an ordered list of rules; the first rule that matches a
	// tool call (caller, tunnel, channel and tool) decides it.
	Policy []Rule `json:"policy,omitempty"`
	// Default decides a call no rule matches: allow (default) or deny.
	Default string `json:"default,omitempty"`
	// DenyCode is the JSON-RPC error code of a denied or blocked call or a
	// blocked result (default -32001).
	DenyCode int `json:"deny_code,omitempty"`
	// Pins configures rug-pull protection.
	Pins PinsConfig `json:"pins,omitzero"`
	// Signals configures the poisoning signals.
	Signals SignalsConfig `json:"signals,omitzero"`
}

// Rule allows or denies tools. Every selector is a list of patterns ('*'
// any run, '?' one byte); an empty list matches anything.
type Rule struct {
	// Name identifies the rule in the error a denied call gets and in logs.
	Name string `json:"name"`
	// Action is allow or deny.
	Action string `json:"action"`
	// Tools the rule covers (required).
	Tools []string `json:"tools"`
	// Callers: client-key names or token subjects (the envelope's caller;
	// "" when the side does not know it).
	Callers []string `json:"callers,omitempty"`
	// Tunnels: tunnel ids.
	Tunnels []string `json:"tunnels,omitempty"`
	// Channels: channel names (the agent's bindings; the relay sees main).
	Channels []string `json:"channels,omitempty"`
}

// Pin modes.
const (
	PinsEnforce = "enforce" // a changed or unpinned tool is removed and its calls blocked (default)
	PinsShadow  = "shadow"  // it is only logged
	PinsOff     = "off"     // no pinning
)

// PinsConfig configures pinning.
type PinsConfig struct {
	// Mode is enforce (default), shadow or off.
	Mode string `json:"mode,omitempty"`
	// Learn pins a tool that no set pins the first time it is listed, in
	// the plugin's key/value store (default true). Without it, such a tool
	// counts as changed.
	Learn *bool `json:"learn,omitempty"`
	// Unlisted decides a call of a tool toolguard has never seen listed on
	// that tunnel and channel: allow (default) or block.
	Unlisted string `json:"unlisted,omitempty"`
	// Sets are pins the operator commits. For a tool, the first set that
	// matches the tunnel and channel and pins that tool applies.
	Sets []PinSet `json:"sets,omitempty"`
}

// PinSet is one set of pins.
type PinSet struct {
	// From is a pins document as `sluice tools pin` writes it, usually a
	// file reference ("file:/etc/sluice/pins.json") the host resolves.
	From string `json:"from,omitempty"`
	// Tools are inline pins: tool name → "sha256:…" (they win over From).
	Tools map[string]string `json:"tools,omitempty"`
	// Tunnels and Channels limit the set (patterns; empty = any).
	Tunnels  []string `json:"tunnels,omitempty"`
	Channels []string `json:"channels,omitempty"`
}

// SignalsConfig configures the poisoning signals. Descriptions covers
// every string of a listed tool's definition (and the server's
// instructions in initialize and server/discover results); Results covers
// tools/call results. Each maps a signal name (SignalNames) to off,
// record, mask or block, over the defaults.
type SignalsConfig struct {
	Descriptions map[string]string `json:"descriptions,omitempty"`
	Results      map[string]string `json:"results,omitempty"`
	// AllowedHosts are the hosts URLs may point to ("example.com",
	// "*.example.com"); untrusted_urls is only checked when it is set.
	AllowedHosts []string `json:"allowed_hosts,omitempty"`
}

// DefaultDescriptionActions are the actions for tool definitions: poisoned
// definitions are blocked.
var DefaultDescriptionActions = [numSignals]Action{
	SignalHiddenMarkers:    ActionBlock,
	SignalInjectionPhrases: ActionBlock,
	SignalInvisibleUnicode: ActionBlock,
	SignalANSIEscapes:      ActionBlock,
	SignalUntrustedURLs:    ActionRecord,
}

// DefaultResultActions are the actions for tool results: what a tool
// returns is often third-party text (a web page, a ticket, a file), so
// markers and phrases are cut out rather than failing the call.
var DefaultResultActions = [numSignals]Action{
	SignalHiddenMarkers:    ActionMask,
	SignalInjectionPhrases: ActionMask,
	SignalInvisibleUnicode: ActionMask,
	SignalANSIEscapes:      ActionOff,
	SignalUntrustedURLs:    ActionRecord,
}

// ConfigKeys are the top-level config keys the plugin accepts.
var ConfigKeys = []string{"policy", "default", "deny_code", "pins", "signals"}

// ParseConfig decodes a JSON config, refusing unknown members at any depth
// (a typo must not silently turn a policy off). Empty input is the zero
// Config.
func ParseConfig(raw []byte) (Config, error) {
	var c Config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return c, fmt.Errorf("toolguard: config: %w", err)
	}
	return c, nil
}

func parseAction(key, s string) (Action, error) {
	for a, n := range actionNames {
		if s == n {
			return Action(a), nil
		}
	}
	return 0, fmt.Errorf("toolguard: config %s: %q: want off, record, mask or block", key, s)
}

func signalByName(s string) (Signal, bool) {
	for k, n := range signalNames {
		if s == n {
			return Signal(k), true
		}
	}
	return 0, false
}

func compileActions(key string, def [numSignals]Action, m map[string]string) ([numSignals]Action, error) {
	out := def
	for name, a := range m {
		sig, ok := signalByName(name)
		if !ok {
			return out, fmt.Errorf("toolguard: config %s: unknown signal %q (signals: %s)", key, name, joinNames(signalNames[:]))
		}
		act, err := parseAction(key+"."+name, a)
		if err != nil {
			return out, err
		}
		out[sig] = act
	}
	return out, nil
}

func joinNames(l []string) string {
	var b bytes.Buffer
	for i, s := range l {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s)
	}
	return b.String()
}
