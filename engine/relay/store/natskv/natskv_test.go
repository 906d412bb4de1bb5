package natskv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicemcp/sluice/engine/relay/store"
	"github.com/sluicemcp/sluice/engine/relay/store/natskv"
	"github.com/sluicemcp/sluice/engine/relay/store/storetest"
)

// startServer runs an embedded JetStream server on a loopback port.
func startServer(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// openStore connects to srv and opens the store in bucket.
func openStore(t *testing.T, srv *server.Server, bucket string) *natskv.Store {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := natskv.Open(ctx, js, natskv.Options{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSuite(t *testing.T) {
	srv := startServer(t)
	n := 0
	buckets := map[store.Store]string{}
	storetest.Run(t, storetest.Suite{
		Open: func(t *testing.T) store.Store {
			n++
			b := fmt.Sprintf("suite_%d", n)
			s := openStore(t, srv, b)
			buckets[s] = b
			return s
		},
		// Another replica: its own connection to the same bucket.
		Peer: func(t *testing.T, s store.Store) store.Store { return openStore(t, srv, buckets[s]) },
		// Another process after a restart: a new connection.
		Reopen: func(t *testing.T, s store.Store) store.Store {
			_ = s.Close()
			n := openStore(t, srv, buckets[s])
			buckets[n] = buckets[s]
			return n
		},
	})
}
