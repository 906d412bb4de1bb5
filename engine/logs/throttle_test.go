package logs

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicemcp/sluice/engine/enginetest"
)

// sink is a JSON handler's output, read back as records.
type sink struct{ enginetest.SyncBuffer }

func (s *sink) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %s", line)
		}
		out = append(out, m)
	}
	return out
}

func newThrottled(o ThrottleOptions) (*slog.Logger, *Throttle, *sink) {
	s := &sink{}
	h := NewThrottle(slog.NewJSONHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug}), o)
	return slog.New(h), h, s
}

// pluginFailed logs what the engine logs for each failed plugin call.
func pluginFailed(log *slog.Logger, i int) {
	log.Warn("plugin failed", "plugin", "guard", "phase", "request", "request_id", fmt.Sprintf("r-%d", i),
		"method", "tools/call", "err", fmt.Sprintf("wasm trap #%d", i))
}

// TestThrottleCountsRepeats: 16,648 identical warnings (the figure)
// give one line at once and, when the window ends, one count line with the
// issue's wording and the count as an attribute; the next occurrence starts
// a new window and is written in full; a window without repeats gives no
// count line.
func TestThrottleCountsRepeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, _, out := newThrottled(ThrottleOptions{})
		for i := range 16648 {
			pluginFailed(log, i)
		}
		recs := out.records(t)
		if len(recs) != 1 || recs[0]["request_id"] != "r-0" || recs[0]["err"] != "wasm trap #0" {
			t.Fatalf("want the first warning only, got %d lines: %v", len(recs), recs)
		}
		time.Sleep(DefaultWindow - time.Millisecond)
		synctest.Wait()
		if n := len(out.records(t)); n != 1 {
			t.Fatalf("a count line came before the window ended (%d lines)", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		recs = out.records(t)
		if len(recs) != 2 {
			t.Fatalf("want the count line at the window's end, got %d lines", len(recs))
		}
		c := recs[1]
		if c["msg"] != "plugin failed … and 16,647 more in the last 10 s" || c["level"] != "WARN" ||
			c[CountAttr] != 16647.0 || c["plugin"] != "guard" || c["phase"] != "request" || c["request_id"] != nil {
			t.Fatalf("count line: %v", c)
		}
		pluginFailed(log, 99999)
		time.Sleep(DefaultWindow + time.Second)
		synctest.Wait()
		recs = out.records(t)
		if len(recs) != 3 || recs[2]["request_id"] != "r-99999" {
			t.Fatalf("after the window: want the next occurrence in full and no count line, got %v", recs[2:])
		}
	})
}

