package sdk

import (
	"errors"
	"fmt"
	"runtime"
)

// DefaultGCEvery is how many handler calls pass between two runtime.GC() runs
// when Plugin.GCEvery is 0. A standard-Go guest leaks to out-of-memory after
// about 90k calls without it.
const DefaultGCEvery = 1000

// Handler handles one message and returns the plugin's verdict.
type Handler func(m *Message) Result

// Plugin describes a plugin: its identity, what it wants to see, and its
// handlers. A nil handler means the plugin does not want that hook.
type Plugin struct {
	Name    string
	Version string // "" = "0.0.0"
	// Hooks the plugin wants; nil = every hook with a non-nil handler.
	Hooks []Hook
	// Methods the plugin wants (JSON-RPC method names); nil = every method.
	Methods []string
	// ConfigKeys lists the top-level config keys the plugin accepts; the
	// host refuses a stage configured with any other key, naming it. nil =
	// not declared (every key reaches the plugin); empty = no config.
	ConfigKeys []string

	OnRequest      Handler
	OnResponse     Handler
	OnHTTPResponse Handler

	// GCEvery runs runtime.GC() after every GCEvery calls; 0 = DefaultGCEvery,
	// negative = never.
	GCEvery int
}

// registered is the plugin of this module, set by Register from init.
var registered *instance

// instance is the per-module state: the plugin and the buffers reused on
// every call (no per-call garbage on the continue path).
type instance struct {
	p        Plugin
	describe []byte
	msg      Message
	alloc    []byte // the buffer sluice_alloc hands out
	answer   []byte // the buffer answers are encoded into
	calls    int
}

// Register makes p this module's plugin. Call it once, from init.
func (p Plugin) Register() {
	registered = &instance{p: p, describe: p.Describe()}
}

// HookSet returns the hooks the plugin wants.
func (p Plugin) HookSet() []Hook {
	if p.Hooks != nil {
		return p.Hooks
	}
	var hs []Hook
	if p.OnRequest != nil {
		hs = append(hs, HookRequest)
	}
	if p.OnResponse != nil {
		hs = append(hs, HookResponse)
	}
	if p.OnHTTPResponse != nil {
		hs = append(hs, HookHTTPResponse)
	}
	return hs
}

// Describe returns the plugin's description document (ABI.md).
func (p Plugin) Describe() []byte {
	v := p.Version
	if v == "" {
		v = "0.0.0"
	}
	b := []byte(`{"name":`)
	b = AppendJSONString(b, p.Name)
	b = append(b, `,"version":`...)
	b = AppendJSONString(b, v)
	b = append(b, `,"hooks":[`...)
	for i, h := range p.HookSet() {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, h.String())
	}
	b = append(b, ']')
	if len(p.Methods) > 0 {
		b = appendJSONStrings(append(b, `,"methods":`...), p.Methods)
	}
	if p.ConfigKeys != nil {
		b = appendJSONStrings(append(b, `,"config":`...), p.ConfigKeys)
	}
	return append(b, '}')
}

// appendJSONStrings appends l as a JSON array of strings.
func appendJSONStrings(b []byte, l []string) []byte {
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, s)
	}
	return append(b, ']')
}

func (p Plugin) handler(h Hook) Handler {
	switch h {
	case HookRequest:
		return p.OnRequest
	case HookResponse:
		return p.OnResponse
	case HookHTTPResponse:
		return p.OnHTTPResponse
	}
	return nil
}

// Handle decodes envelope, calls the handler of hook and returns the encoded
// answer (empty = continue). It is what the Wasm exports do, usable natively:
// package sdktest runs plugins through it.
func (p Plugin) Handle(hook Hook, envelope []byte) ([]byte, error) {
	var m Message
	r, err := p.call(hook, envelope, &m)
	if err != nil {
		return nil, err
	}
	return AppendAnswer(nil, r), nil
}

func (p Plugin) call(hook Hook, envelope []byte, m *Message) (Result, error) {
	if err := DecodeEnvelope(envelope, m); err != nil {
		return Result{}, err
	}
	if m.Hook != hook {
		return Result{}, fmt.Errorf("sdk: envelope hook %s handed to %s handler", m.Hook, hook)
	}
	h := p.handler(hook)
	if h == nil {
		return Result{}, errors.New("sdk: plugin " + p.Name + " has no " + hook.String() + " handler")
	}
	return h(m), nil
}

// handle is the Wasm path: it reuses the instance's message and answer buffer.
// A failure returns a deliberately malformed answer, which the host treats as a
// plugin failure (the stage's on_error decides).
func (in *instance) handle(hook Hook, envelope []byte) []byte {
	r, err := in.p.call(hook, envelope, &in.msg)
	in.msg.Body = nil
	in.msg.Headers = in.msg.Headers[:0]
	if err != nil {
		Errorf("%v", err)
		in.answer = append(in.answer[:0], 0xff)
	} else {
		in.answer = AppendAnswer(in.answer[:0], r)
	}
	in.calls++
	every := in.p.GCEvery
	if every == 0 {
		every = DefaultGCEvery
	}
	if every > 0 && in.calls%every == 0 {
		runtime.GC() // Go's GC does not move objects: the answer stays valid.
	}
	return in.answer
}

// allocBuf returns a buffer of at least size bytes, reusing the previous one.
func (in *instance) allocBuf(size int) []byte {
	if cap(in.alloc) < size {
		c := max(size, 2*cap(in.alloc), 4096)
		in.alloc = make([]byte, c)
	}
	return in.alloc[:cap(in.alloc)]
}
