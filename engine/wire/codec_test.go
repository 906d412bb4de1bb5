package wire

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func samePoll(t *testing.T, in []byte) {
	t.Helper()
	fc, fb, ferr := decodePollFast(in)
	if ferr == errFallback {
		return
	}
	sc, sb, serr := decodePollSlow(in)
	if (ferr == nil) != (serr == nil) {
		t.Fatalf("input %q: fast err %v, encoding/json err %v", in, ferr, serr)
	}
	if ferr != nil {
		return
	}
	if len(fc) != len(sc) || len(fb) != len(sb) {
		t.Fatalf("input %q: fast %d ok/%d bad, encoding/json %d ok/%d bad", in, len(fc), len(fb), len(sc), len(sb))
	}
	for i := range fc {
		a, b := fc[i], sc[i]
		if !bytes.Equal(a.JSONRPC, b.JSONRPC) {
			t.Fatalf("input %q: jsonrpc %q vs %q", in, a.JSONRPC, b.JSONRPC)
		}
		a.JSONRPC, b.JSONRPC = nil, nil
		if len(a.Headers) == 0 && len(b.Headers) == 0 {
			a.Headers, b.Headers = nil, nil
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("input %q: command\nfast %+v\njson %+v", in, a, b)
		}
	}
	for i := range fb {
		if fb[i].RequestID != sb[i].RequestID {
			t.Fatalf("input %q: bad command id %q vs %q", in, fb[i].RequestID, sb[i].RequestID)
		}
	}
}

func sameResponse(t *testing.T, in []byte) {
	t.Helper()
	f, ferr := DecodeResponse(in)
	var s Response
	serr := json.Unmarshal(in, &s)
	if string(s.RespJSON) == "null" {
		s.RespJSON = nil
	}
	if (ferr == nil) != (serr == nil) {
		t.Fatalf("input %q: fast err %v, encoding/json err %v", in, ferr, serr)
	}
	if ferr != nil {
		return
	}
	if !bytes.Equal(f.RespJSON, s.RespJSON) {
		t.Fatalf("input %q: resp_json %q vs %q", in, f.RespJSON, s.RespJSON)
	}
	f.RespJSON, s.RespJSON = nil, nil
	if len(f.RespHeaders) == 0 && len(s.RespHeaders) == 0 {
		f.RespHeaders, s.RespHeaders = nil, nil
	}
	if !reflect.DeepEqual(f, s) {
		t.Fatalf("input %q:\nfast %+v\njson %+v", in, f, s)
	}
}

var codecCases = []string{
	`{"commands":[]}`,
	`{"commands":null}`,
	`null`,
	` {"commands" : [ {"request_id":"a","shard_token":"s","command_type":"jsonrpc","created_at":"x","jsonrpc":{"jsonrpc":"2.0","id":0,"method":"ping"}} ] } `,
	`{"commands":[1,"x",null,{"request_id":"a"}]}`,
	`{"commands":[{"request_id":"a\u0041","shard_token":"s\n","command_type":"jsonrpc","created_at":"x","headers":{"A":["1",null],"B":null},"jsonrpc":{"id":"é"}}]}`,
	`{"commands":[{"request_id":"a","request_id":null,"command_type":"jsonrpc","jsonrpc":{}}]}`,
	`{"commands":[{"request_id":"a","headers":{"A":["1"]},"headers":{"B":["2"]},"command_type":"session_termination"}]}`,
	`{"commands":[{"Request_ID":"a","command_type":"session_termination"}]}`,
	`{"commands":[{"request_id":"a","response_timeout":"5s","response_timeout":null,"command_type":"session_termination"}]}`,
	`{"commands":[{"request_id":"a","command_type":"jsonrpc","jsonrpc":{"a":[1,2.5e-3,-0,true,false,null,{"b":"\"\\"}]}}]}`,
	`{"commands":[{"request_id":"a","command_type":"jsonrpc","jsonrpc":{"a":01}}]}`,
	`{"commands":[{"request_id":"a","command_type":"jsonrpc","jsonrpc":{"a":"\x"}}]}`,
	`{"commands":[{"request_id":"a\xff","command_type":"session_termination"}]}`,
	`{"commands":[]} x`,
	`{"commands":[],}`,
	`{"other":{"deep":[[[]]]},"commands":[]}`,
	`{"commands":[{"request_id":"a","command_type":"jsonrpc","jsonrpc":{},"caller":"alice"}]}`,
	`{"commands":[{"request_id":"a","command_type":"jsonrpc","jsonrpc":{},"caller":null,"Caller":"x"}]}`,
	`{"commands":[{"request_id":"a","command_type":"jsonrpc","jsonrpc":{},"caller":7}]}`,
	`{"commands":[{"request_id":"a","command_type":"jsonrpc","jsonrpc":{},"caller":"caf\u00e9 \"q\""}]}`,
	`{"commands":[{"request_id":"a","command_type":"oauth_as","oauth_as":{"endpoint":"token_endpoint","method":"POST","body":"a=b"}}]}`,
	`{"commands":[{"request_id":"a","command_type":"oauth_as","oauth_as":{"endpoint":"jwks_uri","method":"GET"},"oauth_as":{"query":"x=1"}}]}`,
	`{"commands":[{"request_id":"a","command_type":"oauth_as","oauth_as":{"endpoint":"jwks_uri","method":"GET"},"oauth_as":null}]}`,
	`{"commands":[{"request_id":"a","command_type":"oauth_as","oauth_as":"x"}]}`,
	`{"commands":[{"request_id":"a","command_type":"oauth_as","oauth_as":{"endpoint":"userinfo_endpoint","method":"GET"}}]}`,
}

