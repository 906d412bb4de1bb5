// Package store is where the relay keeps the tunnels and keys it manages
// itself: a small, revisioned key-value interface with one implementation per
// backend (memory here, a file in relay.data-dir in filestore, JetStream
// key-value in natskv). The relay defines the documents it stores
// (engine/relay/registry.go); a store only keeps bytes under keys, numbers
// every change with a revision, and tells watchers about each change in
// order, which is how a revocation reaches every replica.
package store

import (
	"context"
	"errors"
	"fmt"
)

// Errors a Store returns; callers branch on them with errors.Is.
var (
	// ErrNotFound: no record under the key.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: Create found a record under the key already.
	ErrExists = errors.New("store: already exists")
	// ErrConflict: Update's revision is not the record's current one.
	ErrConflict = errors.New("store: revision conflict")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
)

// Record is one stored document.
type Record struct {
	// Key names the record: dot-separated tokens of [A-Za-z0-9_-]
	// ("tunnel.tunnel_0123…", "key.key_ab12…").
	Key string
	// Value is the document (the relay stores JSON objects).
	Value []byte
	// Revision increases with every change in the store; a record's
	// revision is that of its last change.
	Revision uint64
}

// Change is a record that changed. A deletion has Deleted set and no Value.
type Change struct {
	Record
	Deleted bool
}

// Store keeps records. Implementations are safe for concurrent use.
type Store interface {
	// Watch returns every current record and then calls apply with each
	// later change (its own, another process's or another replica's), in
	// revision order, from one goroutine, until ctx ends or the store is
	// closed. No change falls between the records returned and the first
	// call to apply. A backend may coalesce quick changes of one key into
	// its latest value (JetStream's watch does when it resumes), never
	// reorder or drop the latest.
	Watch(ctx context.Context, apply func(Change)) ([]Record, error)
	// Get returns the record under key, or ErrNotFound.
	Get(ctx context.Context, key string) (Record, error)
	// Create stores value under key if no record is there (ErrExists
	// otherwise) and returns the new revision.
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	// Update replaces the record under key if its revision is still
	// revision (ErrConflict otherwise, ErrNotFound if it is gone) and
	// returns the new revision.
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	// Delete removes the record under key (ErrNotFound if there is none).
	Delete(ctx context.Context, key string) error
	// Close releases the store; watchers stop.
	Close() error
}

// ValidKey reports whether key is a well-formed record key: non-empty
// dot-separated tokens of letters, digits, '_' and '-', at most 256 bytes.
// Every backend accepts exactly these (they are valid JetStream key-value
// keys too).
func ValidKey(key string) bool {
	if key == "" || len(key) > 256 {
		return false
	}
	prevDot := true
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '.':
			if prevDot {
				return false
			}
			prevDot = true
			continue
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
		prevDot = false
	}
	return !prevDot
}

// CheckKey returns an error naming key when it is not ValidKey.
func CheckKey(key string) error {
	if !ValidKey(key) {
		return fmt.Errorf("store: key %q: want dot-separated tokens of [A-Za-z0-9_-]", key)
	}
	return nil
}
