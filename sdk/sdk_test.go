package sdk_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/sdktest"
)

func sampleMessage() sdk.Message {
	return sdk.Message{
		Hook: sdk.HookResponse, Side: sdk.SideRelay, Notification: true, Status: 200,
		Tunnel: "tunnel_abc", Channel: "main", SessionID: "s1", RequestID: "r1",
		Method: "tools/call", Tool: "echo", Caller: "key:ci",
		Headers: sdk.Headers{{Name: "Mcp-Session-Id", Value: "s1"}, {Name: "X-Multi", Value: "a"}, {Name: "X-Multi", Value: "b"}},
		Body:    []byte(`{"jsonrpc":"2.0","id":1,"result":{}}`),
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		msg  sdk.Message
	}{
		{"full", sampleMessage()},
		{"empty request", sdk.Message{Hook: sdk.HookRequest, Side: sdk.SideAgent}},
		{"http response", sdk.Message{Hook: sdk.HookHTTPResponse, Side: sdk.SideRelay, Status: 401, Body: []byte("not json")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := sdk.AppendEnvelope(nil, &tt.msg)
			var got sdk.Message
			if err := sdk.DecodeEnvelope(b, &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			want := tt.msg
			if len(want.Headers) == 0 {
				want.Headers = got.Headers[:0:0]
				got.Headers = want.Headers
			}
			if len(want.Body) == 0 {
				want.Body, got.Body = nil, nil
			}
			if !reflect.DeepEqual(got.Clone(), want.Clone()) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestDecodeEnvelopeRejectsMalformed(t *testing.T) {
	m := sampleMessage()
	good := sdk.AppendEnvelope(nil, &m)
	bad := map[string][]byte{
		"empty":       nil,
		"truncated":   good[:len(good)-1],
		"trailing":    append(append([]byte{}, good...), 0),
		"version":     append([]byte{2, 0, 0, 0}, good[4:]...),
		"hook":        append(append([]byte{}, good[:4]...), append([]byte{9}, good[5:]...)...),
		"header bomb": append(append([]byte{}, good[:12]...), bytes.Repeat([]byte{0, 0, 0, 0}, 7+0)...),
	}
	// header bomb: seven empty strings, then a huge header count.
	bad["header bomb"] = append(bad["header bomb"], 0xff, 0xff, 0xff, 0x7f)
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			var got sdk.Message
			if err := sdk.DecodeEnvelope(b, &got); err == nil {
				t.Fatal("decoded a malformed envelope")
			}
		})
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	m := sampleMessage()
	f.Add(sdk.AppendEnvelope(nil, &m))
	f.Add([]byte{1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m sdk.Message
		if err := sdk.DecodeEnvelope(b, &m); err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes (reserved bits aside).
		again := sdk.AppendEnvelope(nil, &m)
		if len(again) != len(b) || !bytes.Equal(again[12:], b[12:]) {
			t.Fatalf("re-encode differs")
		}
	})
}

func TestAnswerRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		r    sdk.Result
		len0 bool
	}{
		{"continue", sdk.Continue(), true},
		{"replace", sdk.Replace([]byte(`{"a":1}`)), false},
		{"headers only", sdk.Continue().SetHeader("X-A", "1").AddHeader("X-B", "2").DelHeader("X-C"), false},
		{"replace headers", sdk.ReplaceHeaders(sdk.HeaderEdit{Op: sdk.HeaderSet, Name: "A", Value: "b"}), false},
		{"respond", sdk.Respond(201, []byte(`{"jsonrpc":"2.0","id":1,"result":{}}`)), false},
		{"reject", sdk.Reject(403, -32001, "denied \"x\""), false},
		{"reject data", sdk.RejectData(0, -32602, "bad", []byte(`{"k":[1]}`)), false},
		{"drop", sdk.Drop(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := sdk.AppendAnswer(nil, tt.r)
			if (len(b) == 0) != tt.len0 {
				t.Fatalf("answer length %d", len(b))
			}
			got, err := sdk.DecodeAnswer(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Action != tt.r.Action || got.Status != tt.r.Status || !bytes.Equal(got.Body, tt.r.Body) || len(got.Edits) != len(tt.r.Edits) {
				t.Fatalf("got %+v want %+v", got, tt.r)
			}
			for i := range got.Edits {
				if got.Edits[i] != tt.r.Edits[i] {
					t.Fatalf("edit %d: got %+v want %+v", i, got.Edits[i], tt.r.Edits[i])
				}
			}
		})
	}
}

func TestRejectBodyIsErrorObject(t *testing.T) {
	r := sdk.RejectData(0, -32001, "no \u0001 \"way\"", []byte(`"why"`))
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    string `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("%s: %v", r.Body, err)
	}
	if e.Code != -32001 || e.Message != "no \u0001 \"way\"" || e.Data != "why" {
		t.Fatalf("got %+v", e)
	}
}

func FuzzDecodeAnswer(f *testing.F) {
	f.Add(sdk.AppendAnswer(nil, sdk.Reject(403, 1, "x").SetHeader("A", "B")))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = sdk.DecodeAnswer(b)
	})
}

func TestHeaders(t *testing.T) {
	h := sdk.Headers{{"Mcp-Session-Id", "s"}, {"X-M", "1"}, {"X-M", "2"}}
	if got := h.Get("mcp-session-id"); got != "s" {
		t.Errorf("Get = %q", got)
	}
	if got := h.Values("x-m"); !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Errorf("Values = %q", got)
	}
	if h.Has("X-None") || h.Get("X-None") != "" {
		t.Error("absent header found")
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		name string
		p    sdk.Plugin
		want string
	}{
		{"derived hooks", sdk.Plugin{Name: "a", OnResponse: func(*sdk.Message) sdk.Result { return sdk.Continue() }},
			`{"name":"a","version":"0.0.0","hooks":["response"]}`},
		{"explicit", sdk.Plugin{Name: "b", Version: "1.2.3", Hooks: []sdk.Hook{sdk.HookRequest, sdk.HookHTTPResponse}, Methods: []string{"tools/call"}},
			`{"name":"b","version":"1.2.3","hooks":["request","http_response"],"methods":["tools/call"]}`},
		{"config keys", sdk.Plugin{Name: "c", OnRequest: func(*sdk.Message) sdk.Result { return sdk.Continue() }, ConfigKeys: []string{"block", "tag"}},
			`{"name":"c","version":"0.0.0","hooks":["request"],"config":["block","tag"]}`},
		{"no config", sdk.Plugin{Name: "d", OnRequest: func(*sdk.Message) sdk.Result { return sdk.Continue() }, ConfigKeys: []string{}},
			`{"name":"d","version":"0.0.0","hooks":["request"],"config":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(tt.p.Describe()); got != tt.want {
				t.Fatalf("got %s want %s", got, tt.want)
			}
		})
	}
}

