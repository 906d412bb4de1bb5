package sdktest

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/internal/hostapi"
)

// LogLine is one line a plugin logged.
type LogLine struct {
	Level sdk.Level
	Msg   string
}

// Env is a fake host: the plugin's config, its key/value store and the log
// lines it wrote. The zero value is an empty host; an Env is safe for
// concurrent use.
type Env struct {
	mu     sync.Mutex
	config []byte
	kv     map[string][]byte
	logs   []LogLine
}

// NewEnv returns an Env whose config is cfg: raw JSON ([]byte, string or
// json.RawMessage) or any value, marshaled to JSON. nil = no config.
func NewEnv(cfg any) (*Env, error) {
	e := &Env{}
	switch c := cfg.(type) {
	case nil:
	case []byte:
		e.config = c
	case json.RawMessage:
		e.config = c
	case string:
		e.config = []byte(c)
	default:
		b, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("sdktest: marshal config: %w", err)
		}
		e.config = b
	}
	return e, nil
}

// MustEnv is NewEnv that panics on a config that does not marshal.
func MustEnv(cfg any) *Env {
	e, err := NewEnv(cfg)
	if err != nil {
		panic(err)
	}
	return e
}

// Logs returns the lines logged so far.
func (e *Env) Logs() []LogLine {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]LogLine(nil), e.logs...)
}

// KV returns a copy of the key/value store.
func (e *Env) KV() map[string][]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[string][]byte, len(e.kv))
	for k, v := range e.kv {
		m[k] = append([]byte(nil), v...)
	}
	return m
}

// Log implements the host's log function.
func (e *Env) Log(level int, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs = append(e.logs, LogLine{Level: sdk.Level(level), Msg: msg})
}

// Config implements the host's config function.
func (e *Env) Config() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]byte(nil), e.config...)
}

// KVGet implements the host's kv_get function.
func (e *Env) KVGet(key string) ([]byte, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, ok := e.kv[key]
	return append([]byte(nil), v...), ok
}

// KVSet implements the host's kv_set function.
func (e *Env) KVSet(key string, value []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.kv == nil {
		e.kv = map[string][]byte{}
	}
	e.kv[key] = append([]byte(nil), value...)
}

// KVDelete implements the host's kv_delete function.
func (e *Env) KVDelete(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.kv, key)
}

var runMu sync.Mutex

// Run calls p's handler for msg.Hook (0 = request) with e as the host: msg is
// encoded as an envelope, the answer is decoded back into the Result.
func (e *Env) Run(p sdk.Plugin, msg sdk.Message) (sdk.Result, error) {
	if msg.Hook == 0 {
		msg.Hook = sdk.HookRequest
	}
	env := sdk.AppendEnvelope(nil, &msg)
	runMu.Lock()
	defer runMu.Unlock()
	hostapi.Set(e)
	defer hostapi.Set(nil)
	ans, err := p.Handle(msg.Hook, env)
	if err != nil {
		return sdk.Result{}, err
	}
	return sdk.DecodeAnswer(ans)
}

// Run is Env.Run with an empty Env (no config).
func Run(p sdk.Plugin, msg sdk.Message) (sdk.Result, error) {
	return (&Env{}).Run(p, msg)
}
