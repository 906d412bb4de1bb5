package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
	"github.com/sluicemcp/sluice/sdk/rawjson"
)

// Response POST retry policy (WIRE.md "Retries").
const (
	finalTries      = 3
	notifyTries     = 3
	postBackoffBase = 100 * time.Millisecond
	maxRetryAfter   = 60 * time.Second
)

// errPostStatus is a POST answered with a status that is not retried.
type errPostStatus int

func (e errPostStatus) Error() string { return "relay answered " + strconv.Itoa(int(e)) }

// post sends one response POST for t with the retry rules of its kind. A
// final response may travel in a response batch (batch.go) when the relay
// takes them; whatever a batch could not settle is posted here on its own.
func (a *Agent) post(ctx context.Context, t *task, typ string, status int, header http.Header, body []byte, final bool) error {
	payload := encodeResponse(t.cmd.RequestID, t.cmd.Channel, typ, status, header, body)
	tries := notifyTries
	if final {
		tries = finalTries
	}
	first, lastErr := 0, error(nil)
	if final && a.batchable(t.cmd.ShardToken, payload) {
		res, err := a.submitBatch(ctx, t.cmd.ShardToken, payload)
		switch {
		case err != nil:
			return fmt.Errorf("post response: %w", err)
		case res.tried && (res.err == nil || !res.retry):
			if res.err != nil {
				return fmt.Errorf("post response: %w", res.err)
			}
			return nil
		case res.tried: // a retryable failure: it was the first try
			first, lastErr = 1, res.err
		}
	}
	for i := first; i < tries; i++ {
		if i > 0 {
			if err := sleepCtx(ctx, t.deadline, lastDelay(lastErr, i)); err != nil {
				return fmt.Errorf("post response: %w (after %w)", err, lastErr)
			}
		}
		retry, err := a.postOnce(ctx, t.cmd.ShardToken, payload, final)
		if err == nil {
			return nil
		}
		lastErr = err
		if !retry || ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("post response: %w", lastErr)
}

// retryAfterError carries a Retry-After minimum delay with a retried status.
type retryAfterError struct {
	status int
	after  time.Duration
}

func (e *retryAfterError) Error() string { return "relay answered " + strconv.Itoa(e.status) }

// lastDelay is the wait before try i (1-based retries): exponential with
// jitter, raised to a Retry-After minimum.
func lastDelay(err error, i int) time.Duration {
	d := postBackoffBase << (i - 1)
	d = d/2 + rand.N(d/2+1)
	var ra *retryAfterError
	if errors.As(err, &ra) && ra.after > d {
		d = ra.after
	}
	return d
}

// errPastDeadline: a retry would start after the command's deadline.
var errPastDeadline = errors.New("retry delay passes the command deadline")

// sleepCtx waits d unless that would pass ctx's end or deadline.
func sleepCtx(ctx context.Context, deadline time.Time, d time.Duration) error {
	if !deadline.IsZero() && time.Until(deadline) < d {
		return errPastDeadline
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return errors.New("retry delay passes the context deadline")
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// postOnce makes one POST attempt; retry says whether the failure may be
// retried under the rules of a final or a notification POST.
func (a *Agent) postOnce(ctx context.Context, shard string, payload []byte, final bool) (retry bool, err error) {
	var wrote atomic.Bool
	if !final {
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
		})
	}
	resp, err := a.postRaw(ctx, a.respURL, shard, payload)
	if err != nil {
		return final || !wrote.Load(), err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return a.classify(resp.StatusCode, resp.Header, final)
}

// postRaw POSTs body to url with the control-plane headers and the shard
// token header; the caller closes the response body.
func (a *Agent) postRaw(ctx context.Context, url, shard string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	h := make(http.Header, len(a.baseHeader)+2)
	for k, v := range a.baseHeader {
		h[k] = v
	}
	h["Content-Type"] = jsonContentType
	h[wire.HeaderShardToken] = []string{shard}
	req.Header = h
	return a.client.Do(req)
}

// classify maps the status of a response POST (or of one item of a batch)
// to its error, nil when the command is done, and whether it may be retried
// under the rules of a final or a notification POST.
func (a *Agent) classify(st int, header http.Header, final bool) (retry bool, err error) {
	switch {
	case st >= 200 && st < 300:
		return false, nil
	case st == http.StatusNotFound:
		// pending_request_not_found: already finished or timed out.
		return false, nil
	case st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable:
		e := &retryAfterError{status: st, after: min(parseRetryAfter(header.Get("Retry-After"), time.Now()), maxRetryAfter)}
		return final || st == http.StatusTooManyRequests, e
	case st == http.StatusRequestTimeout || st == http.StatusBadGateway || st == http.StatusGatewayTimeout:
		return final, errPostStatus(st)
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		a.log.Error("relay rejected a response post: check the runtime key", "status", st)
		return false, errPostStatus(st)
	default:
		return false, errPostStatus(st)
	}
}

var jsonContentType = []string{"application/json"}

// parseRetryAfter reads a Retry-After value (delay seconds or an HTTP date)
// relative to now; anything else, or a past date, is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}

// encodeResponse writes the response POST body without re-encoding the
// JSON-RPC message: body is copied as is (or null when empty). Acknowledgements
// (notify_ack, session_termination_response) carry neither resp_json nor
// resp_headers; an oauth_discovery_response carries the metadata fetch's
// headers unfiltered, an oauth_as_response the binding's selection; every
// other type keeps only the MCP response headers of
// wire.FilterResponseHeaders.
func encodeResponse(requestID, channel, typ string, status int, header http.Header, body []byte) []byte {
	ack := wire.IsAckType(typ)
	n := 96 + len(requestID) + len(channel) + len(typ) + len(body)
	for k, vs := range header {
		n += len(k) + 8
		for _, v := range vs {
			n += len(v) + 4
		}
	}
	b := make([]byte, 0, n)
	b = append(b, `{"request_id":`...)
	b = rawjson.AppendString(b, requestID)
	b = append(b, `,"channel":`...)
	b = rawjson.AppendString(b, channel)
	if !ack {
		b = append(b, `,"resp_json":`...)
		if len(bytes.TrimSpace(body)) == 0 {
			b = append(b, "null"...)
		} else {
			b = append(b, body...)
		}
		b = append(b, `,"resp_headers":`...)
		if typ == wire.RespOAuthDiscovery || typ == wire.RespOAuthAS {
			// oauth_as: the binding already kept only the authorization
			// server's headers the extension carries (Location among them).
			b = wire.AppendHeaders(b, header)
		} else {
			b = wire.AppendHeaders(b, wire.FilterResponseHeaders(header))
		}
	}
	b = append(b, `,"resp_code":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"resp_type":`...)
	b = rawjson.AppendString(b, typ)
	return append(b, '}')
}
