package relay

import (
	"net/http"
	"time"

	"github.com/sluicemcp/sluice/engine"
)

// toolAudit is what the relay remembers of one tools/call for its audit
// record (Options.Audit).
type toolAudit struct {
	caller   string
	tool     string
	w        *statusRecorder
	decision engine.Decision // what the record names
}

// decided takes one chain outcome into the record.
func (a *toolAudit) decided(o engine.Outcome) {
	if a != nil {
		a.decision.Note(o)
	}
}

// auditToolCall starts the audit of e when auditing is on and e is a
// tools/call request. It returns the writer to answer through, which
// records the status the client gets.
func (r *Relay) auditToolCall(w http.ResponseWriter, e *exchange, kind msgKind, caller, tool string) http.ResponseWriter {
	if r.audit == nil || kind != kindRequest || e.method != "tools/call" {
		return w
	}
	rec := &statusRecorder{ResponseWriter: w}
	e.audit = &toolAudit{caller: caller, tool: tool, w: rec}
	return rec
}

// finish counts the exchange's outcome and writes its audit record
// (engine.ToolCallAudit): tunnel, channel, request id, session, caller (the
// client-key name or verified token subject; empty in transparent oauth and
// public mode), tool, verdict, deciding plugin, outcome, status and
// latency. Never arguments or results.
func (r *Relay) finish(e *exchange, outcome string, start time.Time) {
	r.met.request(e.t.id, outcome, start)
	a := e.audit
	if a == nil {
		return
	}
	rec := engine.ToolCallAudit{Tunnel: e.t.id, Channel: e.p.cmd.Channel,
		RequestID: e.p.cmd.RequestID, SessionID: e.sessionID, Caller: a.caller, Tool: a.tool,
		Verdict: a.decision.Verdict, Plugin: a.decision.Plugin, Outcome: outcome, Status: a.w.status, Latency: time.Since(start)}
	rec.Log(r.audit)
}

// statusRecorder remembers the status written to the client.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
