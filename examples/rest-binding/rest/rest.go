// Package rest is the logic of the rest-binding example: a binding plugin
// that turns a REST/JSON API into MCP tools. The tool table comes from the
// plugin's config; each tools/call becomes one HTTP request to the API
// through the host (which allows only the hosts the operator listed), the
// response body becomes the tool's content, and an HTTP error status becomes
// a tool error the model can read.
//
// The package has no build tag: its logic is tested natively with
// sdk/sdktest; main.go registers it in the Wasm module.
package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/binding"
)

// Config is the plugin's config.
type Config struct {
	// BaseURL is prefixed to every tool's path, e.g. http://api.internal:8080.
	BaseURL string `json:"base-url"`
	// Headers are sent with every request (not secrets: the operator adds
	// those in the binding's http.headers, and the plugin never sees them).
	Headers map[string]string `json:"headers"`
	// Tools describe the API's operations.
	Tools []ToolConfig `json:"tools"`
}

// ToolConfig is one API operation exposed as an MCP tool.
type ToolConfig struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Method is the HTTP method (default GET).
	Method string `json:"method"`
	// Path is appended to BaseURL; {arg} is replaced by that argument,
	// URL-escaped.
	Path string `json:"path"`
	// Query names the arguments sent as query parameters.
	Query []string `json:"query"`
	// Body: for POST, PUT and PATCH the arguments used neither in the path nor
	// in the query are sent as a JSON object (the default); "none" sends no
	// body.
	Body string `json:"body"`
	// Params are the tool's arguments: name → JSON Schema of the argument,
	// plus "required": true.
	Params map[string]Param `json:"params"`
	// ReadOnly marks the tool read-only for clients (readOnlyHint).
	ReadOnly bool `json:"read-only"`
}

// Param is one argument of a tool.
type Param struct {
	Type        string   `json:"type"`
	Description string   `json:"description"`
	Enum        []string `json:"enum"`
	Required    bool     `json:"required"`
}

// maxErrorBody bounds how much of an error response reaches the model.
const maxErrorBody = 2048

var config = sdk.ConfigValue[*api]{Parse: parse}

// api is the parsed config with its rendered tool table.
type api struct {
	cfg   Config
	base  *url.URL
	tools []binding.Tool
}

// Plugin returns the binding plugin.
func Plugin() binding.Plugin {
	return binding.Plugin{
		Name:    "rest-binding",
		Version: "1.0.0",
		Title:   "REST API",
		ToolsFunc: func() ([]binding.Tool, error) {
			a, err := config.Get()
			if err != nil {
				return nil, err
			}
			return a.tools, nil
		},
	}
}

func parse(raw []byte) (*api, error) {
	a := &api{}
	if len(raw) == 0 {
		return nil, errors.New("rest-binding: no config (base-url and tools are required)")
	}
	if err := json.Unmarshal(raw, &a.cfg); err != nil {
		return nil, fmt.Errorf("rest-binding: config: %w", err)
	}
	u, err := url.Parse(a.cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("rest-binding: config base-url: want an http:// or https:// URL")
	}
	a.base = u
	seen := map[string]bool{}
	for i := range a.cfg.Tools {
		t := &a.cfg.Tools[i]
		if t.Name == "" || seen[t.Name] {
			return nil, fmt.Errorf("rest-binding: config tools[%d]: a tool needs a unique name", i)
		}
		seen[t.Name] = true
		if t.Method == "" {
			t.Method = "GET"
		}
		t.Method = strings.ToUpper(t.Method)
		if !strings.HasPrefix(t.Path, "/") {
			return nil, fmt.Errorf("rest-binding: config tools[%d].path: want a path starting with /", i)
		}
		tc := *t
		a.tools = append(a.tools, binding.Tool{
			Name:        tc.Name,
			Description: tc.Description,
			InputSchema: schema(tc.Params),
			Annotations: annotations(tc),
			Handler: func(c *binding.Call, args binding.Args) binding.ToolResult {
				return a.call(c, &tc, args)
			},
		})
	}
	return a, nil
}

// schema renders the tool's input schema from its params.
func schema(params map[string]Param) []byte {
	names := make([]string, 0, len(params))
	for n := range params {
		names = append(names, n)
	}
	sort.Strings(names)
	props := map[string]any{}
	var required []string
	for _, n := range names {
		p := params[n]
		s := map[string]any{}
		if p.Type != "" {
			s["type"] = p.Type
		}
		if p.Description != "" {
			s["description"] = p.Description
		}
		if len(p.Enum) > 0 {
			s["enum"] = p.Enum
		}
		props[n] = s
		if p.Required {
			required = append(required, n)
		}
	}
	out := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		out["required"] = required
	}
	b, _ := json.Marshal(out)
	return b
}

