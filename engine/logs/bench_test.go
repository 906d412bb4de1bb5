package logs

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkThrottle measures what the throttle adds per log call, against
// the JSON handler writing to io.Discard:
//
//   - direct-warn: a warning written by the JSON handler, no throttle;
//   - repeat-warn: the same warning through the throttle, counted (the flood
//     case: what each failing call costs once the first line is written);
//   - distinct-warn: warnings of many kinds, each written (a map insert per
//     line on top of the write, kinds beyond MaxKeys overflowing);
//   - direct-info / info: an info line without a request id, which the
//     throttle only inspects and passes on.
func BenchmarkThrottle(b *testing.B) {
	ctx := context.Background()
	direct := func() slog.Handler { return slog.NewJSONHandler(io.Discard, nil) }
	warn := func(l *slog.Logger, i int) {
		l.LogAttrs(ctx, slog.LevelWarn, "plugin failed", slog.String("plugin", "guard"), slog.String("phase", "request"),
			slog.String("request_id", "r-123456"), slog.String("method", "tools/call"), slog.String("err", "wasm trap"))
	}
	info := func(l *slog.Logger, i int) {
		l.LogAttrs(ctx, slog.LevelInfo, "reload finished", slog.String("phase", "reload"), slog.Float64("took_ms", 1.5))
	}
	kinds := make([]string, 4096)
	for i := range kinds {
		kinds[i] = "kind " + strconv.Itoa(i)
	}
	cases := []struct {
		name string
		h    func() slog.Handler
		log  func(*slog.Logger, int)
	}{
		{"direct-warn", direct, warn},
		{"repeat-warn", func() slog.Handler { return NewThrottle(direct(), ThrottleOptions{Window: time.Hour}) }, warn},
		{"distinct-warn", func() slog.Handler { return NewThrottle(direct(), ThrottleOptions{Window: time.Millisecond}) }, func(l *slog.Logger, i int) {
			l.LogAttrs(ctx, slog.LevelWarn, kinds[i%len(kinds)], slog.String("plugin", "guard"))
		}},
		{"direct-info", direct, info},
		{"info", func() slog.Handler { return NewThrottle(direct(), ThrottleOptions{}) }, info},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			h := c.h()
			l := slog.New(h)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c.log(l, i)
				i++
			}
			if t, ok := h.(*Throttle); ok {
				_ = t.Close()
			}
		})
	}
	// The handler alone, on a prepared record: what the throttle itself
	// costs, without the logger's caller lookup.
	rec := slog.NewRecord(time.Now(), slog.LevelWarn, "plugin failed", 0)
	rec.AddAttrs(slog.String("plugin", "guard"), slog.String("phase", "request"), slog.String("request_id", "r-123456"),
		slog.String("method", "tools/call"), slog.String("err", "wasm trap"))
	for _, c := range []struct {
		name string
		h    slog.Handler
	}{
		{"handle-direct-warn", direct()},
		{"handle-repeat-warn", NewThrottle(direct(), ThrottleOptions{Window: time.Hour})},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = c.h.Handle(ctx, rec)
			}
		})
	}
	b.Run("repeat-warn-parallel", func(b *testing.B) {
		h := NewThrottle(direct(), ThrottleOptions{Window: time.Hour})
		l := slog.New(h)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				warn(l, 0)
			}
		})
		_ = h.Close()
	})
}

// BenchmarkFileWrite measures an audit record handed to the file sink by a
// slog.JSONHandler: what a call pays (the disk write happens on the sink's
// own goroutine).
func BenchmarkFileWrite(b *testing.B) {
	f, err := OpenFile(filepath.Join(b.TempDir(), "audit.jsonl"), FileOptions{Buffer: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	l := slog.New(slog.NewJSONHandler(f, nil))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		l.LogAttrs(ctx, slog.LevelInfo, "tool call", slog.String("tunnel", "tunnel_0123456789abcdef0123456789abcdef"),
			slog.String("channel", "main"), slog.String("request_id", "req_0123456789"), slog.String("tool", "echo"),
			slog.String("outcome", "ok"), slog.Int("status", 200), slog.Float64("latency_ms", 1.25))
	}
	b.StopTimer()
	_ = f.Close()
	st := f.Stats()
	b.ReportMetric(float64(st.Dropped)/float64(b.N), "dropped/op")
}
