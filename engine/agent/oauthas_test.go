package agent

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// asBinding is a fakeBinding that also answers oauth-as requests.
type asBinding struct {
	fakeBinding
	mu   sync.Mutex
	seen []wire.ASRequest
}

func (b *asBinding) OAuthAS(_ context.Context, req *wire.ASRequest, h http.Header) (*binding.Reply, error) {
	b.mu.Lock()
	b.seen = append(b.seen, *req)
	b.mu.Unlock()
	return &binding.Reply{Status: 302, Final: true, Header: http.Header{"Location": {"https://app.example/cb?code=c"}, "Cache-Control": {"no-store"}}}, nil
}

func asCommand(id string) map[string]any {
	return map[string]any{"request_id": id, "shard_token": "shard-" + id, "command_type": "oauth_as", "channel": "main",
		"created_at": "2026-01-01T00:00:00Z", "headers": map[string][]string{},
		"oauth_as": map[string]string{"endpoint": "authorization_endpoint", "method": "GET", "query": "state=s"}}
}

// TestOAuthASCommand: an agent whose binding can reach the authorization
// server offers the oauth-as extension to a relay that advertises it and
// answers its oauth_as commands with the binding's reply (Location and all,
// as oauth_as_response); from a relay that did not advertise it the command
// is skipped unrun, and the agent never offers it there.
func TestOAuthASCommand(t *testing.T) {
	for _, advertise := range []bool{true, false} {
		relay := newFakeRelay(t)
		b := &asBinding{}
		if advertise {
			relay.extra = []string{wire.ExtOAuthAS}
		}
		startAgent(t, relay, b, nil)
		waitPolls(t, relay, 2)
		relay.add(asCommand("as1"), call("c2", 2, "ping"))
		relay.finalFor("c2")
		if advertise {
			p := relay.finalFor("as1")
			if p.resp.RespType != wire.RespOAuthAS || p.resp.RespCode != 302 || p.resp.RespHeaders["Location"][0] != "https://app.example/cb?code=c" {
				t.Errorf("answer %s", p.raw)
			}
			b.mu.Lock()
			if len(b.seen) != 1 || b.seen[0].Query != "state=s" {
				t.Errorf("binding saw %+v", b.seen)
			}
			b.mu.Unlock()
		} else {
			time.Sleep(100 * time.Millisecond)
			if n := len(relay.postsFor("as1")); n != 0 {
				t.Errorf("a command of an extension the relay never advertised was answered (%d posts)", n)
			}
			b.mu.Lock()
			if len(b.seen) != 0 {
				t.Errorf("the binding was asked: %+v", b.seen)
			}
			b.mu.Unlock()
		}
		relay.mu.Lock()
		for i, h := range relay.pollHdrs {
			offered := wire.HasExtension(h.Get(wire.HeaderExtensions), wire.ExtOAuthAS)
			if offered && !advertise || !offered && advertise && i > 0 {
				t.Errorf("advertised=%v: poll %d offered=%v", advertise, i, offered)
			}
		}
		relay.mu.Unlock()
	}
}