func TestHandleWrongHookFails(t *testing.T) {
	p := sdk.Plugin{Name: "x", OnRequest: func(*sdk.Message) sdk.Result { return sdk.Drop() }}
	m := sdk.Message{Hook: sdk.HookResponse}
	if _, err := p.Handle(sdk.HookResponse, sdk.AppendEnvelope(nil, &m)); err == nil {
		t.Fatal("missing handler did not fail")
	}
	if _, err := p.Handle(sdk.HookRequest, sdk.AppendEnvelope(nil, &m)); err == nil {
		t.Fatal("hook mismatch did not fail")
	}
}

func TestSDKTestHostFunctions(t *testing.T) {
	type cfg struct {
		Greeting string `json:"greeting"`
	}
	parsed := sdk.ConfigValue[cfg]{Parse: func(raw []byte) (cfg, error) {
		var c cfg
		err := json.Unmarshal(raw, &c)
		return c, err
	}}
	p := sdk.Plugin{Name: "hello", OnRequest: func(m *sdk.Message) sdk.Result {
		c, err := parsed.Get()
		if err != nil {
			return sdk.Reject(500, -32603, "config")
		}
		n, _ := sdk.KVGet("n")
		sdk.KVSet("n", append(n, 'x'))
		sdk.Infof("tool %s", m.Tool)
		return sdk.Continue().SetHeader("X-Greeting", c.Greeting+" "+m.Headers.Get("X-Name"))
	}}
	for _, greeting := range []string{"hi", "hello"} {
		t.Run(greeting, func(t *testing.T) {
			env := sdktest.MustEnv(map[string]string{"greeting": greeting})
			msg := sdk.Message{Tool: "echo", Headers: sdk.Headers{{"X-Name", "bob"}}}
			for range 2 {
				r, err := env.Run(p, msg)
				if err != nil {
					t.Fatal(err)
				}
				if r.Action != sdk.ActionReplace || len(r.Edits) != 1 || r.Edits[0].Value != greeting+" bob" {
					t.Fatalf("got %+v", r)
				}
			}
			if got := string(env.KV()["n"]); got != "xx" {
				t.Errorf("kv n = %q", got)
			}
			if logs := env.Logs(); len(logs) != 2 || logs[0].Msg != "tool echo" || logs[0].Level != sdk.LevelInfo {
				t.Errorf("logs = %+v", logs)
			}
		})
	}
}

func TestDecodeConfig(t *testing.T) {
	type rule struct {
		Name string `json:"name"`
	}
	type cfg struct {
		Mode  string `json:"mode"`
		Rules []rule `json:"rules"`
	}
	tests := []struct {
		raw, err string
		want     cfg
	}{
		{``, "", cfg{Mode: "keep"}},
		{" \n\t", "", cfg{Mode: "keep"}},
		{`{"mode":"strict","rules":[{"name":"a"}]}`, "", cfg{Mode: "strict", Rules: []rule{{Name: "a"}}}},
		{`{"mdoe":"strict"}`, `unknown field "mdoe"`, cfg{}},
		{`{"rules":[{"name":"a","nmae":"b"}]}`, `unknown field "nmae"`, cfg{}}, // at any depth
		{`{"mode":1}`, "cannot unmarshal number", cfg{}},
		{`{"mode":`, "unexpected EOF", cfg{}},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			c := cfg{Mode: "keep"}
			err := sdk.DecodeConfig([]byte(tt.raw), &c)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(c, tt.want) {
				t.Fatalf("got %+v, %v; want %+v", c, err, tt.want)
			}
		})
	}
}
