package binding

import (
	"errors"
	"runtime"
	"strings"

	"github.com/sluicemcp/sluice/sdk"
)

// HookCall is the envelope hook of a binding call (sdk/ABI.md).
const HookCall sdk.Hook = 4

// flagSessionEnd is the envelope flag of a call that ends a session.
const flagSessionEnd = 1 << 2

// Protocol versions.
const (
	// LatestLegacyVersion is the newest revision with an initialize
	// handshake; initialize answers it to a client asking for anything newer
	// or unknown.
	LatestLegacyVersion = "2025-11-25"
	// StatelessVersion is the first revision without sessions or
	// initialize (requests carry their version in _meta).
	StatelessVersion = "2026-07-28"
)

// SupportedVersions are the protocol revisions a binding plugin speaks,
// newest first (server/discover lists them).
var SupportedVersions = []string{StatelessVersion, LatestLegacyVersion, "2025-06-18", "2025-03-26", "2024-11-05"}

// JSON-RPC error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// Method answers one JSON-RPC request: build the answer with Call.Result or
// Call.Error.
type Method func(c *Call) sdk.Result

// Tool is one MCP tool of a binding plugin.
type Tool struct {
	Name        string
	Title       string // optional human-readable name
	Description string
	// InputSchema is the JSON Schema of the arguments (a JSON object); nil =
	// {"type":"object"}.
	InputSchema []byte
	// OutputSchema is the JSON Schema of the structured result (optional).
	OutputSchema []byte
	// Annotations is the tool's annotations object (optional), e.g.
	// {"readOnlyHint":true}.
	Annotations []byte
	// Handler runs the tool. args is the "arguments" object of the call.
	Handler func(c *Call, args Args) ToolResult
}

// Plugin describes a binding plugin: its identity, its tools and any other
// methods it answers.
type Plugin struct {
	Name    string
	Version string // "" = "0.0.0"
	Title   string // optional human-readable name
	// Instructions tell the client's model how to use the server (optional).
	Instructions string
	// Tools is the tool table.
	Tools []Tool
	// ToolsFunc, when set, returns the tool table instead of Tools, for a
	// table built from the plugin's config; cache what it builds (see
	// sdk.ConfigValue). An error answers tools/list and tools/call with a
	// JSON-RPC internal error.
	ToolsFunc func() ([]Tool, error)
	// Capabilities is the capabilities object the server announces; nil =
	// {"tools":{}} when the plugin has tools, {} otherwise.
	Capabilities []byte
	// Methods answer JSON-RPC methods beyond the defaults, or replace a
	// default (initialize, ping, server/discover, tools/list, tools/call).
	Methods map[string]Method
	// OnNotification sees each notification the client sends (nil = none;
	// notifications are accepted either way).
	OnNotification func(c *Call)
	// GCEvery runs runtime.GC() after every GCEvery calls; 0 =
	// sdk.DefaultGCEvery, negative = never.
	GCEvery int
}

// registered is this module's binding, set by Register from init.
var registered *server

// server is the module's state: the plugin and the buffers reused on every
// call.
type server struct {
	p      Plugin
	msg    sdk.Message
	call   Call
	answer []byte
	calls  int
	tools  []byte // the rendered static tool list (Tools), built on first use
}

// Register makes p this module's binding plugin. Call it once, from init.
//
// The module is registered with package sdk as a plugin that wants no hook:
// sdk's exports (sluice_alloc, sluice_describe) serve the binding too, and
// a description with no hooks from a module exporting sluice_on_call is how
// the host tells a binding from a filter.
func (p Plugin) Register() {
	registered = &server{p: p}
	sdk.Plugin{Name: p.Name, Version: p.Version, Hooks: []sdk.Hook{}, GCEvery: -1}.Register()
}

// Handle decodes a binding call envelope (hook HookCall), serves it and
// returns the encoded reply, empty for an accepted notification. It is what
// the sluice_on_call export does, usable natively: package sdktest runs
// bindings through it.
func (p Plugin) Handle(envelope []byte) ([]byte, error) {
	s := &server{p: p}
	r, err := s.serve(envelope)
	if err != nil {
		return nil, err
	}
	return sdk.AppendAnswer(nil, r), nil
}

