package store

import (
	"cmp"
	"context"
	"iter"
	"maps"
	"slices"
	"sync"
)

// Journal makes a Memory store durable (filestore is one). Append is
// called under the store's lock, one change at a time, before the change
// becomes visible; all iterates over the records as they are before c (for
// a journal that rewrites itself). An error refuses the change: the caller
// gets it and nothing changes.
type Journal interface {
	Append(c Change, all iter.Seq[Record]) error
}

// Memory is a Store held in memory, optionally made durable by a Journal.
// Watchers are told about changes in process. Create one with NewMemory or
// NewJournaled.
type Memory struct {
	mu       sync.Mutex
	recs     map[string]Record
	rev      uint64
	journal  Journal
	watchers map[*watcher]struct{}
	closed   bool
}

// Interface guards
var _ Store = (*Memory)(nil)

// NewMemory returns an empty store that keeps nothing across restarts.
func NewMemory() *Memory { return NewJournaled(nil, 0, nil) }

// NewJournaled returns a store holding recs, whose last revision was rev,
// that hands every change to j (nil: none) before applying it.
func NewJournaled(recs []Record, rev uint64, j Journal) *Memory {
	m := &Memory{recs: make(map[string]Record, len(recs)), rev: rev, journal: j, watchers: make(map[*watcher]struct{})}
	for _, r := range recs {
		m.recs[r.Key] = r
		m.rev = max(m.rev, r.Revision)
	}
	return m
}

// Revision returns the store's last revision.
func (m *Memory) Revision() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev
}

// Watch implements Store.
func (m *Memory) Watch(ctx context.Context, apply func(Change)) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	w := &watcher{apply: apply, wake: make(chan struct{}, 1), done: make(chan struct{})}
	m.watchers[w] = struct{}{}
	go w.run(ctx, func() {
		m.mu.Lock()
		delete(m.watchers, w)
		m.mu.Unlock()
	})
	return m.sortedLocked(), nil
}

func (m *Memory) sortedLocked() []Record {
	out := slices.Collect(maps.Values(m.recs))
	slices.SortFunc(out, func(a, b Record) int { return cmp.Compare(a.Revision, b.Revision) })
	return out
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key string) (Record, error) {
	if err := CheckKey(key); err != nil {
		return Record{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Record{}, ErrClosed
	}
	r, ok := m.recs[key]
	if !ok {
		return Record{}, ErrNotFound
	}
	return r, nil
}

// Create implements Store.
func (m *Memory) Create(_ context.Context, key string, value []byte) (uint64, error) {
	return m.change(key, func(cur Record, found bool) error {
		if found {
			return ErrExists
		}
		return nil
	}, value, false)
}

// Update implements Store.
func (m *Memory) Update(_ context.Context, key string, value []byte, revision uint64) (uint64, error) {
	return m.change(key, func(cur Record, found bool) error {
		switch {
		case !found:
			return ErrNotFound
		case cur.Revision != revision:
			return ErrConflict
		}
		return nil
	}, value, false)
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, key string) error {
	_, err := m.change(key, func(_ Record, found bool) error {
		if !found {
			return ErrNotFound
		}
		return nil
	}, nil, true)
	return err
}

// change checks the current record with ok, journals the change and makes
// it visible.
func (m *Memory) change(key string, ok func(Record, bool) error, value []byte, del bool) (uint64, error) {
	if err := CheckKey(key); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	cur, found := m.recs[key]
	if err := ok(cur, found); err != nil {
		return 0, err
	}
	c := Change{Record: Record{Key: key, Value: slices.Clone(value), Revision: m.rev + 1}, Deleted: del}
	if del {
		c.Value = nil
	}
	if m.journal != nil {
		if err := m.journal.Append(c, m.allLocked()); err != nil {
			return 0, err
		}
	}
	m.rev++
	if del {
		delete(m.recs, key)
	} else {
		m.recs[key] = c.Record
	}
	for w := range m.watchers {
		w.push(c)
	}
	return c.Revision, nil
}

func (m *Memory) allLocked() iter.Seq[Record] {
	return func(yield func(Record) bool) {
		for _, r := range m.recs {
			if !yield(r) {
				return
			}
		}
	}
}

// Close implements Store: watchers stop.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	for w := range m.watchers {
		w.stop()
	}
	return nil
}

// watcher delivers one Watch's changes in order from its own goroutine; the
// store appends to its queue under the store's lock and never waits for it.
type watcher struct {
	apply func(Change)
	mu    sync.Mutex
	queue []Change
	wake  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func (w *watcher) push(c Change) {
	w.mu.Lock()
	w.queue = append(w.queue, c)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) stop() { w.once.Do(func() { close(w.done) }) }

func (w *watcher) run(ctx context.Context, unregister func()) {
	defer unregister()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.done:
			return
		case <-w.wake:
		}
		w.mu.Lock()
		q := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, c := range q {
			if ctx.Err() != nil {
				return
			}
			w.apply(c)
		}
	}
}
