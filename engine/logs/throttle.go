package logs

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of ThrottleOptions.
const (
	// DefaultWindow is how long repeats of a line are counted.
	DefaultWindow = 10 * time.Second
	// DefaultMaxKeys is how many distinct lines are tracked at once.
	DefaultMaxKeys = 1024
)

// CountAttr is the attribute of a count line that holds the number of
// repeats it stands for.
const CountAttr = "suppressed"

// OverflowMessage starts the count line of the lines that could not be told
// apart because MaxKeys distinct lines were already tracked.
const OverflowMessage = "log lines of more kinds than tracked"

// identifying are the attributes that tell repeated lines apart, besides the
// level and the message. Request ids, errors and everything else are left
// out on purpose: they differ on every call.
var identifying = [...]string{"plugin", "tunnel", "channel", "phase"}

// idIndex is the position of key in identifying, or -1.
func idIndex(key string) int {
	switch key {
	case "plugin":
		return 0
	case "tunnel":
		return 1
	case "channel":
		return 2
	case "phase":
		return 3
	}
	return -1
}

// phaseIndex is the position of "phase" in identifying.
const phaseIndex = 3

// perCallKey marks a line as being about one call.
const perCallKey = "request_id"

// ThrottleOptions configure a Throttle. The zero value is the defaults.
type ThrottleOptions struct {
	// Window is how long repeats of a line are counted before one line
	// reports them; zero or less means DefaultWindow.
	Window time.Duration
	// MaxKeys bounds the distinct lines tracked at once (the memory the
	// throttle holds); zero or less means DefaultMaxKeys. Beyond it, the
	// lines of kinds not yet tracked share one count.
	MaxKeys int
	// Always lists phases (the "phase" attribute) whose lines are always
	// written: those of an operator's actions, such as a reload, where every
	// occurrence and its error matter and none comes from traffic.
	Always []string
}

// Throttle is a slog.Handler that writes the first occurrence of a repeated
// line and counts the rest.
//
// Throttled are records at slog.LevelWarn and above, and info records that
// name a request_id (as an attribute of the record or of the logger): those
// are per-call noise. Debug records, and records of the phases listed in
// ThrottleOptions.Always, always pass. Two records are the same
// line when their level, message and identifying attributes (plugin, tunnel,
// channel, phase, from the record or the logger) are equal; request ids and
// errors do not matter. The first occurrence is written at once; repeats
// within Window of it are counted, and when the window ends one line with
// the same level, the message followed by "… and N more in the last 10 s",
// the identifying attributes and CountAttr reports them. The next
// occurrence after that starts a new window and is written again.
//
// Counting starts no goroutine: a window with repeats arms one timer, which
// fires once. Close reports the counts still pending and stops the timers.
// A Throttle is safe for concurrent use; the handlers WithAttrs and
// WithGroup return share its state.
type Throttle struct {
	next    slog.Handler
	st      *throttleState
	scope   string // identifying attributes and groups added to the logger
	perCall bool   // a request_id was added to the logger
}

// NewThrottle returns a Throttle writing to next.
func NewThrottle(next slog.Handler, o ThrottleOptions) *Throttle {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	return &Throttle{next: next, st: &throttleState{window: o.Window, maxKeys: o.MaxKeys, always: o.Always, lines: map[lineKey]*line{}}}
}

// Interface guards
var _ slog.Handler = (*Throttle)(nil)

// Enabled reports whether the wrapped handler handles level.
func (h *Throttle) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// WithAttrs returns a Throttle writing to next.WithAttrs(as) and sharing
// h's counts.
func (h *Throttle) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	c := *h
	c.next = h.next.WithAttrs(as)
	var b strings.Builder
	b.WriteString(h.scope)
	for _, a := range as {
		if a.Key == perCallKey {
			c.perCall = true
		} else if idIndex(a.Key) >= 0 {
			b.WriteString(a.Key)
			b.WriteByte('=')
			b.WriteString(a.Value.String())
			b.WriteByte(0)
		}
	}
	c.scope = b.String()
	return &c
}

// WithGroup returns a Throttle writing to next.WithGroup(name) and sharing
// h's counts.
func (h *Throttle) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.next = h.next.WithGroup(name)
	c.scope = h.scope + "[" + name + "]"
	return &c
}

