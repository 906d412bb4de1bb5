package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/sluicemcp/sluice/engine/wire"
)

// Poll retry policy (WIRE.md "Retries").
const (
	pollBackoffMin   = 200 * time.Millisecond
	pollBackoffMax   = 10 * time.Second
	keyRejectedDelay = 30 * time.Second
	maxPollBody      = 64 << 20
)

// pollError classifies a failed poll for metrics, readiness and backoff.
type pollError struct {
	kind       string // commands_poll_errors_total error_kind
	status     int
	retryAfter time.Duration
	err        error
	reason     string // the relay's error message on 401/403, sanitized
}

func (e *pollError) Error() string {
	if e.err != nil {
		return "poll: " + e.kind + ": " + e.err.Error()
	}
	return "poll: relay answered " + strconv.Itoa(e.status)
}

func (e *pollError) Unwrap() error { return e.err }

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// pollLoop keeps one poll outstanding whenever the buffer has room, until ctx
// ends.
func (a *Agent) pollLoop(ctx context.Context) {
	a.fetchMetadata(ctx)
	failures := 0
	rejected := false
	for ctx.Err() == nil {
		free := a.waitRoom(ctx)
		if free == 0 {
			return
		}
		err := a.pollOnce(ctx, min(free, wire.MaxPollLimit))
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures = 0
			if rejected {
				a.log.Info("relay accepts the runtime key again")
				rejected = false
			}
			continue
		}
		var pe *pollError
		if !errors.As(err, &pe) {
			pe = &pollError{kind: "unknown", err: err}
		}
		a.m.pollErrors.WithLabelValues(pe.kind).Inc()
		var delay time.Duration
		if pe.status == http.StatusUnauthorized || pe.status == http.StatusForbidden {
			if !rejected {
				a.log.Error("relay rejected the runtime key: an operator must fix control-plane.api-key or the tunnel id; polling slowly",
					"status", pe.status, "reason", pe.reason)
				rejected = true
			}
			a.ready.setRejected(pe.reason)
			delay = keyRejectedDelay
		} else {
			a.ready.setRelay(relayUnreachable)
			delay = pollBackoff(failures)
			failures++
			delay = max(delay, min(pe.retryAfter, maxRetryAfter))
			lvl := "poll failed"
			if failures == 1 || failures%20 == 0 {
				a.log.Warn(lvl, "err", pe, "retry_in", delay.Round(time.Millisecond))
			} else {
				a.log.Debug(lvl, "err", pe, "retry_in", delay.Round(time.Millisecond))
			}
		}
		if sleepCtx(ctx, time.Time{}, delay) != nil {
			return
		}
	}
}

