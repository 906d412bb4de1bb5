package relay

import (
	"context"
	"sync"
	"testing"
	"time"
)

// lossyCluster loses the first Call (it waits for its context to end) and
// answers the others; it records each Call's time budget.
type lossyCluster struct {
	Cluster // only Call is used
	mu      sync.Mutex
	budgets []time.Duration
}

func (c *lossyCluster) Call(ctx context.Context, _ string, _ []byte) ([]byte, error) {
	dl, _ := ctx.Deadline()
	c.mu.Lock()
	c.budgets = append(c.budgets, time.Until(dl))
	n := len(c.budgets)
	c.mu.Unlock()
	if n == 1 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return encodeStatuses([]int{200}), nil
}

// TestClaimsAndDeliveriesRetrySoon: a claim holds up a poll's answer and a
// delivery its agent's POST of results; one whose request was lost (sent to
// a replica the moment it died) is sent again after firstAttemptTimeout,
// not after clusterAttemptTimeout, and the next try has twice the time.
func TestClaimsAndDeliveriesRetrySoon(t *testing.T) {
	for _, op := range []string{opClaim, opDeliver} {
		t.Run(op, func(t *testing.T) {
			cl := &lossyCluster{}
			r := &Relay{cl: cl}
			sts, err := r.callPeerBatch("replica", peerMsg{Op: op, Requests: []string{"r"}}, 1)
			if err != nil || len(sts) != 1 || sts[0] != 200 {
				t.Fatalf("call = %v, %v; want [200] after a retry", sts, err)
			}
			if len(cl.budgets) != 2 {
				t.Fatalf("%d tries, want 2", len(cl.budgets))
			}
			if b := cl.budgets[0]; b > firstAttemptTimeout {
				t.Errorf("first try had %s, want at most %s", b, firstAttemptTimeout)
			}
			if b := cl.budgets[1]; b > 2*firstAttemptTimeout || b <= firstAttemptTimeout {
				t.Errorf("second try had %s, want up to %s", b, 2*firstAttemptTimeout)
			}
		})
	}
}
