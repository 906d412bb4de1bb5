package sdktest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/binding"
	"github.com/sluicemcp/sluice/sdk/internal/hostapi"
)

// BindingEnv is a fake host for binding plugins: an Env (config, logs,
// key/value) plus the host calls a binding makes. The zero value denies
// every HTTP request and command, as a binding with no such config is.
type BindingEnv struct {
	*Env
	// HTTP answers the plugin's HTTP requests (nil = every request is
	// ErrDenied). Return a *binding.HostError to fail one with a given code.
	HTTP func(req binding.HTTPRequest) (*binding.HTTPResponse, error)
	// Command answers Exchange (nil = every command is ErrDenied).
	Command func(name string, input []byte) ([]byte, error)
}

// NewBindingEnv returns a BindingEnv whose plugin config is cfg (see NewEnv).
func NewBindingEnv(cfg any) (*BindingEnv, error) {
	e, err := NewEnv(cfg)
	if err != nil {
		return nil, err
	}
	return &BindingEnv{Env: e}, nil
}

// Request is one message for a binding plugin.
type Request struct {
	// Body is the JSON-RPC request or notification.
	Body []byte
	// Headers are the forwarded client headers (Mcp-Protocol-Version, …).
	Headers sdk.Headers
	// SessionEnd asks to end the session (an HTTP DELETE); Body is ignored.
	SessionEnd bool
}

// Reply is what the host makes of a binding's answer.
type Reply struct {
	// Status is the HTTP status (defaults applied: 200, 202 for an accepted
	// notification).
	Status int
	// Headers are the reply's headers.
	Headers sdk.Headers
	// Body is the JSON-RPC response (a reject already wrapped with the
	// request's id, as the host does); empty for a notification.
	Body []byte
	// Notifications are the messages the plugin streamed first, in order.
	Notifications [][]byte
}

// Call runs one request through p as the host would: envelope in, answer
// out, with the host's checks (an answer for every request, the response's
// id the request's). Runs are serialized like Env.Run's.
func (e *BindingEnv) Call(p binding.Plugin, req Request) (*Reply, error) {
	if e.Env == nil {
		e.Env = &Env{}
	}
	var id json.RawMessage
	m := sdk.Message{Hook: binding.HookCall, Side: sdk.SideAgent, Headers: req.Headers}
	if !req.SessionEnd {
		// What the host reads of the body (member names match exactly, as
		// JSON-RPC requires): the id, the method, a tools/call's tool.
		var top map[string]json.RawMessage
		if err := json.Unmarshal(req.Body, &top); err != nil {
			return nil, fmt.Errorf("sdktest: request body: %w", err)
		}
		id = top["id"]
		if string(id) == "null" {
			id = nil
		}
		_ = json.Unmarshal(top["method"], &m.Method)
		if m.Method == "tools/call" {
			var params map[string]json.RawMessage
			_ = json.Unmarshal(top["params"], &params)
			_ = json.Unmarshal(params["name"], &m.Tool)
		}
		m.Body = req.Body
		m.Notification = len(id) == 0 || m.Method == ""
		m.SessionID = req.Headers.Get("Mcp-Session-Id")
	}
	env := sdk.AppendEnvelope(nil, &m)
	if req.SessionEnd {
		env[5] |= 1 << 2
	}
	fio := &fakeIO{e: e}
	runMu.Lock()
	hostapi.Set(e.Env)
	hostapi.SetIO(fio)
	ans, err := p.Handle(env)
	hostapi.SetIO(nil)
	hostapi.Set(nil)
	runMu.Unlock()
	if err != nil {
		return nil, err
	}
	rep, err := hostReply(ans, &m, req.SessionEnd, id)
	if err != nil {
		return nil, err
	}
	rep.Notifications = fio.notes
	return rep, nil
}