// pollBackoff is the exponential backoff with full jitter in its upper half
// after n consecutive failures.
func pollBackoff(n int) time.Duration {
	d := pollBackoffMax
	if n < 16 {
		d = min(pollBackoffMin<<n, pollBackoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

// pollOnce makes one long-poll and enqueues what it returns.
func (a *Agent) pollOnce(ctx context.Context, limit int) error {
	u := a.pollURL + "?limit=" + strconv.Itoa(limit) + "&timeout_ms=" + strconv.FormatInt(a.cfg.PollTimeout.Milliseconds(), 10)
	pctx, cancel := context.WithTimeout(ctx, a.cfg.PollTimeout+PollGuardrail)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, u, nil)
	if err != nil {
		return &pollError{kind: "internal", err: err}
	}
	var offered int
	req.Header, offered = a.pollHeader()
	offeredCaller := offered&offerCaller != 0
	resp, err := a.client.Do(req)
	receipt := time.Now() // one monotonic receipt time, before decoding the body
	if err != nil {
		return &pollError{kind: "network", err: err}
	}
	defer resp.Body.Close()
	switch st := resp.StatusCode; {
	case st == http.StatusNoContent:
		a.setBatchOK(resp.Header)
		a.setStreamOK(resp.Header)
		a.setCallerOK(resp.Header)
		a.setOAuthASOK(resp.Header)
		a.ready.setRelay(relayOK)
		return nil
	case st == http.StatusOK:
		a.setBatchOK(resp.Header)
		a.setStreamOK(resp.Header)
		// A caller is believed only from the answer to a poll that offered
		// the extension, when that answer itself advertises it.
		offeredCaller = a.setCallerOK(resp.Header) && offeredCaller
		if !a.setOAuthASOK(resp.Header) {
			offered &^= offerOAuthAS
		}
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return &pollError{kind: "unauthorized", status: st, reason: rejectionReason(resp.Body)}
	case st == http.StatusTooManyRequests:
		return &pollError{kind: "rate_limited", status: st, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case st >= 500:
		return &pollError{kind: "server_error", status: st, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	default:
		return &pollError{kind: "http_status", status: st}
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<20 {
			bufPool.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxPollBody+1)); err != nil {
		return &pollError{kind: "network", err: fmt.Errorf("read body: %w", err)}
	}
	if buf.Len() > maxPollBody {
		return &pollError{kind: "decode", err: errors.New("poll body too large")}
	}
	a.ready.setRelay(relayOK)
	if len(bytes.TrimSpace(buf.Bytes())) == 0 {
		return nil
	}
	cmds, bad, err := wire.DecodePoll(buf.Bytes())
	if err != nil {
		// The relay answered; its body is broken. Keep polling.
		return &pollError{kind: "decode", err: err}
	}
	for _, b := range bad {
		// Never reinterpret a command we cannot read: log and skip it; the relay
		// times it out.
		a.log.Warn("skipping malformed command", "request_id", truncate(b.RequestID, 128), "channel", truncate(b.Channel, 64), "err", b.Err)
		a.m.outcome(outcomeSkipped)
	}
	a.screenCallers(cmds, offeredCaller)
	a.screenOAuthAS(cmds, offered&offerOAuthAS != 0)
	a.m.polled.Add(float64(len(cmds)))
	a.enqueue(cmds, receipt)
	if len(cmds) > 0 {
		// Let a worker start the command we just handed over before this
		// goroutine builds and sends the next poll: otherwise the worker
		// waits in this P's run queue for the whole next request.
		runtime.Gosched()
	}
	return nil
}

// fetchMetadata reads the tunnel's startup metadata: the first sign that the
// relay accepts the key, without waiting for a long poll to end.
func (a *Agent) fetchMetadata(ctx context.Context) {
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(mctx, http.MethodGet, a.metaURL, nil)
	if err != nil {
		return
	}
	req.Header = a.baseHeader
	resp, err := a.client.Do(req)
	if err != nil {
		a.log.Warn("relay unreachable", "err", err)
		a.ready.setRelay(relayUnreachable)
		return
	}
	defer resp.Body.Close()
	switch st := resp.StatusCode; {
	case st >= 200 && st < 300:
		a.setBatchOK(resp.Header)
		a.setStreamOK(resp.Header)
		a.setCallerOK(resp.Header)
		a.setOAuthASOK(resp.Header)
		a.ready.setRelay(relayOK)
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		reason := rejectionReason(resp.Body)
		a.log.Error("relay rejected the runtime key", "status", st, "reason", reason)
		a.ready.setRejected(reason)
	default:
		a.log.Debug("tunnel metadata unavailable", "status", st)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
}

// maxReasonLen caps the relay's message kept for readiness and logs.
const maxReasonLen = 200

// rejectionReason reads why the relay refused the key from its error body
// ({"error":{"message","code"}}): "message (code)", printable only, capped;
// "" when the body says nothing readable.
func rejectionReason(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, 8<<10))
	var e wire.APIError
	if json.Unmarshal(b, &e) != nil {
		return ""
	}
	msg := e.Error.Message
	if e.Error.Code != nil && *e.Error.Code != "" {
		msg += " (" + *e.Error.Code + ")"
	}
	msg = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, strings.TrimSpace(msg))
	if len(msg) > maxReasonLen {
		msg = strings.ToValidUTF8(msg[:maxReasonLen], "") + "…"
	}
	return msg
}
