package relay

import (
	"net/url"
	"testing"
)

// TestQueryValue: a poll's parameters read without url.ParseQuery's map
// give what url.Values.Get gives.
func TestQueryValue(t *testing.T) {
	for _, raw := range []string{
		"", "limit=5", "limit=5&timeout_ms=30000", "timeout_ms=1&limit=2&limit=3",
		"limit", "limit=", "=5&limit=4", "&&limit=7&", "lim%69t=8", "limit=%32%35",
		"limit=%zz&limit=9", "li%zzmit=1&limit=2", "limit=1;x=2&limit=3", "a=b;c&limit=4",
		"limit=+1", "timeout_ms=3%2B0", "limit=1&limit=2",
	} {
		v, _ := url.ParseQuery(raw) // the pairs it could read, despite an error
		if got, want := queryValue(raw, "limit"), v.Get("limit"); got != want {
			t.Errorf("queryValue(%q, limit) = %q, url.Values.Get %q", raw, got, want)
		}
	}
}

// FuzzQueryValue: for any query string, queryValue agrees with
// url.ParseQuery followed by Get.
func FuzzQueryValue(f *testing.F) {
	for _, s := range []string{"limit=5&timeout_ms=30000", "limit=%zz&limit=9", "a;b=c&limit=1", "l%69mit=+2"} {
		f.Add(s, "limit")
	}
	f.Fuzz(func(t *testing.T, raw, key string) {
		v, _ := url.ParseQuery(raw)
		if got, want := queryValue(raw, key), v.Get(key); got != want {
			t.Fatalf("queryValue(%q, %q) = %q, url.Values.Get %q", raw, key, got, want)
		}
	})
}
