package httpbinding

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// replyString renders a reply for comparisons.
func replyString(r *binding.Reply) string {
	return fmt.Sprintf("final=%v status=%d id=%q body=%s", r.Final, r.Status, r.EventID, r.Body)
}

// TestStreamRelaysEvents: the GET goes out with the forwarded headers
// (Last-Event-ID included) and Accept: text/event-stream; the opening, each
// message with its event id, an event that only moves the id, and the end
// come back in order. Keep-alive comments and repeated empty events do not.
func TestStreamRelaysEvents(t *testing.T) {
	var got http.Header
	var method string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, got = r.Method, r.Header.Clone()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Mcp-Session-Id", "sess-1")
		w.WriteHeader(200)
		fmt.Fprint(w, "id: p0\ndata:\n\n")                                                         // priming: an id alone
		fmt.Fprint(w, ": keepalive\n\n")                                                           // comment
		fmt.Fprint(w, "data:\n\n")                                                                 // empty, same id: nothing
		fmt.Fprint(w, "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"roots/list\"}\n\n") // a server request
		fmt.Fprint(w, "event: ping\ndata: not json\n\n")                                           // not a message
		fmt.Fprint(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n")      // the id carries over
	}))
	defer srv.Close()
	b, err := New(Config{URL: srv.URL + "/mcp"}, Options{Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	var replies []string
	err = b.Stream(context.Background(), http.Header{"Mcp-Session-Id": {"sess-1"}, "Last-Event-Id": {"ev-0"},
		"Mcp-Protocol-Version": {"2025-11-25"}, "Accept": {"application/json"}},
		func(r *binding.Reply) error {
			replies = append(replies, replyString(r))
			if len(replies) == 1 && r.Header.Get("Mcp-Session-Id") != "sess-1" {
				t.Errorf("opening headers %v", r.Header)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if method != http.MethodGet || got.Get("Accept") != "text/event-stream" || got.Get("Last-Event-Id") != "ev-0" ||
		got.Get("Mcp-Session-Id") != "sess-1" || got.Get("Mcp-Protocol-Version") != "2025-11-25" {
		t.Errorf("request %s %v", method, got)
	}
	want := []string{
		`final=false status=200 id="" body=`,
		`final=false status=200 id="p0" body=`,
		`final=false status=200 id="1" body={"jsonrpc":"2.0","id":5,"method":"roots/list"}`,
		`final=false status=200 id="1" body={"jsonrpc":"2.0","method":"notifications/message"}`,
		`final=true status=200 id="" body=`,
	}
	if strings.Join(replies, "\n") != strings.Join(want, "\n") {
		t.Fatalf("replies:\n%s\nwant\n%s", strings.Join(replies, "\n"), strings.Join(want, "\n"))
	}
}

// TestStreamRefused: a server that answers anything but an event stream
// gives one final reply with its status, and its body when it is JSON.
func TestStreamRefused(t *testing.T) {
	for _, tc := range []struct {
		status int
		ctype  string
		body   string
		want   string
	}{
		{405, "text/plain", "Method Not Allowed", `final=true status=405 id="" body=`},
		{404, "application/json", `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"session not found"}}`,
			`final=true status=404 id="" body={"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"session not found"}}`},
		{200, "application/json", `{"jsonrpc":"2.0","id":null,"result":{}}`, `final=true status=200 id="" body={"jsonrpc":"2.0","id":null,"result":{}}`},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", tc.ctype)
			w.WriteHeader(tc.status)
			fmt.Fprint(w, tc.body)
		}))
		b, _ := New(Config{URL: srv.URL}, Options{Logger: discard()})
		var replies []string
		err := b.Stream(context.Background(), http.Header{}, func(r *binding.Reply) error {
			replies = append(replies, replyString(r))
			return nil
		})
		srv.Close()
		if err != nil || len(replies) != 1 || replies[0] != tc.want {
			t.Errorf("%d: %v %q", tc.status, err, replies)
		}
	}
}

// TestStreamCancelClosesUpstream: cancelling the context closes the
// upstream GET (the server sees its client leave), and emit's error ends
// the stream with that error.
func TestStreamCancelClosesUpstream(t *testing.T) {
	left := make(chan struct{}, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				left <- struct{}{}
				return
			case <-time.After(10 * time.Millisecond):
				fmt.Fprint(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"tick\"}\n\n")
				w.(http.Flusher).Flush()
			}
		}
	}))
	defer srv.Close()
	b, _ := New(Config{URL: srv.URL}, Options{Logger: discard()})

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- b.Stream(ctx, http.Header{}, func(r *binding.Reply) error {
			if len(r.Body) > 0 {
				cancel()
			}
			return nil
		})
	}()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("a cancelled stream returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stream did not return after cancel")
	}
	select {
	case <-left:
	case <-time.After(10 * time.Second):
		t.Fatal("the server's GET stayed open")
	}

	stop := errors.New("client gone")
	err := b.Stream(context.Background(), http.Header{}, func(r *binding.Reply) error {
		if len(r.Body) > 0 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Stream = %v, want emit's error", err)
	}
}

// TestStreamFailures: an unreachable server and a malformed message are
// *binding.Errors the agent turns into tunnel failures.
func TestStreamFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b, _ := New(Config{URL: "http://" + addr + "/mcp"}, Options{Logger: discard()})
	err = b.Stream(context.Background(), http.Header{}, func(*binding.Reply) error { return nil })
	var be *binding.Error
	if !errors.As(err, &be) || be.Source != wire.SourceConnect {
		t.Fatalf("unreachable: %v", err)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fmt.Fprint(w, "data: {not json\n\n")
	}))
	defer srv.Close()
	b, _ = New(Config{URL: srv.URL}, Options{Logger: discard()})
	n := 0
	err = b.Stream(context.Background(), http.Header{}, func(*binding.Reply) error { n++; return nil })
	if !errors.As(err, &be) || be.Source != wire.SourceProtocol || n != 1 {
		t.Fatalf("malformed message: %v after %d replies", err, n)
	}
}
