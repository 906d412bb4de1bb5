package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// Response batching (the wire.ExtResponseBatch extension; RATIONALE.md).
//
// Under load most of the agent's and the relay's CPU went to HTTP exchanges,
// and a response POST per command was half of the agent's. When the relay
// advertises the extension, final responses are coalesced: one POST is in
// flight at a time, and whatever finishes meanwhile waits and travels in the
// next one. A lone response goes out at once on the standard endpoint, so
// this adds no latency at low load; notifications are never batched (their
// retry rules forbid resending what the relay may already have).
const (
	// maxBatchBytes bounds the payloads of one batch POST.
	maxBatchBytes = 256 << 10
	// maxBatchItemBytes: larger responses are always posted alone.
	maxBatchItemBytes = 64 << 10
	// batchPostTimeout bounds one batch POST; waiting commands still give up
	// at their own deadline.
	batchPostTimeout = 30 * time.Second
	// batchPause is how long batching stays off after a relay that advertised
	// the extension did not know its endpoint (mixed versions behind one
	// address), whatever later answers advertise.
	batchPause = time.Minute
)

// batcher holds the final responses waiting for the batch POST in flight.
type batcher struct {
	mu      sync.Mutex
	queue   []*batchItem
	sending bool // a goroutine is draining the queue
}

type batchItem struct {
	shard   string
	payload []byte
	done    chan batchResult // buffered: the sender never blocks on it
}

// batchResult settles one item. tried: a POST carrying it was made, and err
// (nil: the command is done) is its outcome, retryable or not as retry says.
// !tried: nothing was sent for it; post it on its own.
type batchResult struct {
	tried bool
	retry bool
	err   error
}

// batchable reports whether a final response may go through the batcher.
func (a *Agent) batchable(shard string, payload []byte) bool {
	return a.batchOK.Load() && len(payload) <= maxBatchItemBytes && shard != "" && !strings.Contains(shard, ",")
}

// setBatchOK records whether the relay's answer h advertises the extension.
func (a *Agent) setBatchOK(h http.Header) {
	ok := !a.cfg.NoResponseBatch && wire.HasExtension(h.Get(wire.HeaderExtensions), wire.ExtResponseBatch) &&
		time.Now().UnixNano() >= a.batchOffUntil.Load()
	if a.batchOK.Swap(ok) != ok {
		a.log.Debug("relay response batching", "enabled", ok)
	}
}

// submitBatch queues one final response and waits until a POST settled it
// or ctx ends. If no POST is in flight, the caller sends the queue (its own
// response included) itself, and leaves whatever queued meanwhile to a
// drainer goroutine.
func (a *Agent) submitBatch(ctx context.Context, shard string, payload []byte) (batchResult, error) {
	it := &batchItem{shard: shard, payload: payload, done: make(chan batchResult, 1)}
	b := &a.batch
	b.mu.Lock()
	b.queue = append(b.queue, it)
	if !b.sending {
		b.sending = true
		if a.sendNext() {
			go a.drainBatches()
		}
	} else {
		b.mu.Unlock()
	}
	select {
	case r := <-it.done:
		return r, nil
	case <-ctx.Done():
		return batchResult{}, ctx.Err()
	}
}

// drainBatches sends the queue, a batch at a time, until it is empty.
func (a *Agent) drainBatches() {
	for {
		a.batch.mu.Lock()
		if !a.sendNext() {
			return
		}
	}
}

// sendNext takes the next batch off the queue (with batch.mu held, which it
// releases) and sends it. It reports whether more is queued; when nothing
// is, it has cleared sending.
func (a *Agent) sendNext() bool {
	b := &a.batch
	n, size := 0, 0
	for n < len(b.queue) && n < wire.MaxBatchItems && (n == 0 || size+len(b.queue[n].payload) <= maxBatchBytes) {
		size += len(b.queue[n].payload)
		n++
	}
	if n == 0 {
		b.sending = false
		b.mu.Unlock()
		return false
	}
	items := make([]*batchItem, n)
	copy(items, b.queue)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:]) // drop the sent items' payloads
	b.queue = b.queue[:rest]
	b.mu.Unlock()
	a.sendBatch(items, size)
	b.mu.Lock()
	more := len(b.queue) > 0
	if !more {
		b.sending = false
	}
	b.mu.Unlock()
	return more
}

// sendBatch makes one POST for items and settles each of them.
func (a *Agent) sendBatch(items []*batchItem, size int) {
	ctx, cancel := context.WithTimeout(a.postCtx, batchPostTimeout)
	defer cancel()
	if len(items) == 1 {
		a.m.posts[postSingle].Inc()
		retry, err := a.postOnce(ctx, items[0].shard, items[0].payload, true)
		items[0].done <- batchResult{tried: true, retry: retry, err: err}
		return
	}
	a.m.posts[postBatch].Inc()
	a.m.batched.Add(float64(len(items)))
	body := make([]byte, 0, size+len(items)+16)
	body = append(body, `{"responses":[`...)
	var tokens strings.Builder
	for i, it := range items {
		if i > 0 {
			body = append(body, ',')
			tokens.WriteByte(',')
		}
		body = append(body, it.payload...)
		tokens.WriteString(it.shard)
	}
	body = append(body, "]}"...)
	statuses, resp, err := a.postBatch(ctx, tokens.String(), body, len(items))
	for i, it := range items {
		var r batchResult
		switch {
		case statuses != nil:
			r.tried = true
			r.retry, r.err = a.classify(statuses[i], nil, true)
		case resp == nil || err != nil: // transport error or unreadable answer
			r = batchResult{tried: true, retry: true, err: err}
		case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed ||
			resp.StatusCode == http.StatusNotImplemented:
			// The relay does not know the endpoint after all (another relay
			// behind the same address): stop batching, post these alone.
			if i == 0 {
				a.log.Warn("relay advertised response batches but does not take them: posting responses one by one",
					"status", resp.StatusCode, "retry_in", batchPause)
				a.batchOffUntil.Store(time.Now().Add(batchPause).UnixNano())
				a.batchOK.Store(false)
			}
		case resp.StatusCode == http.StatusRequestEntityTooLarge || resp.StatusCode == http.StatusBadRequest:
			// The batch as a whole was refused: each response on its own
			// gets its own answer.
		default:
			r.tried = true
			r.retry, r.err = a.classify(resp.StatusCode, resp.Header, true)
		}
		it.done <- r
	}
}

// postBatch POSTs one batch. It returns the per-item statuses of a 200
// answer; otherwise the answer (its body closed) or the error.
func (a *Agent) postBatch(ctx context.Context, tokens string, body []byte, n int) ([]int, *http.Response, error) {
	resp, err := a.postRaw(ctx, a.batchURL, tokens, body)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, resp, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, resp, err
	}
	st, err := wire.DecodeBatchStatuses(b, n)
	if err != nil {
		return nil, resp, errors.Join(errBadBatchAnswer, err)
	}
	return st, resp, nil
}

var errBadBatchAnswer = errors.New("relay's batch answer is malformed")
