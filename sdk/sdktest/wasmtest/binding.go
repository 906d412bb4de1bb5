package wasmtest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/host"
)

// LoadBinding loads a built binding plugin with a full host configuration
// (its module, limits, HTTP allow-list, commands) in a fresh runtime; both
// are closed when the test ends.
func LoadBinding(t testing.TB, bc host.BindingConfig) *host.Binding {
	t.Helper()
	if bc.Plugin.Name == "" {
		bc.Plugin.Name = "binding"
	}
	b, err := newRuntime(t).LoadBinding(context.Background(), bc)
	if err != nil {
		t.Fatalf("wasmtest: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// Call sends one JSON-RPC message (a request with id, or a notification)
// through the binding as the agent would, and returns every reply: the
// notifications the plugin streamed, then its final reply.
func Call(t testing.TB, b *host.Binding, body string, header http.Header) []*binding.Reply {
	t.Helper()
	req := &binding.Request{Kind: binding.KindJSONRPC, Header: header, Body: []byte(body)}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if p, err := peekID(req.Body); err == nil && p != nil {
		req.ID = p
	} else {
		req.Notification = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*binding.Reply
	if err := b.Do(ctx, req, func(r *binding.Reply) error { out = append(out, r); return nil }); err != nil {
		t.Fatalf("wasmtest: %v", err)
	}
	if len(out) == 0 || !out[len(out)-1].Final {
		t.Fatalf("wasmtest: no final reply")
	}
	return out
}

// peekID returns the raw id of a JSON-RPC request (nil for a notification).
func peekID(body []byte) ([]byte, error) {
	p, err := engine.PeekMessage(body)
	if err != nil {
		return nil, err
	}
	if p.Method == "" {
		return nil, nil
	}
	return p.ID, nil
}
