package relay

import (
	"net/url"
	"testing"
	"time"
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

// TestSlackWait: an empty poll of a second or more ends at most pollSlack
// early, on a multiple of pollSlack, so polls whose waits end within the
// same pollSlack end together; shorter polls wait exactly what they asked.
func TestSlackWait(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		offset, wait time.Duration
	}{
		{0, 30 * time.Second}, {7 * time.Millisecond, 30 * time.Second}, {49 * time.Millisecond, 30 * time.Second},
		{13 * time.Millisecond, time.Second}, {3 * time.Millisecond, 25*time.Second + 999*time.Millisecond},
		{0, time.Millisecond}, {11 * time.Millisecond, 999 * time.Millisecond},
	} {
		now := base.Add(tc.offset)
		got := slackWait(now, tc.wait)
		if tc.wait < time.Second {
			if got != tc.wait {
				t.Errorf("slackWait(+%v, %v) = %v, want the wait itself", tc.offset, tc.wait, got)
			}
			continue
		}
		if got > tc.wait || got <= tc.wait-pollSlack {
			t.Errorf("slackWait(+%v, %v) = %v: more than %v early, or late", tc.offset, tc.wait, got, pollSlack)
		}
		if end := now.Add(got); end.Truncate(pollSlack) != end {
			t.Errorf("slackWait(+%v, %v) ends at %v, not on a multiple of %v", tc.offset, tc.wait, end, pollSlack)
		}
	}
	// Two polls asking 30 s, started 20 ms apart within one slack period
	// of their ends, end at the same instant.
	a, b := base.Add(2*time.Millisecond), base.Add(22*time.Millisecond)
	if ea, eb := a.Add(slackWait(a, 30*time.Second)), b.Add(slackWait(b, 30*time.Second)); !ea.Equal(eb) {
		t.Errorf("polls 20 ms apart end at %v and %v", ea, eb)
	}
}
