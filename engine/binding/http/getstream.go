package httpbinding

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// Interface guard.
var _ binding.Streamer = (*Binding)(nil)

// Stream opens the MCP server's standalone GET stream (see
// binding.Streamer). Unlike a POST's event stream, a GET stream that the
// server ends is not resumed here: the end is passed on, with the event ids
// seen so far, so the MCP client resumes it with Last-Event-ID as it would
// directly.
func (b *Binding) Stream(ctx context.Context, header http.Header, emit func(*binding.Reply) error) error {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return fmt.Errorf("http binding: build request: %w", err)
	}
	hreq.Header = b.header(header)
	hreq.Header["Accept"] = []string{"text/event-stream"}
	resp, err := b.client.Do(hreq)
	if err != nil {
		return classify(ctx, err, false)
	}
	defer resp.Body.Close()
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || mt != "text/event-stream" {
		// No stream: pass the answer on as it came (405 from a server
		// without a GET stream, 404 for a session it forgot, …).
		body, err := b.readBody(ctx, resp)
		if err != nil {
			var be *binding.Error
			if !errors.As(err, &be) || be.Source != wire.SourceProtocol {
				return err
			}
			body = nil // oversize: the status is what matters
		}
		if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || t[0] != '{' {
			body = nil
		}
		return emit(&binding.Reply{Status: resp.StatusCode, Header: resp.Header, Body: body, Final: true})
	}
	if err := emit(&binding.Reply{Status: resp.StatusCode, Header: resp.Header}); err != nil {
		return err
	}
	sr := newSSEReader(resp.Body, int(min(b.max, int64(^uint(0)>>1))))
	lastID := ""
	for {
		ev, err := sr.next()
		if err == io.EOF {
			return emit(&binding.Reply{Status: resp.StatusCode, Header: resp.Header, Final: true})
		}
		if err != nil {
			return classify(ctx, err, true)
		}
		data := bytes.TrimSpace(ev.Data)
		if ev.Type != "" && ev.Type != "message" {
			if _, perr := peekMessage(data); perr != nil {
				b.log.Debug("http binding: skipped non-message SSE event on a GET stream", "method", ev.Type)
				data = nil
			}
		}
		if len(data) > 0 {
			if _, perr := peekMessage(data); perr != nil {
				return perr
			}
		}
		if len(data) == 0 && ev.ID == lastID {
			continue // keep-alive: nothing to pass on
		}
		lastID = ev.ID
		var body []byte
		if len(data) > 0 {
			body = data
		}
		if err := emit(&binding.Reply{Status: resp.StatusCode, Header: resp.Header.Clone(), Body: body, EventID: ev.ID}); err != nil {
			return err
		}
	}
}