// handle is the Wasm path: it reuses the module's buffers. A malformed
// envelope gets a one-byte reply, which the host refuses as a failure.
func (s *server) handle(envelope []byte) []byte {
	r, err := s.serve(envelope)
	s.msg.Body, s.msg.Headers = nil, s.msg.Headers[:0]
	if err != nil {
		sdk.Errorf("%v", err)
		s.answer = append(s.answer[:0], 0xff)
	} else {
		s.answer = sdk.AppendAnswer(s.answer[:0], r)
	}
	s.calls++
	every := s.p.GCEvery
	if every == 0 {
		every = sdk.DefaultGCEvery
	}
	if every > 0 && s.calls%every == 0 {
		runtime.GC() // Go's GC does not move objects: the answer stays valid.
	}
	return s.answer
}

var errNotCall = errors.New("sdk/binding: not a binding call envelope")

// serve decodes envelope and dispatches the call.
func (s *server) serve(envelope []byte) (sdk.Result, error) {
	if len(envelope) < 12 || envelope[4] != byte(HookCall) {
		return sdk.Result{}, errNotCall
	}
	// A call envelope is a request envelope with its own hook byte (which
	// sdk.DecodeEnvelope does not know): decode it as a request.
	flags := envelope[5]
	envelope[4] = byte(sdk.HookRequest)
	err := sdk.DecodeEnvelope(envelope, &s.msg)
	envelope[4] = byte(HookCall)
	if err != nil {
		return sdk.Result{}, err
	}
	s.msg.Hook = HookCall
	c := &s.call
	c.reset(s, &s.msg)
	if flags&flagSessionEnd != 0 {
		// Stateless: there is no session to end (MCP: 405 Method Not Allowed).
		return sdk.Result{Action: sdk.ActionRespond, Status: 405}, nil
	}
	c.parse()
	if s.msg.Notification {
		if s.p.OnNotification != nil {
			s.p.OnNotification(c)
		}
		return sdk.Continue(), nil // accepted: 202
	}
	if m := s.p.Methods[c.Method]; m != nil {
		return m(c), nil
	}
	switch c.Method {
	case "initialize":
		return s.initialize(c), nil
	case "ping":
		return c.Result([]byte(`{}`)), nil
	case "server/discover":
		return s.discover(c), nil
	case "tools/list":
		return s.listTools(c), nil
	case "tools/call":
		return s.callTool(c), nil
	}
	return c.Error(CodeMethodNotFound, "method not found: "+c.Method), nil
}

// capabilities returns the capabilities object.
func (s *server) capabilities() []byte {
	switch {
	case s.p.Capabilities != nil:
		return s.p.Capabilities
	case s.p.Tools != nil || s.p.ToolsFunc != nil:
		return []byte(`{"tools":{}}`)
	}
	return []byte(`{}`)
}

// appendServerInfo appends the serverInfo object.
func (s *server) appendServerInfo(b []byte) []byte {
	v := s.p.Version
	if v == "" {
		v = "0.0.0"
	}
	b = append(b, `{"name":`...)
	b = sdk.AppendJSONString(b, s.p.Name)
	if s.p.Title != "" {
		b = append(b, `,"title":`...)
		b = sdk.AppendJSONString(b, s.p.Title)
	}
	b = append(b, `,"version":`...)
	b = sdk.AppendJSONString(b, v)
	return append(b, '}')
}

// initialize answers the 2025-era handshake: the client's version when this
// plugin speaks it, else the latest it does; no session id (stateless).
func (s *server) initialize(c *Call) sdk.Result {
	version := LatestLegacyVersion
	if raw, ok := member(c.Params, "protocolVersion"); ok {
		if v, ok := unquote(raw); ok && v < StatelessVersion && supported(v) {
			version = v
		}
	}
	b := append(c.scratch[:0], `{"protocolVersion":`...)
	b = sdk.AppendJSONString(b, version)
	b = append(b, `,"capabilities":`...)
	b = append(b, s.capabilities()...)
	b = append(b, `,"serverInfo":`...)
	b = s.appendServerInfo(b)
	if s.p.Instructions != "" {
		b = append(b, `,"instructions":`...)
		b = sdk.AppendJSONString(b, s.p.Instructions)
	}
	c.scratch = append(b, '}')
	return c.Result(c.scratch)
}

