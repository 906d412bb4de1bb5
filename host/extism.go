package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	extism "github.com/extism/go-sdk"
	"github.com/sluicemcp/sluice/engine"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
)

var extismHandlers = [4]string{"", ExtismOnRequest, ExtismOnResponse, ExtismOnHTTPResponse}

// extismBackend runs Extism-ABI modules through extism go-sdk: compiled
// once, instances from the compiled plugin.
type extismBackend struct {
	s        *Stage
	cp       *extism.CompiledPlugin
	handlers [4]bool
	eager    instance
}

// extismLogLevel sets extism's process-wide log level once: Info, so guest
// logs at info and above reach the stage's logger, while extism's own
// per-call debug line ("Calling function") stays off.
var extismLogLevel sync.Once

func newExtismBackend(ctx context.Context, s *Stage, rc wazero.RuntimeConfig, bin []byte, wasi bool) (*extismBackend, *description, error) {
	extismLogLevel.Do(func() { extism.SetLogLevel(extism.LogLevelInfo) })
	conf := map[string]string{ExtismConfigKey: string(s.cfgJSON)}
	for k, v := range s.cfg.Config {
		if str, ok := v.(string); ok {
			conf[k] = str
		} else if b, err := json.Marshal(v); err == nil {
			conf[k] = string(b)
		}
	}
	man := extism.Manifest{
		Wasm:         []extism.Wasm{extism.WasmData{Data: bin, Name: "main"}},
		Memory:       &extism.ManifestMemory{MaxPages: s.cfg.MemoryPages},
		Config:       conf,
		AllowedHosts: s.cfg.AllowedHosts, // nil: no host reachable
	}
	cp, err := extism.NewCompiledPlugin(ctx, man, extism.PluginConfig{RuntimeConfig: rc, EnableWasi: wasi}, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("extism: %w", err)
	}
	b := &extismBackend{s: s, cp: cp}
	inst, err := b.instantiate(ctx)
	if err != nil {
		_ = cp.Close(ctx)
		return nil, nil, err
	}
	ei := inst.(*extismInstance)
	for h := engine.HookRequest; h <= engine.HookHTTPResponse; h++ {
		b.handlers[h] = ei.p.FunctionExists(extismHandlers[h])
	}
	var desc *description
	if ei.p.FunctionExists(ExtismDescribe) {
		cctx, cancel := context.WithTimeout(ctx, instantiateTimeout)
		_, out, err := ei.p.CallWithContext(cctx, ExtismDescribe, nil)
		cancel()
		if err != nil {
			ei.close(ctx)
			_ = cp.Close(ctx)
			return nil, nil, fmt.Errorf("%s: %w", ExtismDescribe, firstLine(err))
		}
		if desc, err = parseDescription(out); err != nil {
			ei.close(ctx)
			_ = cp.Close(ctx)
			return nil, nil, err
		}
	}
	b.eager = ei
	return b, desc, nil
}

func (b *extismBackend) instantiate(ctx context.Context) (instance, error) {
	ctx, cancel := context.WithTimeout(ctx, instantiateTimeout)
	defer cancel()
	// extism go-sdk does not expose the guest's memory; a memory allocator
	// hook sees every memory of the instance (guest and extism kernel), so
	// the stage can recycle at its high-water mark and tell OOM from a trap.
	mems := &memWatch{}
	p, err := b.cp.Instance(experimental.WithMemoryAllocator(ctx, mems), extism.PluginInstanceConfig{})
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", firstLine(err))
	}
	i := &extismInstance{b: b, p: p, mems: mems}
	p.SetLogger(i.logf)
	return i, nil
}

func (b *extismBackend) newInstance(ctx context.Context) (instance, error) {
	i, err := b.instantiate(ctx)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %w", b.s.name, err)
	}
	return i, nil
}

func (b *extismBackend) takeEager() instance {
	i := b.eager
	b.eager = nil
	return i
}

func (b *extismBackend) handlerName(h engine.Hook) string { return extismHandlers[h] }
func (b *extismBackend) hasHandler(h engine.Hook) bool    { return b.handlers[h] }