// TestThrottleWindow: repeats count only within Window of the first
// occurrence; the count line covers exactly them.
func TestThrottleWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, _, out := newThrottled(ThrottleOptions{Window: 4 * time.Second})
		pluginFailed(log, 0) // t=0: written
		time.Sleep(time.Second)
		pluginFailed(log, 1) // t=1: counted
		time.Sleep(2900 * time.Millisecond)
		pluginFailed(log, 2) // t=3.9: counted
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()      // t=4.1: the count line
		pluginFailed(log, 3) // a new window: written
		pluginFailed(log, 4) // counted in it
		time.Sleep(5 * time.Second)
		synctest.Wait()
		var got []string
		for _, r := range out.records(t) {
			got = append(got, fmt.Sprintf("%s %v", r["msg"], r["request_id"]))
		}
		want := []string{
			"plugin failed r-0",
			"plugin failed … and 2 more in the last 4 s <nil>",
			"plugin failed r-3",
			"plugin failed … and 1 more in the last 4 s <nil>",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// TestThrottleLateRecord: a repeat that arrives after the window ended but
// before its timer ran reports the old window's count first, then is
// written as the start of a new window.
func TestThrottleLateRecord(t *testing.T) {
	_, h, out := newThrottled(ThrottleOptions{Window: time.Hour})
	k := lineKey{level: slog.LevelWarn, msg: "plugin failed"}
	t0 := time.Now()
	if w, due := h.st.admit(k, h.next, t0); !w || due != nil {
		t.Fatal("first occurrence not written")
	}
	for range 3 {
		if w, _ := h.st.admit(k, h.next, t0.Add(time.Minute)); w {
			t.Fatal("repeat written")
		}
	}
	w, due := h.st.admit(k, h.next, t0.Add(time.Hour+time.Second))
	if !w || due == nil || due.n != 3 || due.span != time.Hour {
		t.Fatalf("late record: write %v, due %+v", w, due)
	}
	due.emit()
	if recs := out.records(t); len(recs) != 1 || recs[0]["msg"] != "plugin failed … and 3 more in the last 3600 s" {
		t.Fatalf("count line: %v", recs)
	}
	_ = h.Close()
}

// TestThrottleKeys: which records are the same line, and which are never
// throttled.
func TestThrottleKeys(t *testing.T) {
	type logf func(*slog.Logger)
	warn := func(args ...any) logf { return func(l *slog.Logger) { l.Warn("w", args...) } }
	tests := []struct {
		name        string
		first, then logf
		repeat      bool // the second record is counted, not written
	}{
		{"request ids differ", warn("plugin", "p", "request_id", "1"), warn("plugin", "p", "request_id", "2"), true},
		{"errors differ", warn("plugin", "p", "err", "a"), warn("plugin", "p", "err", "b"), true},
		{"plugins differ", warn("plugin", "p"), warn("plugin", "q"), false},
		{"tunnels differ", warn("tunnel", "a"), warn("tunnel", "b"), false},
		{"channels differ", warn("channel", "a"), warn("channel", "b"), false},
		{"phases differ", warn("phase", "request"), warn("phase", "response"), false},
		{"messages differ", warn(), func(l *slog.Logger) { l.Warn("v") }, false},
		{"levels differ", warn(), func(l *slog.Logger) { l.Error("w") }, false},
		{"errors repeat", func(l *slog.Logger) { l.Error("e", "err", "x") }, func(l *slog.Logger) { l.Error("e", "err", "y") }, true},
		{"logger channels differ", func(l *slog.Logger) { l.With("channel", "a").Warn("w") }, func(l *slog.Logger) { l.With("channel", "b").Warn("w") }, false},
		{"logger and record attribute", func(l *slog.Logger) { l.With("channel", "a").Warn("w") }, func(l *slog.Logger) { l.With("channel", "a").Warn("w", "err", "z") }, true},
		{"info", func(l *slog.Logger) { l.Info("listening") }, func(l *slog.Logger) { l.Info("listening") }, false},
		{"per-call info", func(l *slog.Logger) { l.Info("mcp call failed", "request_id", "1") }, func(l *slog.Logger) { l.Info("mcp call failed", "request_id", "2") }, true},
		{"per-call info logger", func(l *slog.Logger) { l.With("request_id", "1").Info("x") }, func(l *slog.Logger) { l.With("request_id", "2").Info("x") }, true},
		{"debug", func(l *slog.Logger) { l.Debug("d", "request_id", "1") }, func(l *slog.Logger) { l.Debug("d", "request_id", "1") }, false},
		{"groups differ", func(l *slog.Logger) { l.WithGroup("a").Warn("w") }, func(l *slog.Logger) { l.WithGroup("b").Warn("w") }, false},
		{"an always phase", func(l *slog.Logger) { l.Error("reload failed", "phase", "reload", "err", "a") }, func(l *slog.Logger) { l.Error("reload failed", "phase", "reload", "err", "b") }, false},
		{"another phase", func(l *slog.Logger) { l.Error("failed", "phase", "request") }, func(l *slog.Logger) { l.Error("failed", "phase", "request") }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, h, out := newThrottled(ThrottleOptions{Window: time.Hour, Always: []string{"reload"}})
			defer h.Close()
			tc.first(log)
			tc.then(log)
			if got := len(out.records(t)); got != map[bool]int{true: 1, false: 2}[tc.repeat] {
				t.Fatalf("repeat %v: %d lines written", tc.repeat, got)
			}
			if want := map[bool]uint64{true: 1, false: 0}[tc.repeat]; h.Suppressed() != want {
				t.Fatalf("Suppressed() = %d, want %d", h.Suppressed(), want)
			}
		})
	}
}

// TestThrottleKeyCap: at most MaxKeys lines are tracked; records of further
// kinds share one overflow count (its first occurrence written), so memory
// stays bounded whatever the messages; once windows end, the tracked lines
// are freed for new kinds.
func TestThrottleKeyCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, h, out := newThrottled(ThrottleOptions{Window: 10 * time.Second, MaxKeys: 4})
		for round := range 2 {
			for i := range 10 {
				log.Warn(fmt.Sprintf("kind %d", i), "round", round)
			}
		}
		if n, _ := tracked(h); n != 5 {
			t.Fatalf("%d lines tracked, want 4 and the overflow", n)
		}
		recs := out.records(t)
		var msgs []string
		for _, r := range recs {
			msgs = append(msgs, r["msg"].(string))
		}
		if strings.Join(msgs, ",") != "kind 0,kind 1,kind 2,kind 3,kind 4" {
			t.Fatalf("written: %v", msgs)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		counts := map[string]float64{}
		for _, r := range out.records(t)[5:] {
			counts[r["msg"].(string)] = r[CountAttr].(float64)
		}
		want := map[string]float64{
			"kind 0 … and 1 more in the last 10 s": 1, "kind 1 … and 1 more in the last 10 s": 1,
			"kind 2 … and 1 more in the last 10 s": 1, "kind 3 … and 1 more in the last 10 s": 1,
			OverflowMessage + " … and 11 more in the last 10 s": 11, // kinds 5–9 of round 0, 4–9 of round 1
		}
		if fmt.Sprint(counts) != fmt.Sprint(want) {
			t.Fatalf("count lines: %v\nwant %v", counts, want)
		}
		if n, _ := tracked(h); n != 0 {
			t.Fatalf("%d lines still tracked after their windows", n)
		}
		// Lines that counted nothing are swept when room is needed.
		for i := range 4 {
			log.Warn(fmt.Sprintf("quiet %d", i))
		}
		time.Sleep(11 * time.Second)
		for i := range 4 {
			log.Warn(fmt.Sprintf("new %d", i))
		}
		if n, over := tracked(h); over || n != 4 {
			t.Fatalf("stale lines were not swept: %d tracked, overflow %v", n, over)
		}
		_ = h.Close()
	})
}