// Handle writes r, or counts it as a repeat.
func (h *Throttle) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelInfo {
		return h.next.Handle(ctx, r)
	}
	k := lineKey{level: r.Level, msg: r.Message, scope: h.scope}
	perCall := h.perCall
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == perCallKey {
			perCall = true
		} else if i := idIndex(a.Key); i >= 0 && k.ids[i] == "" {
			k.ids[i] = a.Value.String()
		}
		return true
	})
	if r.Level < slog.LevelWarn && !perCall || h.st.isAlways(k.ids[phaseIndex]) {
		return h.next.Handle(ctx, r)
	}
	now := r.Time // the logger read the clock already (a second read costs more than the rest)
	if now.IsZero() {
		now = time.Now()
	}
	write, due := h.st.admit(k, h.next, now)
	if due != nil {
		due.emit()
	}
	if !write {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// Suppressed returns how many records were counted instead of written.
func (h *Throttle) Suppressed() uint64 { return h.st.suppressed.Load() }

// Close writes the count lines still pending (for the part of their window
// that passed), stops the timers, and from then on lets every record
// through. It is safe to call more than once.
func (h *Throttle) Close() error {
	for _, rep := range h.st.close(time.Now()) {
		rep.emit()
	}
	return nil
}

// lineKey tells lines apart.
type lineKey struct {
	level slog.Level
	msg   string
	scope string
	ids   [len(identifying)]string
}

// line is one tracked line: its window and the repeats counted in it.
type line struct {
	key   lineKey
	start time.Time    // when the first occurrence was written
	n     int64        // repeats counted since
	next  slog.Handler // where the first occurrence went: the count line goes there too
	timer *time.Timer  // reports n when the window ends; nil while n == 0
}

type throttleState struct {
	window     time.Duration
	maxKeys    int
	always     []string // phases never throttled
	suppressed atomic.Uint64

	mu        sync.Mutex
	lines     map[lineKey]*line // at most maxKeys, plus the overflow line
	lastSweep time.Time
	closed    bool
}

// isAlways reports whether lines of phase are always written.
func (s *throttleState) isAlways(phase string) bool {
	if phase == "" {
		return false
	}
	for _, p := range s.always {
		if p == phase {
			return true
		}
	}
	return false
}

// overflowKey is the line that counts, once maxKeys lines are tracked, the
// records of every kind not tracked yet.
var overflowKey = lineKey{level: slog.LevelWarn, msg: OverflowMessage, scope: "\x00overflow"}

// admit decides whether a record of line k is written (true) or counted.
// due, when not nil, is the count of k's previous window, to report first.
func (s *throttleState) admit(k lineKey, next slog.Handler, now time.Time) (write bool, due *report) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true, nil
	}
	l := s.lines[k]
	if l == nil && s.tracked() >= s.maxKeys {
		s.sweep(now)
		if s.tracked() >= s.maxKeys {
			k = overflowKey
			l = s.lines[k]
		}
	}
	if l != nil && now.Sub(l.start) < s.window {
		l.n++
		s.suppressed.Add(1)
		if l.timer == nil {
			l.timer = time.AfterFunc(l.start.Add(s.window).Sub(now), func() { s.expire(l) })
		}
		return false, nil
	}
	if l != nil {
		// Its window is over; its timer may not have run yet.
		due = s.take(l, now)
	}
	s.lines[k] = &line{key: k, start: now, next: next}
	return true, due
}

// tracked is the number of lines tracked, the overflow line aside. The
// caller holds s.mu.
func (s *throttleState) tracked() int {
	if _, ok := s.lines[overflowKey]; ok {
		return len(s.lines) - 1
	}
	return len(s.lines)
}

// sweep forgets the lines whose window is over and that counted nothing (the
// others go when their timer fires). It runs at most a few times per window.
func (s *throttleState) sweep(now time.Time) {
	if now.Sub(s.lastSweep) < s.window/8 {
		return
	}
	s.lastSweep = now
	for k, l := range s.lines {
		if l.n == 0 && now.Sub(l.start) >= s.window {
			delete(s.lines, k)
		}
	}
}

// expire reports l's count when its window ends.
func (s *throttleState) expire(l *line) {
	s.mu.Lock()
	var rep *report
	if !s.closed && s.lines[l.key] == l {
		rep = s.take(l, time.Now())
	}
	s.mu.Unlock()
	if rep != nil {
		rep.emit()
	}
}

// take forgets l and returns the report of its count (nil when it counted
// nothing). The caller holds s.mu.
func (s *throttleState) take(l *line, now time.Time) *report {
	delete(s.lines, l.key)
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.n == 0 {
		return nil
	}
	return &report{key: l.key, n: l.n, span: min(now.Sub(l.start), s.window), next: l.next}
}

// close takes every pending count and lets records through from now on.
func (s *throttleState) close(now time.Time) []*report {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var out []*report
	for _, l := range s.lines {
		if rep := s.take(l, now); rep != nil {
			out = append(out, rep)
		}
	}
	return out
}

// report is one count line to write.
type report struct {
	key  lineKey
	n    int64
	span time.Duration
	next slog.Handler
}

func (r *report) emit() {
	msg := r.key.msg + " … and " + Thousands(r.n) + " more in the last " + Span(r.span)
	rec := slog.NewRecord(time.Now(), r.key.level, msg, 0)
	for i, v := range r.key.ids {
		if v != "" {
			rec.AddAttrs(slog.String(identifying[i], v))
		}
	}
	rec.AddAttrs(slog.Int64(CountAttr, r.n))
	_ = r.next.Handle(context.Background(), rec)
}

// Thousands formats n with a comma between groups of three digits: 16,647.
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Span formats a window for a count line: "10 s", "2.5 s", "300 ms".
func Span(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	}
	s := strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + " s"
}