func (b *extismBackend) close(ctx context.Context) error {
	if b.eager != nil {
		b.eager.close(ctx)
	}
	return b.cp.Close(ctx)
}

type extismInstance struct {
	b    *extismBackend
	p    *extism.Plugin
	mems *memWatch
	msg  *engine.Message
}

// memWatch allocates the linear memories of one instance as plain Go slices
// and remembers the largest one's size.
type memWatch struct{ mems []*watchedMemory }

func (w *memWatch) Allocate(capacity, maxSize uint64) experimental.LinearMemory {
	m := &watchedMemory{max: maxSize, buf: make([]byte, 0, capacity)}
	w.mems = append(w.mems, m)
	return m
}

func (w *memWatch) largest() uint64 {
	var n uint64
	for _, m := range w.mems {
		n = max(n, m.size.Load())
	}
	return n
}

type watchedMemory struct {
	buf  []byte
	max  uint64
	size atomic.Uint64
}

func (m *watchedMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size > uint64(cap(m.buf)) {
		nb := make([]byte, size, min(max(size, uint64(cap(m.buf))*2), m.max))
		copy(nb, m.buf)
		m.buf = nb
	} else {
		m.buf = m.buf[:size]
	}
	m.size.Store(size)
	return m.buf
}

func (m *watchedMemory) Free() { m.buf = nil }

func (i *extismInstance) logf(level extism.LogLevel, msg string) {
	s := i.b.s
	lv := slog.LevelDebug
	switch level {
	case extism.LogLevelInfo:
		lv = slog.LevelInfo
	case extism.LogLevelWarn:
		lv = slog.LevelWarn
	case extism.LogLevelError:
		lv = slog.LevelError
	}
	if len(msg) > maxLogLine {
		msg = msg[:maxLogLine]
	}
	if !s.log.Enabled(context.Background(), lv) {
		return
	}
	attrs := []slog.Attr{slog.String("plugin", s.name)}
	if i.msg != nil {
		attrs = append(attrs, slog.String("request_id", i.msg.RequestID), slog.String("method", i.msg.Method))
	}
	s.log.LogAttrs(context.Background(), lv, s.scrub.str(msg), attrs...)
}

func (i *extismInstance) memSize() uint64 { return i.mems.largest() }

func (i *extismInstance) close(ctx context.Context) { _ = i.p.Close(ctx) }

// extismEnvelope is the JSON envelope of the Extism ABI.
type extismEnvelope struct {
	Hook         string              `json:"hook"`
	Side         string              `json:"side"`
	Notification bool                `json:"notification"`
	Status       int                 `json:"status"`
	Tunnel       string              `json:"tunnel"`
	Channel      string              `json:"channel"`
	SessionID    string              `json:"session_id"`
	RequestID    string              `json:"request_id"`
	Method       string              `json:"method"`
	Tool         string              `json:"tool"`
	Caller       string              `json:"caller"`
	Headers      map[string][]string `json:"headers"`
	Message      json.RawMessage     `json:"message"`
}