func supported(v string) bool {
	for _, s := range SupportedVersions {
		if s == v {
			return true
		}
	}
	return false
}

// discover answers server/discover (2026-07-28): the versions, the
// capabilities and, in the result's _meta, the server's identity.
func (s *server) discover(c *Call) sdk.Result {
	b := append(c.scratch[:0], `{"supportedVersions":[`...)
	for i, v := range SupportedVersions {
		if i > 0 {
			b = append(b, ',')
		}
		b = sdk.AppendJSONString(b, v)
	}
	b = append(b, `],"capabilities":`...)
	b = append(b, s.capabilities()...)
	if s.p.Instructions != "" {
		b = append(b, `,"instructions":`...)
		b = sdk.AppendJSONString(b, s.p.Instructions)
	}
	c.scratch = append(b, `,"ttlMs":0,"cacheScope":"private"}`...)
	c.modern = true // the method exists only in the stateless era
	return c.Result(c.scratch)
}

// table returns the tool table.
func (s *server) table() ([]Tool, error) {
	if s.p.ToolsFunc != nil {
		return s.p.ToolsFunc()
	}
	return s.p.Tools, nil
}

// listTools answers tools/list with the whole table (no pagination).
func (s *server) listTools(c *Call) sdk.Result {
	tools, err := s.table()
	if err != nil {
		return c.Error(CodeInternalError, "tool table: "+err.Error())
	}
	var list []byte
	if s.p.ToolsFunc == nil && s.tools != nil {
		list = s.tools
	} else {
		list = appendTools(nil, tools)
		if s.p.ToolsFunc == nil {
			s.tools = list
		}
	}
	b := append(c.scratch[:0], `{"tools":`...)
	b = append(b, list...)
	if c.modern {
		b = append(b, `,"ttlMs":0,"cacheScope":"private"`...)
	}
	c.scratch = append(b, '}')
	return c.Result(c.scratch)
}

// appendTools appends the tool list as a JSON array.
func appendTools(b []byte, tools []Tool) []byte {
	b = append(b, '[')
	for i, t := range tools {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = sdk.AppendJSONString(b, t.Name)
		if t.Title != "" {
			b = append(b, `,"title":`...)
			b = sdk.AppendJSONString(b, t.Title)
		}
		if t.Description != "" {
			b = append(b, `,"description":`...)
			b = sdk.AppendJSONString(b, t.Description)
		}
		b = append(b, `,"inputSchema":`...)
		if len(t.InputSchema) > 0 {
			b = append(b, t.InputSchema...)
		} else {
			b = append(b, `{"type":"object"}`...)
		}
		if len(t.OutputSchema) > 0 {
			b = append(b, `,"outputSchema":`...)
			b = append(b, t.OutputSchema...)
		}
		if len(t.Annotations) > 0 {
			b = append(b, `,"annotations":`...)
			b = append(b, t.Annotations...)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// callTool answers tools/call: an unknown tool is invalid params (-32602);
// what the tool returns, an error result included, is the call's result.
func (s *server) callTool(c *Call) sdk.Result {
	tools, err := s.table()
	if err != nil {
		return c.Error(CodeInternalError, "tool table: "+err.Error())
	}
	for i := range tools {
		if tools[i].Name == c.Tool {
			if tools[i].Handler == nil {
				return c.Error(CodeInternalError, "tool "+c.Tool+" has no handler")
			}
			args := c.arguments
			if len(args) == 0 || string(args) == "null" {
				args = []byte(`{}`)
			}
			res := tools[i].Handler(c, Args(args))
			c.scratch = res.appendJSON(c.scratch[:0])
			return c.Result(c.scratch)
		}
	}
	if c.Tool == "" {
		return c.Error(CodeInvalidParams, "tools/call without a tool name")
	}
	return c.Error(CodeInvalidParams, "unknown tool: "+c.Tool)
}

// modernVersion reports whether a protocol version is of the stateless era.
func modernVersion(v string) bool { return v >= StatelessVersion && strings.HasPrefix(v, "20") }
