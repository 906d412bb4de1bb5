package headers

import (
	"fmt"
	"net/textproto"
	"strings"

	"github.com/sluicemcp/sluice/sdk"
)

// Version is the plugin's version.
const Version = "1.0.0"

// Rule is one header edit.
type Rule struct {
	// Hook is request, response or http_response.
	Hook string `json:"hook"`
	// Op is add, set, remove or rename.
	Op string `json:"op"`
	// Name is the header to edit.
	Name string `json:"name"`
	// Value is the value for add and set.
	Value string `json:"value,omitempty"`
	// To is the new name for rename.
	To string `json:"to,omitempty"`
}

// Config is the plugin's configuration.
type Config struct {
	Rules []Rule `json:"rules"`
}

type rule struct {
	hook     sdk.Hook
	op       string
	name, to string
	value    string
}

// Rules is a validated Config.
type Rules struct{ rules []rule }

// ParseConfig decodes and validates a JSON config (unknown members refused).
func ParseConfig(raw []byte) (*Rules, error) {
	var c Config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, fmt.Errorf("headers: config: %w", err)
	}
	return New(c)
}

// New validates c.
func New(c Config) (*Rules, error) {
	rs := &Rules{}
	for i, r := range c.Rules {
		var h sdk.Hook
		switch r.Hook {
		case "request":
			h = sdk.HookRequest
		case "response":
			h = sdk.HookResponse
		case "http_response":
			h = sdk.HookHTTPResponse
		default:
			return nil, fmt.Errorf("headers: config rules[%d].hook %q: want request, response or http_response", i, r.Hook)
		}
		if !validName(r.Name) {
			return nil, fmt.Errorf("headers: config rules[%d].name %q: not a header name", i, r.Name)
		}
		if strings.ContainsAny(r.Value, "\r\n\x00") {
			return nil, fmt.Errorf("headers: config rules[%d].value: contains a line break or NUL", i)
		}
		if strings.HasPrefix(r.Value, "env:") || strings.HasPrefix(r.Value, "file:") {
			return nil, fmt.Errorf("headers: config rules[%d].value: unresolved reference (the host resolves env: and file: values)", i)
		}
		nr := rule{hook: h, op: r.Op, name: textproto.CanonicalMIMEHeaderKey(r.Name), value: r.Value}
		switch r.Op {
		case "add", "set":
		case "remove":
			if r.Value != "" || r.To != "" {
				return nil, fmt.Errorf("headers: config rules[%d]: remove takes no value or to", i)
			}
		case "rename":
			if !validName(r.To) {
				return nil, fmt.Errorf("headers: config rules[%d].to %q: not a header name", i, r.To)
			}
			nr.to = textproto.CanonicalMIMEHeaderKey(r.To)
		default:
			return nil, fmt.Errorf("headers: config rules[%d].op %q: want add, set, remove or rename", i, r.Op)
		}
		rs.rules = append(rs.rules, nr)
	}
	return rs, nil
}

// validName reports whether s is an RFC 9110 token.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// Apply returns the edits for m, in rule order. Rules see the message's
// original headers: a rename renames the values the message arrived with.
func (rs *Rules) Apply(m *sdk.Message) sdk.Result {
	res := sdk.Continue()
	for _, r := range rs.rules {
		if r.hook != m.Hook {
			continue
		}
		switch r.op {
		case "add":
			res = res.AddHeader(r.name, r.value)
		case "set":
			res = res.SetHeader(r.name, r.value)
		case "remove":
			if m.Headers.Has(r.name) {
				res = res.DelHeader(r.name)
			}
		case "rename":
			if vs := m.Headers.Values(r.name); len(vs) > 0 {
				res = res.DelHeader(r.name)
				for _, v := range vs {
					res = res.AddHeader(r.to, v)
				}
			}
		}
	}
	return res
}

var current = sdk.ConfigValue[*Rules]{Parse: ParseConfig}

// Plugin returns the headers plugin (every hook, every method).
func Plugin() sdk.Plugin {
	return sdk.Plugin{
		Name: "headers", Version: Version,
		OnRequest: handle, OnResponse: handle, OnHTTPResponse: handle,
	}
}

func handle(m *sdk.Message) sdk.Result {
	rs, err := current.Get()
	if err != nil {
		sdk.Errorf("%v", err)
		return sdk.Reject(0, -32603, "headers: invalid plugin config")
	}
	return rs.Apply(m)
}