func annotations(t ToolConfig) []byte {
	if t.ReadOnly || t.Method == "GET" {
		return []byte(`{"readOnlyHint":true}`)
	}
	return nil
}

// call turns one tools/call into one HTTP request. A client that asked for
// progress hears when the request leaves and when its answer came back.
func (a *api) call(c *binding.Call, t *ToolConfig, args binding.Args) binding.ToolResult {
	for name, p := range t.Params {
		if _, ok := args.Raw(name); p.Required && !ok {
			return binding.ErrorResult("missing required argument " + name)
		}
	}
	used := map[string]bool{}
	path, err := expand(t.Path, args, used)
	if err != nil {
		return binding.ErrorResult(err.Error())
	}
	u := *a.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	q := u.Query()
	for _, name := range t.Query {
		if v, ok := scalar(args, name); ok {
			q.Set(name, v)
			used[name] = true
		}
	}
	u.RawQuery = q.Encode()
	req := binding.HTTPRequest{Method: t.Method, URL: u.String(), Header: sdk.Headers{{Name: "Accept", Value: "application/json"}}}
	for k, v := range a.cfg.Headers {
		req.Header = append(req.Header, sdk.Header{Name: k, Value: v})
	}
	if (t.Method == "POST" || t.Method == "PUT" || t.Method == "PATCH") && t.Body != "none" {
		req.Body = bodyOf(args, used)
		req.Header = append(req.Header, sdk.Header{Name: "Content-Type", Value: "application/json"})
	}
	_ = c.Progress(0, 1, t.Method+" "+u.Path)
	resp, err := binding.HTTP(req)
	if err == nil {
		_ = c.Progress(1, 1, "HTTP "+strconv.Itoa(resp.Status))
	}
	if err != nil {
		return binding.ErrorResult(fmt.Sprintf("%s %s: %v", t.Method, u.Path, err))
	}
	if resp.Status < 200 || resp.Status > 299 {
		body := resp.Body
		if len(body) > maxErrorBody {
			body = append(body[:maxErrorBody:maxErrorBody], "…"...)
		}
		return binding.ErrorResult(fmt.Sprintf("HTTP %d from %s %s: %s", resp.Status, t.Method, u.Path, bytes.TrimSpace(body)))
	}
	body := bytes.TrimSpace(resp.Body)
	if len(body) > 0 && body[0] == '{' && json.Valid(body) {
		return binding.JSONResult(body) // an object: structured content too
	}
	if len(body) == 0 {
		return binding.TextResult(fmt.Sprintf("HTTP %d", resp.Status))
	}
	return binding.TextResult(string(body))
}

// expand replaces each {name} of path by the URL-escaped argument.
func expand(path string, args binding.Args, used map[string]bool) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(path, '{')
		if i < 0 {
			b.WriteString(path)
			return b.String(), nil
		}
		j := strings.IndexByte(path[i:], '}')
		if j < 0 {
			return "", errors.New("tool path has an unclosed {")
		}
		name := path[i+1 : i+j]
		v, ok := scalar(args, name)
		if !ok {
			return "", fmt.Errorf("missing argument %s for the path", name)
		}
		used[name] = true
		b.WriteString(path[:i])
		b.WriteString(url.PathEscape(v))
		path = path[i+j+1:]
	}
}

// scalar returns a string, number or boolean argument as text.
func scalar(args binding.Args, name string) (string, bool) {
	if s, ok := args.String(name); ok {
		return s, true
	}
	if f, ok := args.Number(name); ok {
		return strconv.FormatFloat(f, 'f', -1, 64), true
	}
	if v, ok := args.Bool(name); ok {
		return strconv.FormatBool(v), true
	}
	return "", false
}

// bodyOf is the JSON object of the arguments not used elsewhere, values as
// the client sent them.
func bodyOf(args binding.Args, used map[string]bool) []byte {
	b := []byte{'{'}
	args.Each(func(name string, raw []byte) bool {
		if used[name] {
			return true
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = sdk.AppendJSONString(b, name)
		b = append(b, ':')
		b = append(b, raw...)
		return true
	})
	return append(b, '}')
}
