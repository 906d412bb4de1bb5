package main

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"
)

// newLogger builds the process logger: tint on a terminal (or log.format
// text), JSON otherwise.
func newLogger(c Log, w io.Writer, tty bool) *slog.Logger {
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
		return slog.New(tint.NewHandler(w, &tint.Options{Level: lvl, TimeFormat: time.TimeOnly, NoColor: !tty}))
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl}))
}

// newAuditLogger returns the audit trail's logger (nil for "off") and a
// function that closes its file. "log" writes to the log stream at info
// level whatever log.level says; a path gets JSON lines appended.
func newAuditLogger(c Log, w io.Writer, tty bool) (*slog.Logger, func(), error) {
	switch c.Audit {
	case "off":
		return nil, func() {}, nil
	case "log", "":
		info := c
		info.Level = "info"
		return newLogger(info, w, tty).With("log", "audit"), func() {}, nil
	}
	f, err := os.OpenFile(c.Audit, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, cfgErr("log.audit", "open %s: %v", c.Audit, unwrapPathErr(err))
	}
	return slog.New(slog.NewJSONHandler(f, nil)), func() { _ = f.Close() }, nil
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