func TestCodecMatchesEncodingJSON(t *testing.T) {
	for _, c := range codecCases {
		samePoll(t, []byte(c))
	}
	for _, c := range []string{
		`{"request_id":"r","resp_json":{"jsonrpc":"2.0","id":1,"result":{}},"resp_code":200,"resp_type":"jsonrpc_response","resp_headers":{"Content-Type":["application/json"]}}`,
		`{"request_id":"r","resp_json":null,"resp_code":204,"resp_type":"session_termination_response"}`,
		`{"request_id":"r","resp_code":200.0}`,
		`{"request_id":"r","resp_code":"200"}`,
		`{"request_id":"r","resp_code":1e2}`,
		`{"request_id":"r","RESP_CODE":201}`,
		`{"request_id":"r","resp_code":99999999999999999999}`,
		`{"request_id":"r","resp_json":[1]}`,
		`{"request_id":"r"`,
		`[]`,
		`null`,
	} {
		sameResponse(t, []byte(c))
	}
	for _, name := range []string{"response_final.json", "response_notify.json", "response_session_end.json", "response_tunnel_failure.json"} {
		b, _ := os.ReadFile(filepath.Join("testdata", "fixtures", name))
		sameResponse(t, b)
	}
	b, _ := os.ReadFile(filepath.Join("testdata", "fixtures", "poll_mixed.json"))
	samePoll(t, b)
}

func TestAppendPollResponseRoundTrip(t *testing.T) {
	b, _ := os.ReadFile(filepath.Join("testdata", "fixtures", "poll_mixed.json"))
	cmds, _, err := DecodePoll(b)
	if err != nil {
		t.Fatal(err)
	}
	cmds[0].Headers["X-Weird"] = []string{"quote \" and <tag> and é"}
	out := AppendPollResponse(nil, cmds)
	if !json.Valid(out) {
		t.Fatalf("invalid JSON: %s", out)
	}
	back, bad, err := DecodePoll(out)
	if err != nil || len(bad) != 0 {
		t.Fatalf("%v %v", err, bad)
	}
	if !reflect.DeepEqual(back, cmds) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, cmds)
	}
	std, _ := json.Marshal(PollResponse{Commands: cmds})
	var a, c any
	_ = json.Unmarshal(out, &a)
	_ = json.Unmarshal(std, &c)
	if !reflect.DeepEqual(a, c) {
		t.Errorf("AppendPollResponse differs from encoding/json:\n%s\n%s", out, std)
	}
	if got := string(AppendPollResponse(nil, nil)); got != `{"commands":[]}` {
		t.Errorf("empty = %s", got)
	}
}

func FuzzCodecMatchesEncodingJSON(f *testing.F) {
	for _, c := range codecCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		samePoll(t, b)
		sameResponse(t, b)
		if cmds, _, err := DecodePoll(b); err == nil {
			out := AppendPollResponse(nil, cmds)
			if !json.Valid(out) {
				t.Fatalf("AppendPollResponse made invalid JSON from %q: %s", b, out)
			}
		}
	})
}

func benchPoll(n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"commands":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"request_id":"req_0123456789abcdef","shard_token":"0123456789abcdef0123","command_type":"jsonrpc","channel":"main","created_at":"2026-11-25T10:00:00.000Z","headers":{"Mcp-Session-Id":["9f0e4c7a-1b2c-4d5e-8f90-123456789abc"],"Mcp-Protocol-Version":["2025-11-25"],"Accept":["application/json, text/event-stream"]},"response_timeout":"120000ms","jsonrpc":{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"`)
		sb.WriteString(strings.Repeat("x", 1024))
		sb.WriteString(`"}}}}`)
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}

func BenchmarkDecodePoll(b *testing.B) {
	body := benchPoll(1)
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, _, err := DecodePoll(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, _, err := decodePollSlow(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEncodePoll(b *testing.B) {
	cmds, _, _ := DecodePoll(benchPoll(1))
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 4096)
		for i := 0; i < b.N; i++ {
			buf = AppendPollResponse(buf[:0], cmds)
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, _ = json.Marshal(PollResponse{Commands: cmds})
		}
	})
}

func BenchmarkDecodeResponse(b *testing.B) {
	body := []byte(`{"request_id":"req_0123456789abcdef","channel":"main","resp_json":{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"` + strings.Repeat("x", 1024) + `"}]}},"resp_headers":{"Content-Type":["application/json"],"Mcp-Session-Id":["9f0e4c7a"]},"resp_code":200,"resp_type":"jsonrpc_response"}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := DecodeResponse(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var r Response
			if err := json.Unmarshal(body, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
