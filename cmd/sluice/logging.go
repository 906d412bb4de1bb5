package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/lmittmann/tint"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicemcp/sluice/engine/logs"
)

// newLogger builds the process logger: tint on a terminal (or log.format
// text), JSON otherwise, behind a logs.Throttle unless log.repeat-window is
// 0: a repeated warning or error, or per-call info line, is written once per
// window and then counted ("… and 16,647 more in the last 10 s"); reload
// lines are always written. Close the
// throttle (nil when off) before exiting, to write the pending counts.
func newLogger(c Log, w io.Writer, tty bool) (*slog.Logger, *logs.Throttle) {
	h := baseHandler(c, w, tty)
	if c.RepeatWindow <= 0 {
		return slog.New(h), nil
	}
	t := logs.NewThrottle(h, logs.ThrottleOptions{Window: c.RepeatWindow, Always: unthrottledPhases})
	return slog.New(t), t
}

// unthrottledPhases are the phases whose lines are always written: a reload
// is an operator's action, and each attempt's outcome matters.
var unthrottledPhases = []string{"reload"}

// baseHandler is the handler of log.level and log.format, unthrottled.
func baseHandler(c Log, w io.Writer, tty bool) slog.Handler {
	var lvl slog.Level
	switch c.Level {
	case "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		lvl = slog.LevelInfo
	}
	format := c.Format
	if format == "auto" || format == "" {
		format = "json"
		if tty {
			format = "text"
		}
	}
	if format == "text" {
		return tint.NewHandler(w, &tint.Options{Level: lvl, TimeFormat: time.TimeOnly, NoColor: !tty})
	}
	return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})
}

// newAuditLogger returns the audit trail's logger (nil for "off") and, when
// log.audit is a path, the file sink behind it (close it before exiting).
// "log" writes to the log stream at info level whatever log.level says,
// never throttled: the trail is one record per tool call by design. A path
// gets JSON lines appended by a logs.File, whose failures go to log.
func newAuditLogger(c Log, w io.Writer, tty bool, log *slog.Logger) (*slog.Logger, *logs.File, error) {
	switch c.Audit {
	case "off":
		return nil, nil, nil
	case "log", "":
		info := c
		info.Level = "info"
		return slog.New(baseHandler(info, w, tty)).With("log", "audit"), nil, nil
	}
	if err := checkAuditPath(c.Audit); err != nil {
		return nil, nil, err
	}
	f, err := logs.OpenFile(c.Audit, logs.FileOptions{Logger: log})
	if err != nil {
		return nil, nil, cfgErr("log.audit", "%v", err)
	}
	return slog.New(slog.NewJSONHandler(f, nil)), f, nil
}

// checkAuditPath checks, without creating anything, what opening the audit
// file would: a path that exists is not a directory, and the directory of
// one that does not exist does. `sluice config check` and a start say the
// same.
func checkAuditPath(path string) error {
	if path == "log" || path == "off" || path == "" {
		return nil
	}
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return cfgErr("log.audit", "open %s: %v", path, syscall.EISDIR)
	case err == nil:
		return nil
	}
	dir, err := os.Stat(filepath.Dir(path))
	switch {
	case err != nil:
		return cfgErr("log.audit", "open %s: %v", path, unwrapPathErr(err))
	case !dir.IsDir():
		return cfgErr("log.audit", "open %s: %v", path, syscall.ENOTDIR)
	}
	return nil
}

// reopenAudit opens the audit file again (log rotation: SIGHUP and every
// reload). A failure is logged; records keep going to the old file.
func (s *session) reopenAudit() {
	if s.auditFile == nil {
		return
	}
	if err := s.auditFile.Reopen(); err != nil {
		s.log.Error("audit file reopen failed: still writing to the old file", "phase", "reload", "err", err)
		return
	}
	s.log.Debug("audit file reopened", "phase", "reload", "path", s.auditFile.Path())
}

// logMetrics are the metrics of the process's logging: lines the throttle
// counted instead of writing, and what became of the audit file's records.
func (s *session) logMetrics() []prometheus.Collector {
	t := s.throttle
	out := []prometheus.Collector{prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sluice_log_lines_suppressed_total",
		Help: "Log lines counted instead of written because they repeated within log.repeat-window.",
	}, func() float64 {
		if t == nil {
			return 0
		}
		return float64(t.Suppressed())
	})}
	f := s.auditFile
	if f == nil {
		return out
	}
	out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sluice_audit_records_written_total",
		Help: "Audit records written to the log.audit file.",
	}, func() float64 { return float64(f.Stats().Written) }))
	const droppedHelp = "Audit records lost: the write buffer was full (buffer_full) or the file could not be written (write_error)."
	out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sluice_audit_records_dropped_total", Help: droppedHelp, ConstLabels: prometheus.Labels{"reason": "buffer_full"},
	}, func() float64 { return float64(f.Stats().Dropped) }))
	out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sluice_audit_records_dropped_total", Help: droppedHelp, ConstLabels: prometheus.Labels{"reason": "write_error"},
	}, func() float64 { return float64(f.Stats().Failed) }))
	return out
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
