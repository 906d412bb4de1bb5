package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/sluicemcp/sluice/engine/logs"
)

// ToolCallAudit is the audit record of one tools/call, the same on both
// sides of the tunnel (the relay's and the agent's Options.Audit). It names
// who called what and what became of it; it never holds arguments or
// results.
type ToolCallAudit struct {
	Tunnel    string
	Channel   string
	RequestID string // the tunnel request id
	SessionID string
	Caller    string // client-key name or token subject ("" when unknown)
	Tool      string
	// Verdict is the deciding stage's action (respond, reject, drop) or
	// "failed"; "replace" when no stage decided but one changed a message
	// (a redaction, a mask); "" means the chain let the call pass
	// (continue).
	Verdict string
	// Plugin is the stage whose verdict or failure decided the call, or
	// the last one that changed it ("" when none did).
	Plugin string
	// Outcome is the side's own outcome name (relay: ok, plugin, timeout…;
	// agent: ok, mcp_error, tunnel_failure…).
	Outcome string
	// Status is the HTTP status the MCP client got (relay) or the agent
	// posted (agent).
	Status  int
	Latency time.Duration
}

// Log writes the record as one info-level "tool call" entry with fixed keys:
// tunnel, channel, request_id, session, caller, tool, verdict, plugin (only
// when one decided), outcome, status, latency_ms. Which side wrote it is the
// logger's to say (sluice adds "side"). The values a client chooses
// (session, caller, tool) are cut to logs.MaxField bytes.
func (a *ToolCallAudit) Log(l *slog.Logger) {
	if l == nil {
		return
	}
	verdict := a.Verdict
	if verdict == "" {
		verdict = Continue.String()
	}
	// Typed attributes on a stack array: no boxing on a per-call path.
	var buf [11]slog.Attr
	attrs := append(buf[:0], slog.String("tunnel", a.Tunnel),
		slog.String("channel", a.Channel), slog.String("request_id", a.RequestID),
		slog.String("session", logs.Clip(a.SessionID, logs.MaxField)), slog.String("caller", logs.Clip(a.Caller, logs.MaxField)),
		slog.String("tool", logs.Clip(a.Tool, logs.MaxField)), slog.String("verdict", verdict))
	if a.Plugin != "" {
		attrs = append(attrs, slog.String("plugin", a.Plugin))
	}
	attrs = append(attrs, slog.String("outcome", a.Outcome), slog.Int("status", a.Status),
		slog.Float64("latency_ms", float64(a.Latency.Microseconds())/1000))
	l.LogAttrs(context.Background(), slog.LevelInfo, "tool call", attrs...)
}

// Decision gathers, over one exchange's chain outcomes, what its audit
// record names: the first stage whose verdict (respond, reject, drop) or
// failure decided the call, else the last stage that changed one of its
// messages. The zero value is ready to use.
type Decision struct {
	Plugin, Verdict string
	decided         bool
}

// Note takes one chain outcome into account.
func (d *Decision) Note(o Outcome) {
	switch {
	case d.decided:
	case o.Stage != "":
		d.decided, d.Plugin, d.Verdict = true, o.Stage, o.Action.String()
		if o.Failed {
			d.Verdict = "failed"
		}
	case o.Changed != "":
		d.Plugin, d.Verdict = o.Changed, Replace.String()
	}
}
