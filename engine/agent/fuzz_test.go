package agent

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "120", "Thu, 01 Jan 2026 00:00:10 GMT", "-5", "99999999999999999999", "1e3"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		if d := parseRetryAfter(s, now); d < 0 {
			t.Fatalf("negative delay %s for %q", d, s)
		}
	})
}

func FuzzEncodeResponse(f *testing.F) {
	f.Add("req_1", "main", "X-Val", `{"jsonrpc":"2.0","id":1,"result":{}}`)
	f.Add("\x00\"\\\xff", "c\u2028", "\n", ``)
	f.Fuzz(func(t *testing.T, id, channel, hv, body string) {
		if !json.Valid([]byte(body)) {
			body = ""
		}
		h := http.Header{"Content-Type": {hv}, "Mcp-Session-Id": {id}}
		out := encodeResponse(id, channel, "jsonrpc_response", 200, h, []byte(body))
		var r struct {
			RequestID   string              `json:"request_id"`
			Channel     string              `json:"channel"`
			RespJSON    json.RawMessage     `json:"resp_json"`
			RespHeaders map[string][]string `json:"resp_headers"`
			RespCode    int                 `json:"resp_code"`
		}
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("invalid JSON %q: %v", out, err)
		}
		if utf8.ValidString(id) && r.RequestID != id {
			t.Fatalf("request_id %q round-tripped to %q", id, r.RequestID)
		}
		if utf8.ValidString(channel) && r.Channel != channel {
			t.Fatalf("channel %q round-tripped to %q", channel, r.Channel)
		}
		if r.RespCode != 200 {
			t.Fatalf("resp_code %d", r.RespCode)
		}
	})
}