// TestThrottleClose: Close writes the pending counts for the part of the
// window that passed, stops the timers (no count line later) and lets every
// record through afterwards.
func TestThrottleClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, h, out := newThrottled(ThrottleOptions{})
		for i := range 5 {
			pluginFailed(log, i)
		}
		time.Sleep(2500 * time.Millisecond)
		_ = h.Close()
		recs := out.records(t)
		if len(recs) != 2 || recs[1]["msg"] != "plugin failed … and 4 more in the last 2.5 s" {
			t.Fatalf("after Close: %v", recs)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		pluginFailed(log, 5)
		pluginFailed(log, 6)
		_ = h.Close()
		if recs := out.records(t); len(recs) != 4 {
			t.Fatalf("after Close records pass: want 4 lines, got %d", len(recs))
		}
	})
}

// TestThrottleCountLineKeepsLoggerAttrs: the count line goes through the
// logger the first occurrence went through, with its attributes and groups.
func TestThrottleCountLineKeepsLoggerAttrs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, h, out := newThrottled(ThrottleOptions{})
		l := log.With("tunnel", "tunnel_a", "side", "agent")
		for range 3 {
			l.Error("relay rejected the runtime key", "status", 401)
		}
		_ = h.Close()
		recs := out.records(t)
		if len(recs) != 2 {
			t.Fatalf("lines: %v", recs)
		}
		c := recs[1]
		if c["tunnel"] != "tunnel_a" || c["side"] != "agent" || c["level"] != "ERROR" || c[CountAttr] != 2.0 {
			t.Fatalf("count line: %v", c)
		}
	})
}

// TestThrottleHammer: many goroutines, a window short enough to end many
// times during the run: every record is either written or counted by
// exactly one count line.
func TestThrottleHammer(t *testing.T) {
	log, h, out := newThrottled(ThrottleOptions{Window: time.Millisecond, MaxKeys: 3})
	const workers, each = 8, 3000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				log.Warn(fmt.Sprintf("kind %d", (w+i)%5), "request_id", i)
			}
		})
	}
	wg.Wait()
	_ = h.Close()
	var total float64
	for _, r := range out.records(t) {
		if n, ok := r[CountAttr].(float64); ok {
			total += n
		} else {
			total++
		}
	}
	if total != workers*each {
		t.Fatalf("lines account for %v records, want %d", total, workers*each)
	}
	if uint64(total)-h.Suppressed() != uint64(len(out.records(t)))-countLines(out.records(t)) {
		t.Fatalf("Suppressed() = %d does not match the count lines", h.Suppressed())
	}
}

// tracked returns the number of lines h tracks and whether the overflow
// line is among them.
func tracked(h *Throttle) (int, bool) {
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	_, over := h.st.lines[overflowKey]
	return len(h.st.lines), over
}

func countLines(recs []map[string]any) uint64 {
	var n uint64
	for _, r := range recs {
		if _, ok := r[CountAttr]; ok {
			n++
		}
	}
	return n
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 16647: "16,647", 1234567: "1,234,567", -4200: "-4,200"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{10 * time.Second: "10 s", 2500 * time.Millisecond: "2.5 s", 300 * time.Millisecond: "300 ms", time.Minute: "60 s"} {
		if got := Span(d); got != want {
			t.Errorf("Span(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"echo", 8, "echo"},
		{"12345678", 8, "12345678"},
		{"123456789", 8, "12345678…"},
		{"1234567é", 8, "1234567…"}, // é is two bytes: cut before it
		{strings.Repeat("x", 1<<20), MaxField, strings.Repeat("x", MaxField) + "…"},
	} {
		if got := Clip(tc.in, tc.n); got != tc.want {
			t.Errorf("Clip(%.20q, %d) = %.40q, want %.40q", tc.in, tc.n, got, tc.want)
		}
	}
}
