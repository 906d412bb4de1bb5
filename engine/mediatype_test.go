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
