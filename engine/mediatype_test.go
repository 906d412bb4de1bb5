package engine

import (
	"net/http"
	"testing"
)

func TestEventStreamMediaTypes(t *testing.T) {
	for _, tc := range []struct {
		accept []string
		want   bool
	}{
		{[]string{"application/json, text/event-stream"}, true},
		{[]string{"application/json", "Text/Event-Stream;q=0.5"}, true},
		{[]string{"application/json"}, false},
		{[]string{"text/event-streams"}, false},
		{nil, false},
	} {
		h := http.Header{"Accept": tc.accept}
		if got := AcceptsEventStream(h); got != tc.want {
			t.Errorf("AcceptsEventStream(%q) = %v", tc.accept, got)
		}
	}
	if !IsEventStream("text/event-stream; charset=utf-8") || IsEventStream("application/json") {
		t.Error("IsEventStream")
	}
}

func TestIsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json": true, "Application/JSON; charset=utf-8": true, " application/json ": true,
		"": false, "text/plain": false, "application/json-seq": false, "application/jsonx": false,
	} {
		if got := IsJSON(ct); got != want {
			t.Errorf("IsJSON(%q) = %v", ct, got)
		}
	}
}

func TestValidIDAndIDNull(t *testing.T) {
	for id, want := range map[string]bool{
		`"x"`: true, `""`: true, `0`: true, `-12`: true, `123456789012345678901234567890`: true,
		`1.5`: false, `1e3`: false, `-`: false, `{}`: false, `[]`: false, `true`: false, ``: false,
	} {
		if got := ValidID([]byte(id)); got != want {
			t.Errorf("ValidID(%s) = %v", id, got)
		}
	}
	for body, null := range map[string]bool{
		`{"jsonrpc":"2.0","id":null,"method":"x"}`:      true,
		`{"jsonrpc":"2.0","method":"x"}`:                false,
		`{"jsonrpc":"2.0","\u0069d":null,"method":"x"}`: true, // escaped member name: the slow path
	} {
		p, err := PeekMessage([]byte(body))
		if err != nil || p.IDNull != null || p.ID != nil {
			t.Errorf("PeekMessage(%s) = %+v, %v", body, p, err)
		}
	}
}
