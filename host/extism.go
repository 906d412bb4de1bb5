package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/sdk/rawjson"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

var extismHandlers = [4]string{"", ExtismOnRequest, ExtismOnResponse, ExtismOnHTTPResponse}

// Initialisation exports of Extism guests, called once per instance the way
// Extism hosts do: a WASI reactor's _initialize (else a WASI command's
// __wasm_call_ctors), and the Haskell runtime's hs_init.
const (
	extismCallCtors = "__wasm_call_ctors"
	extismHSInit    = "hs_init"
)

// extismBackend runs Extism-ABI modules on the stage's wazero runtime, with
// the host's own Extism kernel (extism_kernel.go) and user host functions
// (extism_user.go): compiled once, instantiated per pooled instance.
type extismBackend struct {
	guestModule
	// init lists the initialisation exports to call after instantiation.
	init []string
}

// checkExtismFunc checks an Extism function export: no parameters, at most
// one i32 result.
func checkExtismFunc(exports map[string]api.FunctionDefinition, name string) (bool, error) {
	d, ok := exports[name]
	if !ok {
		return false, nil
	}
	res := d.ResultTypes()
	if len(d.ParamTypes()) != 0 || len(res) > 1 || len(res) == 1 && res[0] != i32 {
		return false, fmt.Errorf("export %s has signature %s, want () -> (i32)", name, sigOf(d))
	}
	return true, nil
}

func newExtismBackend(ctx context.Context, s *Stage, rt wazero.Runtime, c wazero.CompiledModule, interruptible bool) (*extismBackend, *description, error) {
	wasi, err := checkImports(c, true)
	if err != nil {
		return nil, nil, err
	}
	exports := c.ExportedFunctions()
	b := &extismBackend{guestModule: guestModule{s: s, rt: rt, compiled: c, interruptible: interruptible}}
	for h := engine.HookRequest; h <= engine.HookHTTPResponse; h++ {
		ok, err := checkExtismFunc(exports, extismHandlers[h])
		if err != nil {
			return nil, nil, err
		}
		b.handlers[h] = ok
	}
	hasDescribe, err := checkExtismFunc(exports, ExtismDescribe)
	if err != nil {
		return nil, nil, err
	}
	if wasi {
		if ok, _ := checkExport(exports, ExportInitialize, sigInit, false); ok {
			b.init = append(b.init, ExportInitialize)
		} else if ok, _ := checkExport(exports, extismCallCtors, sigInit, false); ok {
			b.init = append(b.init, extismCallCtors)
		}
	}
	if ok, _ := checkExport(exports, extismHSInit, sig{[]api.ValueType{i32, i32}, nil}, false); ok {
		if len(b.init) == 0 {
			if ok, _ := checkExport(exports, ExportInitialize, sigInit, false); ok {
				b.init = append(b.init, ExportInitialize)
			}
		}
		b.init = append(b.init, extismHSInit)
	}

	s.extismConfig = map[string]string{ExtismConfigKey: string(s.cfgJSON)}
	for k, v := range s.cfg.Config {
		if str, ok := v.(string); ok {
			s.extismConfig[k] = str
		} else if b, err := json.Marshal(v); err == nil {
			s.extismConfig[k] = string(b)
		}
	}
	if err := instantiateExtismEnv(ctx, rt, s); err != nil {
		return nil, nil, fmt.Errorf("extism kernel: %w", err)
	}
	if err := instantiateExtismUser(ctx, rt, s); err != nil {
		return nil, nil, fmt.Errorf("extism user functions: %w", err)
	}
	if err := b.configure(ctx, wasi); err != nil {
		return nil, nil, err
	}

	inst, err := b.newInstance(ctx)
	if err != nil {
		return nil, nil, err
	}
	ei := inst.(*extismInstance)
	var desc *description
	if hasDescribe {
		out, err := ei.callFunc(ctx, ExtismDescribe, nil, s.cfg.CallTimeout*10)
		if err != nil {
			ei.close(ctx)
			return nil, nil, err
		}
		if desc, err = parseDescription(out); err != nil {
			ei.close(ctx)
			return nil, nil, err
		}
	}
	b.eager = ei
	return b, desc, nil
}

