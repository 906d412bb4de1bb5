// Package natskv keeps the relay's tunnels and keys in a JetStream
// key-value bucket, so every replica on one NATS cluster shares them and
// sees each change through a watch within milliseconds (a revocation
// included).
package natskv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicemcp/sluice/engine/relay/natsconn"
	"github.com/sluicemcp/sluice/engine/relay/store"
)

// DefaultBucket is the bucket's name when Options.Bucket is empty.
const DefaultBucket = "sluice_relay"

// Options configure Open. The zero value is valid.
type Options struct {
	// Bucket is the key-value bucket (default DefaultBucket). It is created
	// when missing; an existing one is used as it is.
	Bucket string
	// Replicas is the bucket's replication factor when Open creates it
	// (default 1; 3 on a 3-node cluster keeps it through a node's loss).
	Replicas int
	// Logger receives progress while a starting cluster elects the
	// bucket's leader (nil: discard).
	Logger *slog.Logger
}

// Store is a store.Store in a JetStream key-value bucket. It does not own
// the connection: close that after Close.
type Store struct {
	kv jetstream.KeyValue
}

// Interface guards
var _ store.Store = (*Store)(nil)

// Open returns the store in opts.Bucket, creating the bucket (history 1,
// file storage) when it does not exist.
func Open(ctx context.Context, js jetstream.JetStream, opts Options) (*Store, error) {
	bucket := opts.Bucket
	if bucket == "" {
		bucket = DefaultBucket
	}
	// A cluster that was just (re)started may not have elected the
	// bucket's leader yet: look it up (or create it) until it answers.
	var kv jetstream.KeyValue
	err := natsconn.Setup(ctx, opts.Logger, "key-value bucket "+bucket, 0, func(ctx context.Context) (err error) {
		kv, err = js.KeyValue(ctx, bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket:      bucket,
				Description: "sluice relay: tunnels and keys",
				History:     1,
				Storage:     jetstream.FileStorage,
				Replicas:    max(opts.Replicas, 1),
			})
			if errors.Is(err, jetstream.ErrBucketExists) {
				// Another replica created it first.
				kv, err = js.KeyValue(ctx, bucket)
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("natskv: bucket %s: %w", bucket, err)
	}
	return &Store{kv: kv}, nil
}

// Watch implements store.Store: the bucket's current records (from its
// last value per key), then every change.
func (s *Store) Watch(ctx context.Context, apply func(store.Change)) ([]store.Record, error) {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("natskv: watch: %w", err)
	}
	var initial []store.Record
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case e, ok = <-w.Updates():
		case <-ctx.Done():
			_ = w.Stop()
			return nil, ctx.Err()
		}
		if !ok {
			return nil, errors.New("natskv: watch ended before the current records arrived")
		}
		if e == nil {
			break // the current records are all in
		}
		if c := change(e); !c.Deleted {
			initial = append(initial, c.Record)
		}
	}
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil && ctx.Err() == nil {
					apply(change(e))
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return initial, nil
}

func change(e jetstream.KeyValueEntry) store.Change {
	c := store.Change{Record: store.Record{Key: e.Key(), Revision: e.Revision()}}
	switch e.Operation() {
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		c.Deleted = true
	default:
		c.Value = e.Value()
	}
	return c
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.Record, error) {
	if err := store.CheckKey(key); err != nil {
		return store.Record{}, err
	}
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return store.Record{}, store.ErrNotFound
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("natskv: get %s: %w", key, err)
	}
	return store.Record{Key: key, Value: e.Value(), Revision: e.Revision()}, nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := store.CheckKey(key); err != nil {
		return 0, err
	}
	rev, err := s.kv.Create(ctx, key, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, store.ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("natskv: create %s: %w", key, err)
	}
	return rev, nil
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	if err := store.CheckKey(key); err != nil {
		return 0, err
	}
	rev, err := s.kv.Update(ctx, key, value, revision)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		if _, gerr := s.Get(ctx, key); errors.Is(gerr, store.ErrNotFound) {
			return 0, store.ErrNotFound
		}
		return 0, store.ErrConflict
	}
	if err != nil {
		return 0, fmt.Errorf("natskv: update %s: %w", key, err)
	}
	return rev, nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.Get(ctx, key); err != nil {
		return err
	}
	if err := s.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("natskv: delete %s: %w", key, err)
	}
	return nil
}

// Close implements store.Store. Watches end with their contexts or the
// connection.
func (s *Store) Close() error { return nil }
