package oauthmeta

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/rawjson"
)

// Version is the plugin's version.
const Version = "1.0.0"

// Config is the plugin's configuration.
type Config struct {
	// PublicResource is the relay's public MCP URL, e.g.
	// "https://relay.example.com/v1/mcp/{tunnel}". "" = leave "resource" alone.
	PublicResource string `json:"public_resource,omitempty"`
	// PublicMetadataURL is the relay's protected-resource metadata URL, e.g.
	// "https://relay.example.com/.well-known/oauth-protected-resource/v1/mcp/{tunnel}".
	// "" = leave WWW-Authenticate alone.
	PublicMetadataURL string `json:"public_metadata_url,omitempty"`
}

// ParseConfig decodes and validates a JSON config (unknown members refused).
func ParseConfig(raw []byte) (Config, error) {
	var c Config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return c, fmt.Errorf("oauthmeta: config: %w", err)
	}
	for key, v := range map[string]string{"public_resource": c.PublicResource, "public_metadata_url": c.PublicMetadataURL} {
		if v == "" {
			continue
		}
		u, err := url.Parse(strings.ReplaceAll(v, "{tunnel}", "tunnel_x"))
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return c, fmt.Errorf("oauthmeta: config %s %q: want an absolute http(s) URL", key, v)
		}
	}
	return c, nil
}

// expand substitutes the tunnel id; ok is false when the URL needs a tunnel id
// the message does not carry.
func expand(tmpl, tunnel string) (string, bool) {
	if !strings.Contains(tmpl, "{tunnel}") {
		return tmpl, true
	}
	if tunnel == "" {
		return "", false
	}
	return strings.ReplaceAll(tmpl, "{tunnel}", tunnel), true
}

// RewriteResource replaces the string value of the top-level "resource" member
// of a JSON document with resource (the last one when the name repeats, and
// names compared unescaped: the member clients read). It returns nil when
// body is not a JSON object with a string "resource", or when the value is
// already resource.
func RewriteResource(body []byte, resource string) []byte {
	if !json.Valid(body) {
		return nil
	}
	r, err := rawjson.Member(body, 0, "resource")
	if err != nil || !r.Found() || body[r.Start] != '"' {
		return nil
	}
	s, e := r.Start, r.End
	v := rawjson.AppendString(nil, resource)
	if bytes.Equal(body[s:e], v) {
		return nil
	}
	out := make([]byte, 0, len(body)-(e-s)+len(v))
	out = append(out, body[:s]...)
	out = append(out, v...)
	return append(out, body[e:]...)
}

// RewriteChallenge replaces the value of every resource_metadata auth-param in
// a WWW-Authenticate header value with the quoted metadataURL, keeping every
// other byte. ok is false when there was nothing to change.
func RewriteChallenge(v, metadataURL string) (string, bool) {
	const param = "resource_metadata"
	var qb strings.Builder
	qb.WriteByte('"')
	for k := 0; k < len(metadataURL); k++ {
		if metadataURL[k] == '"' || metadataURL[k] == '\\' {
			qb.WriteByte('\\')
		}
		qb.WriteByte(metadataURL[k])
	}
	qb.WriteByte('"')
	quoted := qb.String()
	var b strings.Builder
	last, changed := 0, false
	for i := 0; i < len(v); {
		switch c := v[i]; {
		case c == '"':
			i = quotedEnd(v, i)
			continue
		case (i == 0 || v[i-1] == ' ' || v[i-1] == ',' || v[i-1] == '\t') && len(v)-i > len(param) && strings.EqualFold(v[i:i+len(param)], param):
			j := skipSP(v, i+len(param))
			if j >= len(v) || v[j] != '=' {
				i++
				continue
			}
			vs := skipSP(v, j+1)
			ve := vs
			if vs < len(v) && v[vs] == '"' {
				ve = quotedEnd(v, vs)
			} else {
				for ve < len(v) && v[ve] != ',' && v[ve] != ' ' && v[ve] != '\t' {
					ve++
				}
			}
			b.WriteString(v[last:vs])
			b.WriteString(quoted)
			if v[vs:ve] != quoted {
				changed = true
			}
			last, i = ve, ve
			continue
		}
		i++
	}
	if !changed {
		return v, false
	}
	b.WriteString(v[last:])
	return b.String(), true
}

// quotedEnd returns the index just past the quoted-string starting at v[i].
func quotedEnd(v string, i int) int {
	for j := i + 1; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(v)
}

func skipSP(v string, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	return i
}

var current = sdk.ConfigValue[Config]{Parse: ParseConfig}

// Plugin returns the oauthmeta plugin (response and http_response hooks).
func Plugin() sdk.Plugin {
	return sdk.Plugin{
		Name: "oauthmeta", Version: Version,
		OnResponse: handle, OnHTTPResponse: handle,
	}
}

// Handle rewrites one message per c.
func Handle(c Config, m *sdk.Message) sdk.Result {
	res := sdk.Continue()
	if m.Hook == sdk.HookHTTPResponse && c.PublicResource != "" {
		if u, ok := expand(c.PublicResource, m.Tunnel); ok {
			if out := RewriteResource(m.Body, u); out != nil {
				res = sdk.Replace(out)
			}
		}
	}
	if c.PublicMetadataURL != "" && m.Headers.Has("Www-Authenticate") {
		if u, ok := expand(c.PublicMetadataURL, m.Tunnel); ok {
			vs := m.Headers.Values("Www-Authenticate")
			changed := false
			for i, v := range vs {
				if nv, ok := RewriteChallenge(v, u); ok {
					vs[i], changed = nv, true
				}
			}
			if changed {
				for i, v := range vs {
					if i == 0 {
						res = res.SetHeader("Www-Authenticate", v)
					} else {
						res = res.AddHeader("Www-Authenticate", v)
					}
				}
			}
		}
	}
	return res
}

func handle(m *sdk.Message) sdk.Result {
	c, err := current.Get()
	if err != nil {
		sdk.Errorf("%v", err)
		return sdk.Reject(0, -32603, "oauthmeta: invalid plugin config")
	}
	return Handle(c, m)
}