// hostReply applies the host's rules to an answer (host/binding_call.go).
func hostReply(ans []byte, m *sdk.Message, sessionEnd bool, id json.RawMessage) (*Reply, error) {
	expectsBody := !sessionEnd && !m.Notification
	rep := &Reply{Status: http.StatusOK}
	if m.Notification && !sessionEnd {
		rep.Status = http.StatusAccepted
	}
	if len(ans) == 0 {
		if expectsBody {
			return nil, errors.New("sdktest: the binding gave no answer to a request")
		}
		return rep, nil
	}
	r, err := sdk.DecodeAnswer(ans)
	if err != nil {
		return nil, err
	}
	if r.Action != sdk.ActionRespond && r.Action != sdk.ActionReject {
		return nil, fmt.Errorf("sdktest: reply action %s: want respond or reject", r.Action)
	}
	if r.Status != 0 {
		rep.Status = r.Status
	}
	for _, h := range r.Edits {
		rep.Headers = append(rep.Headers, sdk.Header{Name: h.Name, Value: h.Value})
	}
	switch {
	case !expectsBody:
		if r.Action == sdk.ActionRespond && len(r.Body) > 0 {
			return nil, errors.New("sdktest: a body answers a notification or a session end")
		}
	case r.Action == sdk.ActionReject:
		rep.Body = append(append(append([]byte(`{"jsonrpc":"2.0","id":`), id...), `,"error":`...), r.Body...)
		rep.Body = append(rep.Body, '}')
	default:
		var resp struct {
			ID json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(r.Body, &resp); err != nil {
			return nil, fmt.Errorf("sdktest: reply body: %w", err)
		}
		if !bytes.Equal(resp.ID, id) {
			return nil, fmt.Errorf("sdktest: reply answers id %s, not the request's %s", resp.ID, id)
		}
		rep.Body = r.Body
	}
	return rep, nil
}

// fakeIO serves a binding's host calls from a BindingEnv.
type fakeIO struct {
	e     *BindingEnv
	notes [][]byte
}

func (f *fakeIO) Emit(msg []byte) (int32, string) {
	var n struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if json.Unmarshal(msg, &n) != nil || n.Method == "" || len(n.ID) > 0 {
		return -2, "only notifications (a method, no id) can be emitted"
	}
	f.notes = append(f.notes, append([]byte(nil), msg...))
	return 0, ""
}

func (f *fakeIO) HTTP(req []byte) ([]byte, int32, string) {
	if f.e.HTTP == nil {
		return nil, -1, "this binding has no http config: no host is allowed"
	}
	r, err := binding.DecodeHTTPRequest(req)
	if err != nil {
		return nil, -2, err.Error()
	}
	resp, err := f.e.HTTP(r)
	if err != nil {
		return nil, codeOf(err), err.Error()
	}
	return binding.AppendHTTPResponse(nil, resp), 0, ""
}

func (f *fakeIO) Process(name string, input []byte) ([]byte, int32, string) {
	if f.e.Command == nil {
		return nil, -1, fmt.Sprintf("no command %q in the binding's config", name)
	}
	out, err := f.e.Command(name, input)
	if err != nil {
		return nil, codeOf(err), err.Error()
	}
	return out, 0, ""
}

func codeOf(err error) int32 {
	var he *binding.HostError
	if errors.As(err, &he) {
		return he.Code
	}
	return -3
}

// HTTPHandler answers a BindingEnv's HTTP requests with h, in memory: a REST
// API's handler stands in for the real service in unit tests.
func HTTPHandler(h http.Handler) func(binding.HTTPRequest) (*binding.HTTPResponse, error) {
	return func(req binding.HTTPRequest) (*binding.HTTPResponse, error) {
		hr := httptest.NewRequest(req.Method, req.URL, bytes.NewReader(req.Body))
		for _, hd := range req.Header {
			hr.Header.Add(hd.Name, hd.Value)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, hr)
		res := rec.Result()
		body, _ := io.ReadAll(res.Body)
		out := &binding.HTTPResponse{Status: res.StatusCode, Body: body}
		for k, vs := range res.Header {
			for _, v := range vs {
				out.Header = append(out.Header, sdk.Header{Name: k, Value: v})
			}
		}
		return out, nil
	}
}
