package main

import (
	"fmt"
	"log/slog"
	"runtime/debug"
)

// panicError is a panic recovered where it must not take the process down
// with every call in flight: building a plugin chain or a binding plugin,
// and a reload. Nothing a config holds should panic (validate and the host
// refuse every value out of range); this is the net for what nobody
// foresaw.
type panicError struct {
	what  string
	value any
}

func (e *panicError) Error() string { return fmt.Sprintf("%s panicked: %v", e.what, e.value) }

// recovered runs f and turns a panic in it into a *panicError, logged with
// its stack (it is a bug: the log line is what to report).
func recovered(log *slog.Logger, what string, f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{what: what, value: v}
			if log != nil {
				log.Error("recovered from a panic (a bug: please report this line)", "phase", "load", "err", err, "stack", string(debug.Stack()))
			}
		}
	}()
	return f()
}