func (b *extismBackend) newInstance(ctx context.Context) (instance, error) {
	ctx, cancel := context.WithTimeout(ctx, instantiateTimeout)
	defer cancel()
	i := &extismInstance{b: b, k: newKernel(uint64(b.s.cfg.MemoryPages)*65536, b.s.m.memory)}
	if err := b.instantiate(context.WithValue(ctx, instanceKey{}, i), &i.guestInstance, extismHandlers); err != nil {
		i.k.dispose()
		return nil, err
	}
	for _, name := range b.init {
		var st []uint64
		if name == extismHSInit {
			st = []uint64{0, 0}
		}
		if _, err := i.callFunc(ctx, name, st, instantiateTimeout); err != nil {
			i.close(ctx)
			return nil, fmt.Errorf("instantiate: %w", err)
		}
	}
	return i, nil
}

// instanceLimit is the most memory one instance can hold: its linear
// memory's limit plus its kernel memory's (both memory-pages).
func (b *extismBackend) instanceLimit() uint64 {
	return memoryLimit(b.compiled, b.s.cfg.MemoryPages) + uint64(b.s.cfg.MemoryPages)*65536
}

func (b *extismBackend) handlerName(h engine.Hook) string { return extismHandlers[h] }

// extismInstance is one instantiated Extism-ABI module with its kernel.
type extismInstance struct {
	guestInstance
	b        *extismBackend
	k        *kernel
	stack    [1]uint64
	env      []byte    // the envelope buffer, reused
	deadline time.Time // the running call's (bounds host I/O too)
}

func (i *extismInstance) memSize() uint64 {
	n := uint64(cap(i.k.mem))
	if i.mem != nil {
		n = max(n, uint64(i.mem.Size()))
	}
	return n
}

func (i *extismInstance) close(ctx context.Context) {
	i.guestInstance.close(ctx)
	i.k.dispose()
}

// callFunc runs the export name with input in (nil = none) outside a
// message (describe, initialisation), bounded by d, and returns its output.
func (i *extismInstance) callFunc(ctx context.Context, name string, st []uint64, d time.Duration) ([]byte, error) {
	fn := i.mod.ExportedFunction(name)
	i.k.reset()
	if st == nil {
		st = i.stack[:]
	}
	timedOut, err := i.invoke(ctx, fn, st, d)
	if timedOut {
		return nil, fmt.Errorf("%s: did not return within %s", name, d)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, firstLine(err))
	}
	if msg := i.k.errorMessage(); msg != "" {
		return nil, fmt.Errorf("%s: plugin error: %s", name, msg)
	}
	if len(fn.Definition().ResultTypes()) == 1 && uint32(st[0]) != 0 {
		return nil, fmt.Errorf("%s returned %d", name, int32(st[0]))
	}
	return append([]byte(nil), i.k.output()...), nil
}

// invoke calls fn bounded by d (callBounded).
func (i *extismInstance) invoke(ctx context.Context, fn api.Function, st []uint64, d time.Duration) (timedOut bool, err error) {
	i.deadline = time.Now().Add(d)
	timedOut, err = i.callBounded(context.WithValue(ctx, instanceKey{}, i), i.deadline, func(ctx context.Context) error {
		return fn.CallWithStack(ctx, st)
	})
	var exit *sys.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 0 {
		err = nil // a WASI guest that exits 0 succeeded, as Extism hosts treat it
	}
	return timedOut, err
}

