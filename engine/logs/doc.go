// Package logs keeps Sluice's logs from flooding a disk.
//
// Throttle is a slog.Handler wrapper: the first occurrence of a warning or
// error (or of a per-call info line, one that names a request_id) is written,
// repeats within a window are counted instead, and when the window ends one
// line reports them:
//
//	WARN plugin failed plugin=guard phase=request request_id=… err=…
//	WARN plugin failed … and 16,647 more in the last 10 s plugin=guard phase=request suppressed=16647
//
// File is the audit trail's own sink: JSON lines appended to a file (0600),
// written by a goroutine of its own behind a bounded buffer so that a slow
// disk never blocks a call (records that do not fit are dropped and counted),
// and reopened on demand so that logrotate can move the file away.
//
// cmd/sluice applies both; the agent, the relay and the plugin host keep
// logging through the *slog.Logger they are given. RATIONALE.md explains the
// choices.
package logs
