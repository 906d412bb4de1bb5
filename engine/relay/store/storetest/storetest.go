// Package storetest is the behaviour every store.Store must show, as one
// test suite each backend runs against itself (memory, filestore, natskv).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/relay/store"
)

// Suite opens stores of one backend.
type Suite struct {
	// Open returns a fresh, empty store; the test closes it.
	Open func(t *testing.T) store.Store
	// Peer, when set, returns a second handle on the same data as s, as
	// another replica would open it (the test closes it).
	Peer func(t *testing.T, s store.Store) store.Store
	// Reopen, when set, closes s and opens its data again, as a restarted
	// relay would.
	Reopen func(t *testing.T, s store.Store) store.Store
}

// Run runs the suite.
func Run(t *testing.T, s Suite) {
	t.Run("CRUD", func(t *testing.T) { testCRUD(t, s.Open(t)) })
	t.Run("InvalidKeys", func(t *testing.T) { testInvalidKeys(t, s.Open(t)) })
	t.Run("Watch", func(t *testing.T) {
		st := s.Open(t)
		testWatch(t, st, st)
	})
	t.Run("ConcurrentCreate", func(t *testing.T) { testConcurrentCreate(t, s.Open(t)) })
	if s.Peer != nil {
		t.Run("WatchPeer", func(t *testing.T) {
			st := s.Open(t)
			testWatch(t, st, s.Peer(t, st))
		})
	}
	if s.Reopen != nil {
		t.Run("Reopen", func(t *testing.T) { testReopen(t, s) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func testCRUD(t *testing.T, st store.Store) {
	c := ctx(t)
	if _, err := st.Get(c, "tunnel.a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
	r1, err := st.Create(c, "tunnel.a", []byte(`{"n":1}`))
	if err != nil || r1 == 0 {
		t.Fatalf("create: rev %d, %v", r1, err)
	}
	if _, err := st.Create(c, "tunnel.a", []byte(`{"n":9}`)); !errors.Is(err, store.ErrExists) {
		t.Fatalf("create twice: %v, want ErrExists", err)
	}
	got, err := st.Get(c, "tunnel.a")
	if err != nil || string(got.Value) != `{"n":1}` || got.Revision != r1 || got.Key != "tunnel.a" {
		t.Fatalf("get: %+v %v", got, err)
	}
	r2, err := st.Update(c, "tunnel.a", []byte(`{"n":2}`), r1)
	if err != nil || r2 <= r1 {
		t.Fatalf("update: rev %d after %d, %v", r2, r1, err)
	}
	if _, err := st.Update(c, "tunnel.a", []byte(`{"n":3}`), r1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("update with a stale revision: %v, want ErrConflict", err)
	}
	if got, _ := st.Get(c, "tunnel.a"); string(got.Value) != `{"n":2}` {
		t.Fatalf("a refused update changed the record: %s", got.Value)
	}
	if _, err := st.Update(c, "tunnel.b", []byte(`{}`), 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update missing: %v, want ErrNotFound", err)
	}
	if err := st.Delete(c, "tunnel.a"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := st.Get(c, "tunnel.a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get deleted: %v, want ErrNotFound", err)
	}
	if err := st.Delete(c, "tunnel.a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: %v, want ErrNotFound", err)
	}
	// A deleted key can be created again.
	r3, err := st.Create(c, "tunnel.a", []byte(`{"n":4}`))
	if err != nil || r3 <= r2 {
		t.Fatalf("create after delete: rev %d, %v", r3, err)
	}
}

func testInvalidKeys(t *testing.T, st store.Store) {
	c := ctx(t)
	for _, k := range []string{"", "a..b", ".a", "a.", "a b", "a*", "a>", "ü"} {
		if _, err := st.Create(c, k, []byte(`{}`)); err == nil || errors.Is(err, store.ErrExists) {
			t.Errorf("create %q: %v, want a key error", k, err)
		}
	}
}

// testWatch checks that w's Watch sees what exists and then every change
// made through st, in order.
func testWatch(t *testing.T, st, w store.Store) {
	c := ctx(t)
	if _, err := st.Create(c, "key.before", []byte(`{"v":0}`)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []store.Change
	got := make(chan struct{}, 100)
	wctx, cancel := context.WithCancel(c)
	defer cancel()
	initial, err := w.Watch(wctx, func(ch store.Change) {
		mu.Lock()
		seen = append(seen, ch)
		mu.Unlock()
		got <- struct{}{}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(initial) != 1 || initial[0].Key != "key.before" || string(initial[0].Value) != `{"v":0}` {
		t.Fatalf("initial records: %+v", initial)
	}
	r1, err := st.Create(c, "key.one", []byte(`{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(c, "key.one", []byte(`{"v":2}`), r1); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(c, "key.before"); err != nil {
		t.Fatal(err)
	}
	// Every change arrives, in revision order; a backend may coalesce
	// quick changes of one key into its latest value (JetStream's watch
	// does after it resumes), never reorder them or invent one.
	complete := func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := len(seen)
		return n > 0 && seen[n-1].Key == "key.before" && seen[n-1].Deleted
	}
	deadline := time.After(5 * time.Second)
	for !complete() {
		select {
		case <-got:
		case <-deadline:
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("watch did not see the changes within 5s: %+v", seen)
		}
	}
	mu.Lock()
	var got3 []string
	for i, ch := range seen {
		got3 = append(got3, fmt.Sprintf("%s %s %v", ch.Key, ch.Value, ch.Deleted))
		if i > 0 && ch.Revision <= seen[i-1].Revision {
			t.Fatalf("change %d: revision %d not after %d", i, ch.Revision, seen[i-1].Revision)
		}
	}
	every := []string{`key.one {"v":1} false`, `key.one {"v":2} false`, "key.before  true"}
	coalesced := every[1:]
	if !slices.Equal(got3, every) && !slices.Equal(got3, coalesced) {
		t.Fatalf("watch saw %q, want %q (or, coalesced, %q)", got3, every, coalesced)
	}
	mu.Unlock()
	cancel()
	for len(got) > 0 { // signals of changes already counted above
		<-got
	}
	// After the watch's context ends, nothing more is delivered.
	time.Sleep(50 * time.Millisecond)
	if _, err := st.Create(c, "key.after", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
		t.Fatal("a change was delivered after the watch ended")
	case <-time.After(200 * time.Millisecond):
	}
}

// testConcurrentCreate: of many writers creating one key, exactly one wins.
func testConcurrentCreate(t *testing.T, st store.Store) {
	c := ctx(t)
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, exists := 0, 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.Create(c, "meta.bootstrap", []byte(fmt.Sprintf(`{"w":%d}`, i)))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, store.ErrExists):
				exists++
			default:
				t.Errorf("create: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || exists != n-1 {
		t.Fatalf("%d creates won and %d saw ErrExists, want 1 and %d", wins, exists, n-1)
	}
}

func testReopen(t *testing.T, s Suite) {
	c := ctx(t)
	st := s.Open(t)
	r, err := st.Create(c, "tunnel.x", []byte(`{"name":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(c, "tunnel.y", []byte(`{"name":"y"}`)); err != nil {
		t.Fatal(err)
	}
	r2, err := st.Update(c, "tunnel.x", []byte(`{"name":"x2"}`), r)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(c, "tunnel.y"); err != nil {
		t.Fatal(err)
	}
	st = s.Reopen(t, st)
	got, err := st.Get(c, "tunnel.x")
	if err != nil || string(got.Value) != `{"name":"x2"}` || got.Revision != r2 {
		t.Fatalf("after reopen: %+v %v (want revision %d)", got, err, r2)
	}
	if _, err := st.Get(c, "tunnel.y"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted record after reopen: %v", err)
	}
	r3, err := st.Create(c, "tunnel.z", []byte(`{}`))
	if err != nil || r3 <= r2 {
		t.Fatalf("revision after reopen: %d, want > %d (%v)", r3, r2, err)
	}
	if _, err := st.Update(c, "tunnel.x", []byte(`{}`), r2); err != nil {
		t.Fatalf("update with the revision from before the restart: %v", err)
	}
}