func (i *extismInstance) call(ctx context.Context, m *engine.Message) (engine.Result, string, error) {
	s := i.b.s
	fn := i.handlers[m.Hook]
	if fn == nil {
		return engine.Result{}, kindMalformed, fmt.Errorf("no handler for hook %s", m.Hook)
	}
	i.env = appendExtismEnvelope(i.env[:0], m)
	if len(i.env) > s.cfg.MaxMessageSize+envelopeSlack {
		return engine.Result{}, kindTooLarge, fmt.Errorf("envelope of %d bytes exceeds max-message-size", len(i.env))
	}
	name := extismHandlers[m.Hook]
	i.k.reset()
	i.msg = m
	defer func() { i.msg = nil }()
	st := i.stack[:]
	kind, err := func() (kind string, err error) {
		defer func() { // the input block itself may exceed the memory limit
			if r := recover(); r != nil {
				kind, err = kindOOM, fmt.Errorf("%v", r)
			}
		}()
		i.k.setInput(i.env)
		return "", nil
	}()
	if err != nil {
		return engine.Result{}, kind, err
	}
	timedOut, err := i.invoke(ctx, fn, st, s.cfg.CallTimeout)
	switch {
	case timedOut:
		return engine.Result{}, kindTimeout, fmt.Errorf("%s: did not return within call-timeout %s", name, s.cfg.CallTimeout)
	case err != nil:
		return engine.Result{}, i.classify(err), fmt.Errorf("%s: %w", name, firstLine(err))
	}
	if msg := i.k.errorMessage(); msg != "" {
		return engine.Result{}, kindTrap, fmt.Errorf("%s: plugin error: %.200s", name, msg)
	}
	if len(fn.Definition().ResultTypes()) == 1 && uint32(st[0]) != 0 {
		return engine.Result{}, kindTrap, fmt.Errorf("%s returned %d", name, int32(st[0]))
	}
	out := i.k.output()
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

// classify names the failure kind of a guest call error that was not a
// timeout: the kernel's memory ran out, or faultKind.
func (i *extismInstance) classify(err error) string {
	if errors.Is(err, errKernelOOM) {
		return kindOOM
	}
	return i.faultKind(err, i.b.s.cfg.MemoryPages)
}

// appendExtismEnvelope appends the JSON envelope of the Extism ABI
// (sdk/ABI.md) for m to b. The message is embedded as it is when it is one
// valid JSON object, else (http_response bodies, anything malformed) as a
// JSON string, so no message can add members to the envelope.
func appendExtismEnvelope(b []byte, m *engine.Message) []byte {
	side := "agent"
	if m.Side == engine.SideRelay {
		side = "relay"
	}
	b = append(b, `{"hook":`...)
	b = rawjson.AppendString(b, m.Hook.String())
	b = append(b, `,"side":"`...)
	b = append(b, side...)
	b = append(b, `","notification":`...)
	b = strconv.AppendBool(b, m.Notification)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(m.Status), 10)
	for _, f := range [...]struct{ k, v string }{
		{"tunnel", m.Tunnel}, {"channel", m.Channel}, {"session_id", m.SessionID}, {"request_id", m.RequestID},
		{"method", m.Method}, {"tool", m.Tool}, {"caller", m.Caller},
	} {
		b = append(b, `,"`...)
		b = append(b, f.k...)
		b = append(b, `":`...)
		b = rawjson.AppendString(b, f.v)
	}
	b = append(b, `,"headers":{`...)
	first := true
	for k, vs := range m.Header {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = rawjson.AppendString(b, k)
		b = append(b, `:[`...)
		for j, v := range vs {
			if j > 0 {
				b = append(b, ',')
			}
			b = rawjson.AppendString(b, v)
		}
		b = append(b, ']')
	}
	b = append(b, `},"message":`...)
	if m.Hook != engine.HookHTTPResponse && engine.ValidObject(m.Body) {
		b = append(b, m.Body...)
	} else {
		b = rawjson.AppendStringBytes(b, m.Body)
	}
	return append(b, '}')
}

// extismHeaderEdit is one header edit of an Extism answer.
type extismHeaderEdit struct {
	Op    string `json:"op"`
	Name  string `json:"name"`
	Value string `json:"value"`
}

// extismAnswer is the JSON answer of the Extism ABI.
type extismAnswer struct {
	Action  string             `json:"action"`
	Status  int                `json:"status"`
	Message json.RawMessage    `json:"message"`
	Headers []extismHeaderEdit `json:"headers"`
	Error   *json.RawMessage   `json:"error"`
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
			h = http.Header{}
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
