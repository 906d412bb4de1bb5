package store_test

import (
	"testing"

	"github.com/sluicemcp/sluice/engine/relay/store"
	"github.com/sluicemcp/sluice/engine/relay/store/storetest"
)

func TestMemory(t *testing.T) {
	storetest.Run(t, storetest.Suite{
		Open: func(t *testing.T) store.Store {
			s := store.NewMemory()
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
		// The same instance is every handle in one process.
		Peer: func(_ *testing.T, s store.Store) store.Store { return s },
	})
}

func TestValidKey(t *testing.T) {
	for k, want := range map[string]bool{
		"tunnel.tunnel_0123": true, "key.key_ab-12": true, "a": true,
		"": false, ".": false, "a.": false, ".a": false, "a..b": false, "a b": false, "a/b": false, "a*": false,
	} {
		if got := store.ValidKey(k); got != want {
			t.Errorf("ValidKey(%q) = %v, want %v", k, got, want)
		}
	}
}
