package agent

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/wire"
)

// coalesce runs n commands whose final responses all wait behind the first
// response POST: the fake relay holds that POST until the other n-1 are
// queued in the agent's batcher, so what happens next is deterministic.
func coalesce(t *testing.T, relay *fakeRelay, n int, b *fakeBinding) *Agent {
	t.Helper()
	var a *Agent
	ready := make(chan struct{})
	var held atomic.Bool
	inner := relay.postHook
	relay.postHook = func(r *wire.Response, attempt int, w http.ResponseWriter) bool {
		if held.CompareAndSwap(false, true) {
			<-ready
			enginetest.WaitFor(t, "responses to queue behind the first POST", func() bool {
				a.batch.mu.Lock()
				defer a.batch.mu.Unlock()
				return len(a.batch.queue) == n-1
			})
		}
		return inner != nil && inner(r, attempt, w)
	}
	for i := 0; i < n; i++ {
		relay.add(call(fmt.Sprintf("r%02d", i), i+1, "ping"))
	}
	if b == nil {
		b = &fakeBinding{}
	}
	a, _, _ = startAgent(t, relay, b, func(c *Config, _ *Options) {
		c.MaxConcurrent, c.MaxInflight = n, n
	})
	close(ready)
	enginetest.WaitFor(t, "every command's outcome", func() bool {
		sum := 0.0
		for _, o := range []outcome{outcomeOK, outcomeMCPError, outcomePostFailed, outcomeExpired} {
			sum += counterValue(t, a, "sluice_agent_commands_total", string(o))
		}
		return sum == float64(n)
	})
	return a
}

func TestResponseBatching(t *testing.T) {
	relay := newFakeRelay(t)
	relay.batch = true
	const n = 20
	a := coalesce(t, relay, n, nil)
	if got := counterValue(t, a, "sluice_agent_commands_total", "ok"); got != n {
		t.Errorf("ok outcomes = %v, want %d", got, n)
	}

	relay.mu.Lock()
	batches := relay.batches
	relay.mu.Unlock()
	if len(batches) != 1 || len(batches[0]) != n-1 {
		t.Fatalf("batches = %v, want one batch of the %d responses that waited", batches, n-1)
	}
	// Every command got exactly one final response, once.
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("r%02d", i)
		if got := len(relay.postsFor(id)); got != 1 {
			t.Errorf("%s: %d responses delivered, want 1", id, got)
		}
		if got := relay.attemptsFor(id); got != 1 {
			t.Errorf("%s: %d attempts, want 1", id, got)
		}
	}
	if got := counterValue(t, a, "sluice_agent_response_posts_total", "batch"); got != 1 {
		t.Errorf("batch posts = %v, want 1", got)
	}
	if got := counterValue(t, a, "sluice_agent_response_posts_total", "single"); got != 1 {
		t.Errorf("single posts = %v, want 1 (the first, alone)", got)
	}
	if got := counterValue(t, a, "sluice_agent_batched_responses_total", ""); got != n-1 {
		t.Errorf("batched responses = %v, want %d", got, n-1)
	}
}

// Each item of a batch is settled by its own status, with the rules of a
// lone final POST: 404 is done, 503 is retried alone, 400 is not retried.
func TestResponseBatchItemStatuses(t *testing.T) {
	relay := newFakeRelay(t)
	relay.batch = true
	status := map[string]int{"r03": 404, "r04": 503, "r05": 400}
	relay.postHook = func(r *wire.Response, attempt int, w http.ResponseWriter) bool {
		if st, ok := status[r.RequestID]; ok && attempt == 1 {
			w.WriteHeader(st)
			return true
		}
		return false
	}
	const n = 8
	// The three answer a little later, so they are not the lone first POST.
	slow := &fakeBinding{do: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
		if string(req.ID) == "4" || string(req.ID) == "5" || string(req.ID) == "6" {
			time.Sleep(20 * time.Millisecond)
		}
		return echo(req, emit)
	}}
	a := coalesce(t, relay, n, slow)
	relay.mu.Lock()
	batches := relay.batches
	relay.mu.Unlock()
	if len(batches) != 1 || !slices.Contains(batches[0], "r03") || !slices.Contains(batches[0], "r04") || !slices.Contains(batches[0], "r05") {
		t.Fatalf("batches = %v, want one holding r03, r04 and r05", batches)
	}
	if got := counterValue(t, a, "sluice_agent_commands_total", "post_failed"); got != 1 {
		t.Errorf("post_failed = %v, want 1 (the 400)", got)
	}
	want := map[string]int{"r00": 1, "r03": 1, "r04": 2, "r05": 1, "r06": 1}
	for id, w := range want {
		if got := relay.attemptsFor(id); got != w {
			t.Errorf("%s: %d attempts, want %d", id, got, w)
		}
	}
	if got := len(relay.postsFor("r04")); got != 1 {
		t.Errorf("r04 delivered %d times, want 1", got)
	}
}

// Whatever a batch POST could not settle is posted alone, and every command
// is answered exactly once.
func TestResponseBatchFallbacks(t *testing.T) {
	tests := []struct {
		name        string
		advertise   bool
		noBatch     bool
		batchStatus int // the batch endpoint's answer to the whole batch (0: per item)
		wantBatches int64
		wantOff     bool // batching is off afterwards
	}{
		{name: "relay without the extension", wantBatches: 0},
		{name: "turned off by config", advertise: true, noBatch: true, wantBatches: 0},
		{name: "batch answered 503", advertise: true, batchStatus: 503, wantBatches: 1},
		{name: "batch too large for the relay", advertise: true, batchStatus: 413, wantBatches: 1},
		{name: "advertised but endpoint unknown", advertise: true, batchStatus: 404, wantBatches: 1, wantOff: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			relay := newFakeRelay(t)
			relay.batch = tc.advertise
			if tc.batchStatus != 0 {
				relay.batchHook = func(_ int, w http.ResponseWriter) bool {
					w.WriteHeader(tc.batchStatus)
					return true
				}
			}
			const n = 6
			var a *Agent
			if tc.advertise && !tc.noBatch {
				a = coalesce(t, relay, n, nil)
			} else {
				for i := 0; i < n; i++ {
					relay.add(call(fmt.Sprintf("r%02d", i), i+1, "ping"))
				}
				a, _, _ = startAgent(t, relay, &fakeBinding{}, func(c *Config, _ *Options) {
					c.MaxConcurrent, c.NoResponseBatch = n, tc.noBatch
				})
				enginetest.WaitFor(t, "outcomes", func() bool { return counterValue(t, a, "sluice_agent_commands_total", "ok") == n })
			}
			if got := counterValue(t, a, "sluice_agent_commands_total", "ok"); got != n {
				t.Errorf("ok outcomes = %v, want %d", got, n)
			}
			for i := 0; i < n; i++ {
				id := fmt.Sprintf("r%02d", i)
				if got := len(relay.postsFor(id)); got != 1 {
					t.Errorf("%s delivered %d times, want 1", id, got)
				}
			}
			if got := relay.batchPOST.Load(); got != tc.wantBatches {
				t.Errorf("batch POSTs = %d, want %d", got, tc.wantBatches)
			}
			if tc.wantOff {
				// Later polls still advertise it: batching stays paused.
				polls := relay.polls.Load()
				enginetest.WaitFor(t, "two more polls", func() bool { return relay.polls.Load() >= polls+2 })
				if a.batchOK.Load() {
					t.Error("batching back on right after the relay did not know the endpoint")
				}
			}
		})
	}
}