// extismAnswer is the JSON answer of the Extism ABI.
type extismAnswer struct {
	Action  string          `json:"action"`
	Status  int             `json:"status"`
	Message json.RawMessage `json:"message"`
	Headers []struct {
		Op    string `json:"op"`
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"headers"`
	Error *json.RawMessage `json:"error"`
}

func encodeExtismEnvelope(m *engine.Message) ([]byte, error) {
	e := extismEnvelope{
		Hook: m.Hook.String(), Side: "agent", Notification: m.Notification, Status: m.Status,
		Tunnel: m.Tunnel, Channel: m.Channel, SessionID: m.SessionID, RequestID: m.RequestID,
		Method: m.Method, Tool: m.Tool, Caller: m.Caller, Headers: m.Header, Message: m.Body,
	}
	if m.Side == engine.SideRelay {
		e.Side = "relay"
	}
	if e.Headers == nil {
		e.Headers = map[string][]string{}
	}
	if m.Hook == engine.HookHTTPResponse || len(m.Body) == 0 {
		s, err := json.Marshal(string(m.Body))
		if err != nil {
			return nil, err
		}
		e.Message = s
	}
	return json.Marshal(&e)
}

func (i *extismInstance) call(ctx context.Context, m *engine.Message) (engine.Result, string, error) {
	s := i.b.s
	in, err := encodeExtismEnvelope(m)
	if err != nil {
		return engine.Result{}, kindMalformed, fmt.Errorf("envelope: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	i.msg = m
	defer func() { i.msg = nil }()
	rc, out, err := i.p.CallWithContext(ctx, extismHandlers[m.Hook], in)
	if err != nil {
		if ctx.Err() != nil {
			return engine.Result{}, kindTimeout, firstLine(err)
		}
		if i.memSize() > uint64(s.cfg.MemoryPages)*65536/4*3 {
			return engine.Result{}, kindOOM, firstLine(err)
		}
		return engine.Result{}, kindTrap, firstLine(err)
	}
	if rc != 0 {
		return engine.Result{}, kindTrap, fmt.Errorf("%s returned %d", extismHandlers[m.Hook], rc)
	}
	if len(out) == 0 {
		return engine.Result{}, "", nil
	}
	if len(out) > s.cfg.MaxMessageSize+envelopeSlack {
		return engine.Result{}, kindMalformed, fmt.Errorf("answer of %d bytes exceeds max-message-size", len(out))
	}
	r, err := decodeExtismAnswer(out, m)
	if err != nil {
		return engine.Result{}, kindMalformed, err
	}
	return r, "", nil
}

func decodeExtismAnswer(out []byte, m *engine.Message) (engine.Result, error) {
	var a extismAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		return engine.Result{}, fmt.Errorf("answer: %w", err)
	}
	var r engine.Result
	switch a.Action {
	case "", "continue":
		return engine.Result{}, nil
	case "replace":
		r.Action = engine.Replace
	case "respond":
		r.Action = engine.Respond
	case "reject":
		r.Action = engine.Reject
	case "drop":
		if !m.Notification {
			return engine.Result{}, errors.New("drop answered for a message that is not a notification")
		}
		return engine.Result{Action: engine.Drop}, nil
	default:
		return engine.Result{}, fmt.Errorf("unknown action %q", a.Action)
	}
	if a.Status != 0 && (a.Status < 100 || a.Status > 599) {
		return engine.Result{}, fmt.Errorf("answer status %d is not an HTTP status", a.Status)
	}
	r.Status = a.Status
	if len(a.Headers) > 0 {
		h := m.Header.Clone()
		if h == nil {
			h = map[string][]string{}
		}
		for _, e := range a.Headers {
			if e.Name == "" {
				return engine.Result{}, errors.New("header edit with an empty name")
			}
			k := canonicalKey(e.Name)
			switch e.Op {
			case "set":
				h[k] = []string{e.Value}
			case "add":
				h[k] = append(h[k], e.Value)
			case "delete":
				delete(h, k)
			default:
				return engine.Result{}, fmt.Errorf("unknown header op %q", e.Op)
			}
		}
		r.Header = h
	}
	hasMsg := len(a.Message) > 0 && string(a.Message) != "null"
	switch r.Action {
	case engine.Replace, engine.Respond:
		if hasMsg {
			if m.Hook == engine.HookHTTPResponse && a.Message[0] == '"' {
				var s string
				if err := json.Unmarshal(a.Message, &s); err != nil {
					return engine.Result{}, fmt.Errorf("answer message: %w", err)
				}
				r.Body = []byte(s)
			} else {
				if !isJSONObject(a.Message) {
					return engine.Result{}, fmt.Errorf("%s message is not a single JSON object", r.Action)
				}
				r.Body = a.Message
			}
		} else if r.Action == engine.Respond {
			return engine.Result{}, errors.New("respond without a message")
		}
	case engine.Reject:
		if a.Error != nil && string(*a.Error) != "null" {
			e, err := parseRPCError(*a.Error)
			if err != nil {
				return engine.Result{}, err
			}
			r.Error = e
		}
	}
	return r, nil
}
