package httpbinding

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// TestResumeClosedStream: a server that ends a POST's event stream after a
// priming event (SSE polling, SEP-1699) gets a GET with Last-Event-ID in the
// same session, and the binding delivers what the resumed stream carries.
func TestResumeClosedStream(t *testing.T) {
	var gets atomic.Int64
	var lastID, session atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		switch r.Method {
		case http.MethodPost:
			w.WriteHeader(200)
			fmt.Fprint(w, "id: ev-1\nretry: 5\ndata: \n\n")
		case http.MethodGet:
			gets.Add(1)
			lastID.Store(r.Header.Get("Last-Event-ID"))
			session.Store(r.Header.Get("Mcp-Session-Id"))
			w.WriteHeader(200)
			fmt.Fprint(w, "id: ev-2\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n")
			fmt.Fprint(w, "id: ev-3\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"ok\":true}}\n\n")
		}
	}))
	defer srv.Close()
	b, err := New(Config{URL: srv.URL}, Options{Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	err = b.Do(context.Background(), &binding.Request{Kind: binding.KindJSONRPC,
		Header: http.Header{"Mcp-Session-Id": {"sess-9"}},
		Body:   json.RawMessage(`{"jsonrpc":"2.0","id":7,"method":"tools/call"}`), ID: json.RawMessage(`7`)},
		func(r *binding.Reply) error {
			got = append(got, fmt.Sprintf("%v %s", r.Final, r.Body))
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1] != `true {"jsonrpc":"2.0","id":7,"result":{"ok":true}}` {
		t.Fatalf("replies %q", got)
	}
	if gets.Load() != 1 || lastID.Load() != "ev-1" || session.Load() != "sess-9" {
		t.Fatalf("resumption GET: %d, Last-Event-ID %v, session %v", gets.Load(), lastID.Load(), session.Load())
	}
}

// TestResumeRefused: a server that will not resume (405) leaves the binding
// with the transport_closed failure it had.
func TestResumeRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fmt.Fprint(w, "id: ev-1\ndata: \n\n")
	}))
	defer srv.Close()
	b, _ := New(Config{URL: srv.URL}, Options{Logger: discard()})
	err := b.Do(context.Background(), &binding.Request{Kind: binding.KindJSONRPC,
		Header: http.Header{"Mcp-Session-Id": {"s"}},
		Body:   json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`), ID: json.RawMessage(`1`)},
		func(*binding.Reply) error { return nil })
	var be *binding.Error
	if !errors.As(err, &be) || be.Source != wire.SourceTransportClosed {
		t.Fatalf("err = %v, want transport_closed", err)
	}
}

// TestEmptyStream: a server that answers with an event stream and closes it
// without one event (the go-sdk server does this for test_reconnection on an
// older protocol version) is passed on as it came, an empty 200 stream,
// when the MCP client takes streams; otherwise it stays a transport_closed
// failure.
func TestEmptyStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Mcp-Session-Id", "s")
		w.WriteHeader(200)
	}))
	defer srv.Close()
	b, _ := New(Config{URL: srv.URL}, Options{Logger: discard()})
	for _, tc := range []struct {
		accept string
		empty  bool
	}{
		{"application/json, text/event-stream", true},
		{"text/event-stream;q=0.5", true},
		{"application/json", false},
		{"", false},
	} {
		var replies []*binding.Reply
		h := http.Header{"Mcp-Session-Id": {"s"}}
		if tc.accept != "" {
			h.Set("Accept", tc.accept)
		}
		err := b.Do(context.Background(), &binding.Request{Kind: binding.KindJSONRPC, Header: h,
			Body: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`), ID: json.RawMessage(`1`)},
			func(r *binding.Reply) error { replies = append(replies, r); return nil })
		if !tc.empty {
			var be *binding.Error
			if !errors.As(err, &be) || be.Source != wire.SourceTransportClosed || len(replies) != 0 {
				t.Errorf("Accept %q: err = %v, %d replies; want transport_closed", tc.accept, err, len(replies))
			}
			continue
		}
		if err != nil || len(replies) != 1 {
			t.Fatalf("Accept %q: err = %v, %d replies", tc.accept, err, len(replies))
		}
		r := replies[0]
		if !r.Final || r.Status != 200 || len(r.Body) != 0 || r.Header.Get("Content-Type") != "text/event-stream" {
			t.Errorf("Accept %q: reply %+v, want a final empty 200 event stream", tc.accept, r)
		}
	}
}
