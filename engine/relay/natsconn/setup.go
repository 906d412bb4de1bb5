package natsconn

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SetupPatience bounds how long Setup keeps trying: long enough for a NATS
// cluster that was just (re)started to elect the leaders of its streams and
// key-value buckets, each a raft group of its own.
const SetupPatience = 60 * time.Second

// setupAttempt bounds one try.
const setupAttempt = 5 * time.Second

// Setup runs fn (creating or looking up a JetStream stream or key-value
// bucket) until it succeeds, fails for good, or patience (SetupPatience
// when 0) runs out. JetStream answers a cluster that is still electing a
// leader with time-outs, "no responders" or a 503; those are tried again
// every half second, logged at info with what names the thing being set
// up. Any other error is returned at once.
func Setup(ctx context.Context, log *slog.Logger, what string, patience time.Duration, fn func(ctx context.Context) error) error {
	if patience == 0 {
		patience = SetupPatience
	}
	sctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(sctx, setupAttempt)
		err := fn(actx)
		acancel()
		if err == nil || !Unavailable(err) || sctx.Err() != nil {
			return err
		}
		if log != nil {
			log.Info("JetStream not ready yet, trying again", "what", what, "err", err)
		}
		select {
		case <-sctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// errNoSuitablePeers is JetStream's answer to a replicated stream's or
// bucket's creation while its cluster is still forming (not every server
// has joined the meta group yet).
const errNoSuitablePeers jetstream.ErrorCode = 10005

// Unavailable reports whether err is JetStream saying "not now" (no
// leader, no responders, a time-out, a cluster still forming) rather than
// "no".
func Unavailable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		if apiErr.ErrorCode == errNoSuitablePeers {
			return true
		}
		// "JetStream not enabled" is a 503 too, but waiting will not
		// enable it.
		return apiErr.Code == 503 && apiErr.ErrorCode != jetstream.JSErrCodeJetStreamNotEnabled &&
			apiErr.ErrorCode != jetstream.JSErrCodeJetStreamNotEnabledForAccount
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}
