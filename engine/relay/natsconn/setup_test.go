package natsconn

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestSetupWaitsOutAStartingCluster(t *testing.T) {
	calls := 0
	err := Setup(context.Background(), nil, "bucket", 0, func(ctx context.Context) error {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("an attempt has no deadline")
		}
		switch calls {
		case 1:
			return nats.ErrTimeout
		case 2:
			return &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}
		case 3:
			return context.DeadlineExceeded
		case 4:
			// A replicated stream on a cluster whose servers have not all joined.
			return &jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement"}
		}
		return nil
	})
	if err != nil || calls != 5 {
		t.Fatalf("Setup: %v after %d calls, want success after 5", err, calls)
	}
}

func TestSetupGivesUpOnRealErrors(t *testing.T) {
	for name, want := range map[string]error{
		"bad request":     &jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use"},
		"no jetstream":    jetstream.ErrJetStreamNotEnabled,
		"no js (account)": jetstream.ErrJetStreamNotEnabledForAccount,
		"other":           errors.New("boom"),
	} {
		calls := 0
		err := Setup(context.Background(), nil, "stream", 0, func(context.Context) error { calls++; return want })
		if !errors.Is(err, want) || calls != 1 {
			t.Errorf("%s: Setup = %v after %d calls, want %v at once", name, err, calls, want)
		}
	}
}

func TestSetupPatienceEnds(t *testing.T) {
	calls := 0
	start := time.Now()
	err := Setup(context.Background(), nil, "stream", 1200*time.Millisecond, func(context.Context) error {
		calls++
		return nats.ErrNoResponders
	})
	if !errors.Is(err, nats.ErrNoResponders) || calls < 2 {
		t.Fatalf("Setup = %v after %d calls, want ErrNoResponders after retries", err, calls)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Setup took %s with 1.2 s of patience", d)
	}
}
