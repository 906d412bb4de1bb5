package relay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/wire"
)

func TestJSONRoundTrip(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connect(tunA, runtimeA)
	req := `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`
	got := h.clientPost(tunA, req, map[string]string{"Mcp-Session-Id": "s-1", "Accept": "application/json"})

	cmd := h.next(tunA, runtimeA)
	if cmd.CommandType != wire.CommandJSONRPC || string(cmd.JSONRPC) != req {
		t.Fatalf("command = %+v", cmd)
	}
	if cmd.ResponseTimeout == nil {
		t.Fatal("response_timeout not set")
	}
	if d, err := wire.ParseResponseTimeout(*cmd.ResponseTimeout); err != nil || d <= 0 || d > 10*time.Second {
		t.Fatalf("response_timeout %q: %v %v", *cmd.ResponseTimeout, d, err)
	}
	if cmd.Channel != "main" || cmd.ShardToken == "" || cmd.CreatedAt == "" {
		t.Fatalf("command fields: %+v", cmd)
	}
	if _, ok := cmd.Headers["Authorization"]; ok {
		t.Fatal("client key forwarded in client-key mode")
	}
	result := `{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}`
	st, _ := h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{
		RequestID: cmd.RequestID, RespJSON: json.RawMessage(result), RespCode: 200, RespType: wire.RespJSONRPCResponse,
		RespHeaders: map[string][]string{"Content-Type": {"text/plain"}, "Mcp-Session-Id": {"s-1"}, "X-Other": {"no"}},
	})
	if st != 200 {
		t.Fatalf("response POST: %d", st)
	}
	resp := wait(t, got)
	body := readAll(t, resp)
	if resp.StatusCode != 200 || body != result {
		t.Fatalf("client got %d %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if resp.Header.Get("Mcp-Session-Id") != "s-1" || resp.Header.Get("X-Other") != "" {
		t.Errorf("headers = %v", resp.Header)
	}
	// The command is finished: a repeated final POST is 404.
	if st, code := h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(result), RespCode: 200}); st != 404 || code != wire.CodePendingRequestNotFound {
		t.Fatalf("late POST = %d %s", st, code)
	}
}

func TestSSEStreamsNotificationsAsTheyArrive(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connect(tunA, runtimeA)
	got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"slow"}}`, nil)
	cmd := h.next(tunA, runtimeA)

	note1 := `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}`
	note2 := "{\n  \"jsonrpc\": \"2.0\",\n  \"method\": \"notifications/message\"\n}"
	final := `{"jsonrpc":"2.0","id":"c1","result":{"content":[]}}`
	if st, _ := h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(note1), RespCode: 200, RespType: wire.RespJSONRPCNotify, RespHeaders: map[string][]string{"Mcp-Session-Id": {"s-9"}}}); st != 200 {
		t.Fatalf("notify POST %d", st)
	}
	resp := wait(t, got)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Mcp-Session-Id") != "s-9" {
		t.Fatalf("stream start: %d %v", resp.StatusCode, resp.Header)
	}
	sr := &sseReader{br: bufio.NewReader(resp.Body)}
	// The first event is readable before the agent posts anything else.
	ev, err := sr.next()
	if err != nil || ev != note1 {
		t.Fatalf("first event %q %v", ev, err)
	}
	if st, _ := h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(note2), RespCode: 200, RespType: wire.RespJSONRPCNotify}); st != 200 {
		t.Fatalf("notify POST %d", st)
	}
	ev, err = sr.next()
	if err != nil || ev != `{"jsonrpc":"2.0","method":"notifications/message"}` {
		t.Fatalf("second event %q %v", ev, err)
	}
	if st, _ := h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(final), RespCode: 200}); st != 200 {
		t.Fatalf("final POST %d", st)
	}
	ev, err = sr.next()
	if err != nil || ev != final {
		t.Fatalf("final event %q %v", ev, err)
	}
	if _, err := sr.next(); err != io.EOF {
		t.Fatalf("stream not ended: %v", err)
	}
}

func TestSSEKeepalive(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.r.keepalive = 20 * time.Millisecond
	h.connect(tunA, runtimeA)
	got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, nil)
	cmd := h.next(tunA, runtimeA)
	h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","method":"n"}`), RespType: wire.RespJSONRPCNotify})
	resp := wait(t, got)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for range 100 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == ": keepalive\n" {
			return
		}
	}
	t.Fatal("no keepalive comment")
}

func TestNotificationsDroppedWithoutSSE(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connect(tunA, runtimeA)
	got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, map[string]string{"Accept": "application/json"})
	cmd := h.next(tunA, runtimeA)
	h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","method":"n"}`), RespType: wire.RespJSONRPCNotify})
	final := `{"jsonrpc":"2.0","id":1,"result":{}}`
	h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(final), RespCode: 200})
	resp := wait(t, got)
	if b := readAll(t, resp); resp.StatusCode != 200 || b != final || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q %v", resp.StatusCode, b, resp.Header)
	}
}

func TestClientNotificationAndResponseGet202(t *testing.T) {
	for _, body := range []string{
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":"srv-1","result":{"action":"accept"}}`,
	} {
		t.Run(body, func(t *testing.T) {
			h := newHarness(t, nil, Options{})
			h.connect(tunA, runtimeA)
			got := h.clientPost(tunA, body, map[string]string{"Mcp-Session-Id": "s-2"})
			cmd := h.next(tunA, runtimeA)
			if string(cmd.JSONRPC) != body || cmd.Headers["Mcp-Session-Id"][0] != "s-2" {
				t.Fatalf("command %+v", cmd)
			}
			h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespCode: 202, RespType: wire.RespNotifyAck})
			resp := wait(t, got)
			if b := readAll(t, resp); resp.StatusCode != 202 || b != "" {
				t.Fatalf("got %d %q", resp.StatusCode, b)
			}
		})
	}
}

// TestRefusedNotificationKeepsItsStatus: an acknowledgement with an error
// status (the MCP server answered 404 for an unknown session) reaches the
// client as that status, not as 202, so the client starts a new session.
func TestRefusedNotificationKeepsItsStatus(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connect(tunA, runtimeA)
	got := h.clientPost(tunA, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, map[string]string{"Mcp-Session-Id": "gone"})
	cmd := h.next(tunA, runtimeA)
	h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespCode: 404, RespType: wire.RespNotifyAck})
	resp := wait(t, got)
	if b := readAll(t, resp); resp.StatusCode != 404 || b != "" {
		t.Fatalf("got %d %q, want 404 with no body", resp.StatusCode, b)
	}
}

func TestDeleteSessionTermination(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connect(tunA, runtimeA)
	auth := map[string]string{"Authorization": "Bearer " + clientKeyA}
	resp := h.do("DELETE", "/v1/mcp/"+tunA, nil, auth)
	if resp.StatusCode != 400 || apiCode(resp) != wire.CodeMissingMCPSessionID {
		t.Fatalf("DELETE without session: %d", resp.StatusCode)
	}
	resp.Body.Close()
	done := make(chan *http.Response, 1)
	go func() {
		done <- h.do("DELETE", "/v1/mcp/"+tunA, nil, map[string]string{"Authorization": "Bearer " + clientKeyA, "Mcp-Session-Id": "s-3"})
	}()
	cmd := h.next(tunA, runtimeA)
	if cmd.CommandType != wire.CommandSessionTermination || cmd.Headers["Mcp-Session-Id"][0] != "s-3" || len(cmd.JSONRPC) != 0 {
		t.Fatalf("command %+v", cmd)
	}
	h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespCode: 204, RespType: wire.RespSessionTermination})
	resp = wait(t, done)
	if b := readAll(t, resp); resp.StatusCode != 204 || b != "" {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
}

func TestExactlyOnePoller(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connect(tunA, runtimeA)
	const n = 40
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
		stop = make(chan struct{})
	)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, cmds := h.poll(tunA, runtimeA, 3, 50*time.Millisecond, nil)
				if st != 200 && st != 204 {
					t.Errorf("poll %d", st)
					return
				}
				for _, c := range cmds {
					mu.Lock()
					seen[c.RequestID]++
					mu.Unlock()
					h.respond(tunA, runtimeA, c.ShardToken, wire.Response{RequestID: c.RequestID, RespJSON: c.JSONRPC, RespCode: 200})
				}
			}
		}()
	}
	var cw sync.WaitGroup
	for i := range n {
		cw.Add(1)
		go func() {
			defer cw.Done()
			body := `{"jsonrpc":"2.0","id":` + string(rune('0'+i%10)) + `,"method":"ping"}`
			resp := <-h.clientPost(tunA, body, map[string]string{"Accept": "application/json"})
			if resp == nil {
				t.Error("client failed")
				return
			}
			if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != body {
				t.Errorf("client got %d %q", resp.StatusCode, b)
			}
			resp.Body.Close()
		}()
	}
	cw.Wait()
	close(stop)
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("saw %d distinct commands, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("command %s handed out %d times", id, c)
		}
	}
}

func TestAgentEndpointErrors(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxResponseBytes = 1024 }, Options{})
	h.connect(tunA, runtimeA)
	got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
	cmd := h.next(tunA, runtimeA)

	cases := []struct {
		name   string
		method string
		path   string
		key    string
		token  string
		body   string
		status int
		code   string
	}{
		{"metadata ok", "GET", "/v1/tunnels/" + tunA, runtimeA, "", "", 200, ""},
		{"metadata bad id", "GET", "/v1/tunnels/tunnel_XYZ", runtimeA, "", "", 400, wire.CodeInvalidTunnelIDFormat},
		{"metadata wrong key", "GET", "/v1/tunnels/" + tunA, "nope", "", "", 403, wire.CodeTunnelUseForbidden},
		{"metadata cross-tunnel key", "GET", "/v1/tunnels/" + tunA, runtimeB, "", "", 403, wire.CodeTunnelUseForbidden},
		{"metadata unknown tunnel", "GET", "/v1/tunnels/tunnel_00000000000000000000000000000000", runtimeA, "", "", 403, wire.CodeTunnelUseForbidden},
		{"metadata client key", "GET", "/v1/tunnels/" + tunA, clientKeyA, "", "", 403, wire.CodeTunnelUseForbidden},
		{"poll bad id", "GET", "/v1/tunnels/nope/poll", runtimeA, "", "", 400, wire.CodeInvalidTunnelIDFormat},
		{"poll cross-tunnel key", "GET", "/v1/tunnels/" + tunA + "/poll?timeout_ms=1", runtimeB, "", "", 401, wire.CodeTunnelUseForbidden},
		{"poll unknown tunnel", "GET", "/v1/tunnels/tunnel_00000000000000000000000000000000/poll", runtimeA, "", "", 401, wire.CodeTunnelUseForbidden},
		{"poll bad limit", "GET", "/v1/tunnels/" + tunA + "/poll?limit=26", runtimeA, "", "", 400, ""},
		{"response cross-tunnel key", "POST", "/v1/tunnels/" + tunA + "/response", runtimeB, cmd.ShardToken, `{"request_id":"` + cmd.RequestID + `","resp_json":null,"resp_code":200}`, 401, wire.CodeTunnelUseForbidden},
		{"response other tunnel path", "POST", "/v1/tunnels/" + tunB + "/response", runtimeB, cmd.ShardToken, `{"request_id":"` + cmd.RequestID + `","resp_json":null,"resp_code":200}`, 404, wire.CodePendingRequestNotFound},
		{"response unknown request", "POST", "/v1/tunnels/" + tunA + "/response", runtimeA, "x", `{"request_id":"req_nope","resp_json":null,"resp_code":200}`, 404, wire.CodePendingRequestNotFound},
		{"response token mismatch", "POST", "/v1/tunnels/" + tunA + "/response", runtimeA, "wrong", `{"request_id":"` + cmd.RequestID + `","resp_json":null,"resp_code":200}`, 401, wire.CodeTunnelRequestMismatch},
		{"response no token", "POST", "/v1/tunnels/" + tunA + "/response", runtimeA, "", `{"request_id":"` + cmd.RequestID + `","resp_json":null,"resp_code":200}`, 401, wire.CodeTunnelRequestMismatch},
		{"response too large", "POST", "/v1/tunnels/" + tunA + "/response", runtimeA, cmd.ShardToken, `{"request_id":"` + cmd.RequestID + `","resp_json":{"x":"` + strings.Repeat("a", 2000) + `"}}`, 413, wire.CodeRequestBodyTooLarge},
		{"response bad json", "POST", "/v1/tunnels/" + tunA + "/response", runtimeA, cmd.ShardToken, `{`, 400, wire.CodeInvalidJSONPayload},
		{"response bad channel", "POST", "/v1/tunnels/" + tunA + "/response", runtimeA, cmd.ShardToken, `{"request_id":"` + cmd.RequestID + `","channel":"BAD!"}`, 400, wire.CodeInvalidChannelFormat},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{"Authorization": "Bearer " + c.key}
			if c.token != "" {
				hdr[wire.HeaderShardToken] = c.token
			}
			resp := h.do(c.method, c.path, []byte(c.body), hdr)
			defer resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.status != 200 {
				if code := apiCode(resp); code != c.code {
					t.Fatalf("code %q, want %q", code, c.code)
				}
			}
		})
	}
	// The pending request survived every failed attempt.
	if st, _ := h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{}}`), RespCode: 200}); st != 200 {
		t.Fatalf("final %d", st)
	}
	if resp := wait(t, got); resp.StatusCode != 200 {
		t.Fatalf("client %d", resp.StatusCode)
	}
}

func TestMetadataBody(t *testing.T) {
	h := newHarness(t, nil, Options{})
	resp := h.do("GET", "/v1/tunnels/"+tunA, nil, map[string]string{"Authorization": "Bearer " + runtimeA})
	var md wire.TunnelMetadata
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil || md != (wire.TunnelMetadata{ID: tunA, Name: "alpha", Description: "first"}) {
		t.Fatalf("metadata %+v %v", md, err)
	}
	resp.Body.Close()
}

func TestClientAuth(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Tunnels = append(c.Tunnels,
			Tunnel{ID: "tunnel_11111111111111111111111111111111", RuntimeKey: "rk-o", AuthMode: AuthOAuth},
			Tunnel{ID: "tunnel_22222222222222222222222222222222", RuntimeKey: "rk-p", AuthMode: AuthPublic})
	}, Options{})
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	cases := []struct {
		name, tunnel, auth string
		status             int
	}{
		{"no key", tunA, "", 401},
		{"wrong key", tunA, "Bearer wrong", 401},
		{"other tunnel's key", tunA, "Bearer " + clientKeyB, 401},
		{"runtime key", tunA, "Bearer " + runtimeA, 401},
		{"basic scheme", tunA, "Basic " + clientKeyA, 401},
		{"unknown tunnel", "tunnel_99999999999999999999999999999999", "Bearer " + clientKeyA, 401},
		{"right key, no agent", tunA, "Bearer " + clientKeyA, 503},
		{"lowercase scheme", tunA, "bearer " + clientKeyA, 503},
		{"oauth passes anything", "tunnel_11111111111111111111111111111111", "Bearer whatever", 503},
		{"public passes", "tunnel_22222222222222222222222222222222", "", 503},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{"Content-Type": "application/json"}
			if c.auth != "" {
				hdr["Authorization"] = c.auth
			}
			resp := h.do("POST", "/v1/mcp/"+c.tunnel, body, hdr)
			defer resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.status == 401 && resp.Header.Get("WWW-Authenticate") != "Bearer" {
				t.Fatalf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
			if c.status == 503 {
				if resp.Header.Get("Retry-After") == "" || apiCode(resp) != wire.CodeTunnelClientNotConnected {
					t.Fatal("503 without Retry-After or tunnel_client_not_connected")
				}
			}
		})
	}
}

func TestHostOriginCheck(t *testing.T) {
	h := newHarness(t, nil, Options{})
	port := h.srv.Listener.Addr().String()[strings.LastIndex(h.srv.Listener.Addr().String(), ":"):]
	cases := []struct {
		name, host, origin string
		status             int
	}{
		{"rebinding host", "evil.example.com", "", 403},
		{"rebinding host with port", "evil.example.com" + port, "", 403},
		{"public host", "127.0.0.1" + port, "", 401},
		{"loopback alias", "localhost" + port, "", 401},
		{"ipv6 loopback", "[::1]" + port, "", 401},
		{"wrong port", "127.0.0.1:1", "", 403},
		{"evil origin", "127.0.0.1" + port, "http://evil.example.com", 403},
		{"null origin", "127.0.0.1" + port, "null", 403},
		{"https origin", "127.0.0.1" + port, "https://127.0.0.1" + port, 403},
		{"good origin", "127.0.0.1" + port, "http://127.0.0.1" + port, 401},
		{"loopback origin alias", "127.0.0.1" + port, "http://localhost" + port, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{"Host": c.host, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
			if c.origin != "" {
				hdr["Origin"] = c.origin
			}
			resp := h.do("POST", "/v1/mcp/"+tunA, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`), hdr)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
		})
	}
}

func TestHostCheckNonLoopbackPublicURL(t *testing.T) {
	r, err := New(Config{PublicURL: "https://relay.example.com", Tunnels: baseConfig("").Tunnels}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"relay.example.com": true, "RELAY.example.com:443": true, "relay.example.com:8443": false,
		"localhost": false, "127.0.0.1:443": false, "evil.example.com": false,
	} {
		req, _ := http.NewRequest("POST", "https://x/v1/mcp/"+tunA, nil)
		req.Host = host
		if got := r.hostAllowed(req); got != want {
			t.Errorf("host %q: allowed=%v, want %v", host, got, want)
		}
	}
}

func TestClientFrontDoorErrors(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxBodyBytes = 256 }, Options{})
	h.connect(tunA, runtimeA)
	auth := map[string]string{"Authorization": "Bearer " + clientKeyA, "Content-Type": "application/json"}
	cases := []struct {
		name     string
		method   string
		body     string
		status   int
		rpcCode  int
		wantNull bool
	}{
		{"malformed", "POST", `{"jsonrpc":"2.0",`, 400, engine.CodeParseError, true},
		{"empty", "POST", ``, 400, engine.CodeParseError, true},
		{"batch", "POST", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, 400, engine.CodeInvalidRequest, true},
		{"not an object", "POST", `42`, 400, engine.CodeInvalidRequest, true},
		{"no method nor result", "POST", `{"jsonrpc":"2.0","id":1}`, 400, engine.CodeInvalidRequest, true},
		{"too large", "POST", `{"jsonrpc":"2.0","id":1,"method":"x","params":"` + strings.Repeat("a", 300) + `"}`, 413, 0, false},
		{"GET", "GET", ``, 405, 0, false},
		{"PUT", "PUT", ``, 405, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := h.do(c.method, "/v1/mcp/"+tunA, []byte(c.body), auth)
			b := readAll(t, resp)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.status, b)
			}
			if c.rpcCode != 0 {
				var e struct {
					ID    json.RawMessage    `json:"id"`
					Error struct{ Code int } `json:"error"`
				}
				if err := json.Unmarshal([]byte(b), &e); err != nil || e.Error.Code != c.rpcCode || string(e.ID) != "null" {
					t.Fatalf("body %s: code %d id %s", b, e.Error.Code, e.ID)
				}
			}
			if c.status == 413 {
				resp := h.do(c.method, "/v1/mcp/"+tunA, []byte(c.body), auth)
				if apiCode(resp) != wire.CodeRequestBodyTooLarge {
					t.Fatal("413 without request_body_too_large")
				}
			}
		})
	}
}

func TestResponseTimeout(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Tunnels[0].ResponseTimeout = 300 * time.Millisecond }, Options{})
	h.connect(tunA, runtimeA)
	got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":"abc","method":"tools/call"}`, map[string]string{"Accept": "application/json"})
	cmd := h.next(tunA, runtimeA)
	d, err := wire.ParseResponseTimeout(*cmd.ResponseTimeout)
	if err != nil || d > 300*time.Millisecond {
		t.Fatalf("response_timeout %q", *cmd.ResponseTimeout)
	}
	resp := wait(t, got)
	b := readAll(t, resp)
	if resp.StatusCode != 504 || !strings.Contains(b, `"id":"abc"`) || !strings.Contains(b, `"source":"timeout"`) {
		t.Fatalf("client got %d %s", resp.StatusCode, b)
	}
	if st, code := h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":"abc","result":{}}`)}); st != 404 || code != wire.CodePendingRequestNotFound {
		t.Fatalf("late POST %d %s", st, code)
	}
}

func TestClientDisconnectForgetsRequest(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connect(tunA, runtimeA)
	req, _ := http.NewRequest("POST", h.url+"/v1/mcp/"+tunA, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"x"}`))
	req.Header.Set("Authorization", "Bearer "+clientKeyA)
	req.Header.Set("Content-Type", "application/json")
	ctx, cancel := context.WithCancel(context.Background())
	req = req.WithContext(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := http.DefaultClient.Do(req)
		errc <- err
	}()
	cmd := h.next(tunA, runtimeA)
	cancel()
	<-errc
	for range 100 {
		if h.r.tunnel(tunA).inflight() == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st, _ := h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{}`)}); st != 404 {
		t.Fatalf("POST after client left: %d", st)
	}
}

func TestHeaderForwarding(t *testing.T) {
	cases := []struct {
		name    string
		header  string
		oauth   bool
		forward bool
	}{
		{"session", "Mcp-Session-Id", false, true},
		{"protocol version", "MCP-Protocol-Version", false, true},
		{"accept", "Accept", false, true},
		{"last event id", "Last-Event-ID", false, true},
		{"method", "Mcp-Method", false, true},
		{"name", "Mcp-Name", false, true},
		{"param", "Mcp-Param-Path", false, true},
		{"traceparent", "traceparent", false, true},
		{"tracestate", "tracestate", false, true},
		{"authorization oauth", "Authorization", true, true},
		{"authorization client-key", "Authorization", false, false},
		{"cookie", "Cookie", false, false},
		{"host", "Host", false, false},
		{"content-length", "Content-Length", false, false},
		{"forwarded", "Forwarded", false, false},
		{"x-forwarded-for", "X-Forwarded-For", false, false},
		{"x-real-ip", "X-Real-Ip", false, false},
		{"connection", "Connection", false, false},
		{"te", "Te", false, false},
		{"unknown", "X-Custom", false, false},
		{"user agent", "User-Agent", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			h.Set(c.header, "v")
			got := forwardHeaders(h, c.oauth)
			_, ok := got[http.CanonicalHeaderKey(c.header)]
			if ok != c.forward {
				t.Fatalf("forwarded=%v, want %v (%v)", ok, c.forward, got)
			}
		})
	}
	t.Run("connection names a header", func(t *testing.T) {
		h := http.Header{"Connection": {"Mcp-Name"}, "Mcp-Name": {"x"}, "Mcp-Session-Id": {"s"}}
		got := forwardHeaders(h, false)
		if _, ok := got["Mcp-Name"]; ok || got["Mcp-Session-Id"][0] != "s" {
			t.Fatalf("%v", got)
		}
	})
	t.Run("end to end", func(t *testing.T) {
		hs := newHarness(t, nil, Options{})
		hs.connect(tunA, runtimeA)
		got := hs.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{
			"Mcp-Param-A": "1", "X-Forwarded-For": "10.0.0.1", "Cookie": "c=1", "traceparent": "00-abc-def-01",
		})
		cmd := hs.next(tunA, runtimeA)
		hs.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{}`), RespCode: 200})
		wait(t, got).Body.Close()
		want := []string{"Accept", "Mcp-Param-A", "Traceparent"}
		if len(cmd.Headers) != len(want) {
			t.Fatalf("headers %v", cmd.Headers)
		}
		for _, k := range want {
			if len(cmd.Headers[k]) == 0 {
				t.Fatalf("missing %s in %v", k, cmd.Headers)
			}
		}
	})
}

func TestStatusMapping(t *testing.T) {
	cases := []struct{ in, want int }{
		{0, 200}, {100, 502}, {101, 502}, {199, 502}, {200, 200}, {201, 201}, {202, 202}, {204, 204},
		{250, 200}, {299, 200}, {301, 301}, {399, 502}, {400, 400}, {401, 401}, {404, 404},
		{418, 418}, {499, 502}, {500, 500}, {503, 503}, {599, 502}, {600, 502}, {-1, 502},
	}
	for _, c := range cases {
		if got := mapStatus(c.in); got != c.want {
			t.Errorf("mapStatus(%d) = %d, want %d", c.in, got, c.want)
		}
	}
	t.Run("end to end", func(t *testing.T) {
		h := newHarness(t, nil, Options{})
		h.connect(tunA, runtimeA)
		for _, c := range []struct{ in, want int }{{101, 502}, {250, 200}, {404, 404}, {777, 502}} {
			got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
			cmd := h.next(tunA, runtimeA)
			h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"m"}}`), RespCode: c.in})
			resp := wait(t, got)
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("resp_code %d → %d, want %d", c.in, resp.StatusCode, c.want)
			}
		}
	})
}

func TestIDsPreservedByteForByte(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connect(tunA, runtimeA)
	for _, id := range []string{`0`, `"0"`, `123456789012345678901234567890`, `-7`, `"\u00e9"`} {
		t.Run(id, func(t *testing.T) {
			req := `{"method":"tools/call","id":` + id + `,"jsonrpc":"2.0","params":{"z":1,"a":2}}`
			got := h.clientPost(tunA, req, nil)
			cmd := h.next(tunA, runtimeA)
			if string(cmd.JSONRPC) != req {
				t.Fatalf("command body %s", cmd.JSONRPC)
			}
			res := `{"result":{"b":1.0,"a":[]},"id":` + id + `,"jsonrpc":"2.0"}`
			h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(res), RespCode: 200})
			resp := wait(t, got)
			if b := readAll(t, resp); b != res {
				t.Fatalf("client body %s", b)
			}
		})
	}
}

func TestQueueFull(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.QueueSize = 1 }, Options{})
	h.connect(tunA, runtimeA)
	first := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
	for range 200 {
		if q, _ := h.r.tunnel(tunA).queues(); len(q) == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp := wait(t, h.clientPost(tunA, `{"jsonrpc":"2.0","id":2,"method":"ping"}`, nil))
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || apiCode(resp) != wire.CodeTunnelQueueFull {
		t.Fatalf("second request %d", resp.StatusCode)
	}
	resp.Body.Close()
	cmd := h.next(tunA, runtimeA)
	h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{}`), RespCode: 200})
	if r := wait(t, first); r.StatusCode != 200 {
		t.Fatalf("first %d", r.StatusCode)
	}
}

func TestSetTunnelsLive(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connect(tunA, runtimeA)
	h.connect(tunB, runtimeB)
	inflight := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
	cmd := h.next(tunA, runtimeA)
	removedWaiter := h.clientPost(tunB, `{"jsonrpc":"2.0","id":2,"method":"ping"}`, map[string]string{"Authorization": "Bearer " + clientKeyB, "Accept": "application/json"})
	h.next(tunB, runtimeB)

	cfg := baseConfig("")
	cfg.Tunnels[0].RuntimeKey = "rk-alpha-2"
	cfg.Tunnels[0].ClientKeys = []ClientKey{{Name: "carol", Key: "ck-carol"}}
	if err := h.r.SetTunnels(cfg.Tunnels[:1]); err != nil {
		t.Fatal(err)
	}
	// Removed tunnel: its waiting caller fails cleanly.
	if r := wait(t, removedWaiter); r.StatusCode != 503 {
		t.Fatalf("removed tunnel's caller got %d", r.StatusCode)
	}
	// The old runtime key no longer works; the new one finishes in-flight work.
	if st, _ := h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{}`)}); st != 401 {
		t.Fatalf("old key %d", st)
	}
	if st, _ := h.respond(tunA, "rk-alpha-2", cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"ok":1}`), RespCode: 200}); st != 200 {
		t.Fatalf("new key %d", st)
	}
	if r := wait(t, inflight); r.StatusCode != 200 || readAll(t, r) != `{"ok":1}` {
		t.Fatal("in-flight request lost across SetTunnels")
	}
	// New client keys apply.
	r := wait(t, h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil))
	if r.StatusCode != 401 {
		t.Fatalf("old client key %d", r.StatusCode)
	}
	if st, _ := h.poll(tunB, runtimeB, 1, time.Millisecond, nil); st != 401 {
		t.Fatalf("removed tunnel poll %d", st)
	}
	// An invalid set changes nothing.
	if err := h.r.SetTunnels([]Tunnel{{ID: "bad"}}); err == nil {
		t.Fatal("invalid tunnels accepted")
	}
	if h.r.tunnel(tunA) == nil {
		t.Fatal("failed SetTunnels changed state")
	}
}

func TestCloseFailsWaitingCallers(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connect(tunA, runtimeA)
	got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Accept": "application/json"})
	h.next(tunA, runtimeA)
	pollDone := make(chan int, 1)
	go func() { st, _ := h.poll(tunA, runtimeA, 1, 5*time.Second, nil); pollDone <- st }()
	h.r.Close()
	if r := wait(t, got); r.StatusCode != 503 {
		t.Fatalf("waiting caller got %d", r.StatusCode)
	}
	if st := wait(t, pollDone); st != 204 && st != 503 {
		t.Fatalf("outstanding poll got %d", st)
	}
}

func TestAgentConnectedWindow(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AgentTimeout = time.Hour }, Options{})
	ts := h.r.tunnel(tunA)
	now := time.Now()
	if ts.connected(now, time.Hour) {
		t.Fatal("connected before any poll")
	}
	req := httptest.NewRequest("GET", "/v1/tunnels/"+tunA+"/poll", nil)
	req.Header.Set("Authorization", "Bearer "+runtimeA)
	w := ts.beginPoll(req, "inst-1", "")
	if !ts.connected(now.Add(2*time.Hour), time.Hour) {
		t.Fatal("an outstanding poll must count as connected")
	}
	ts.endPoll(w, "inst-1")
	if !ts.connected(now.Add(time.Minute), time.Hour) || ts.connected(now.Add(2*time.Hour), time.Hour) {
		t.Fatal("agent timeout window wrong")
	}
	ts.mu.Lock()
	_, ok := ts.agents["inst-1"]
	ts.mu.Unlock()
	if !ok {
		t.Fatal("instance id not remembered")
	}
}

func TestChainSeam(t *testing.T) {
	var mu sync.Mutex
	var seen []engine.Message
	st := &fnStage{name: "test", hooks: map[engine.Hook]bool{engine.HookRequest: true, engine.HookResponse: true}, fn: func(m *engine.Message) engine.Result {
		mu.Lock()
		seen = append(seen, *m)
		mu.Unlock()
		switch {
		case m.Hook == engine.HookRequest && m.Method == "blocked":
			return engine.Result{Action: engine.Reject, Status: 403, Error: &engine.RPCError{Code: -32001, Message: "no"}}
		case m.Hook == engine.HookRequest && m.Method == "canned":
			return engine.Result{Action: engine.Respond, Body: json.RawMessage(`{"jsonrpc":"2.0","id":5,"result":"canned"}`)}
		case m.Hook == engine.HookRequest && m.Method == "notifications/quiet":
			return engine.Result{Action: engine.Drop}
		case m.Hook == engine.HookRequest:
			return engine.Result{Action: engine.Replace, Body: bytes.Replace(m.Body, []byte("secret"), []byte("XXXXXX"), 1)}
		case m.Hook == engine.HookResponse && m.Notification && bytes.Contains(m.Body, []byte("hide")):
			return engine.Result{Action: engine.Drop}
		case m.Hook == engine.HookResponse:
			return engine.Result{Action: engine.Replace, Body: bytes.Replace(m.Body, []byte("private"), []byte("REDACTED"), 1)}
		}
		return engine.Result{}
	}}
	h := newHarness(t, nil, Options{Pipeline: pipelineOf(st)})
	h.connect(tunA, runtimeA)

	t.Run("reject", func(t *testing.T) {
		r := wait(t, h.clientPost(tunA, `{"jsonrpc":"2.0","id":4,"method":"blocked"}`, nil))
		if b := readAll(t, r); r.StatusCode != 403 || !strings.Contains(b, `"id":4`) || !strings.Contains(b, `-32001`) {
			t.Fatalf("%d %s", r.StatusCode, b)
		}
	})
	t.Run("respond", func(t *testing.T) {
		r := wait(t, h.clientPost(tunA, `{"jsonrpc":"2.0","id":5,"method":"canned"}`, nil))
		if b := readAll(t, r); r.StatusCode != 200 || b != `{"jsonrpc":"2.0","id":5,"result":"canned"}` {
			t.Fatalf("%d %s", r.StatusCode, b)
		}
	})
	t.Run("drop notification", func(t *testing.T) {
		r := wait(t, h.clientPost(tunA, `{"jsonrpc":"2.0","method":"notifications/quiet"}`, nil))
		if r.StatusCode != 202 {
			t.Fatalf("%d", r.StatusCode)
		}
	})
	t.Run("replace both ways", func(t *testing.T) {
		got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"t","arguments":{"k":"secret"}}}`, map[string]string{"Mcp-Session-Id": "sess"})
		cmd := h.next(tunA, runtimeA)
		if !strings.Contains(string(cmd.JSONRPC), "XXXXXX") {
			t.Fatalf("request not replaced: %s", cmd.JSONRPC)
		}
		h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","method":"hide"}`), RespType: wire.RespJSONRPCNotify})
		h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","method":"show"}`), RespType: wire.RespJSONRPCNotify})
		h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":6,"result":"private"}`), RespCode: 200})
		r := wait(t, got)
		b := readAll(t, r)
		if strings.Contains(b, "hide") || !strings.Contains(b, "show") || !strings.Contains(b, "REDACTED") {
			t.Fatalf("stream %s", b)
		}
		mu.Lock()
		defer mu.Unlock()
		var req *engine.Message
		for i := range seen {
			if seen[i].Hook == engine.HookRequest && seen[i].Method == "tools/call" {
				req = &seen[i]
			}
		}
		if req == nil || req.Caller != "alice" || req.Tool != "t" || req.SessionID != "sess" || req.Side != engine.SideRelay || req.Tunnel != tunA || req.Header.Get("Authorization") != "" {
			t.Fatalf("request message %+v", req)
		}
		// The response side sees the same caller and tool (a per-caller
		// policy filters tools/list results and scans results by tool).
		n := 0
		for _, m := range seen {
			if m.Hook == engine.HookResponse && m.Method == "tools/call" {
				n++
				if m.Caller != "alice" || m.Tool != "t" {
					t.Errorf("response message without the caller or tool: caller %q tool %q", m.Caller, m.Tool)
				}
			}
		}
		if n != 3 {
			t.Fatalf("%d response messages seen, want 3", n)
		}
	})
}

// openFnStage is an fnStage whose circuit breaker is open.
type openFnStage struct{ fnStage }

func (*openFnStage) CircuitOpen() bool { return true }

// TestReadyzListsOpenCircuits: the relay's /readyz lists its plugin stages
// whose circuit is open, and stays ready.
func TestReadyzListsOpenCircuits(t *testing.T) {
	ok := &fnStage{name: "fine", fn: func(*engine.Message) engine.Result { return engine.Result{} }}
	open := &openFnStage{fnStage{name: "guard", fn: func(*engine.Message) engine.Result { return engine.Result{} }}}
	h := newHarness(t, nil, Options{Pipeline: pipelineOf(ok, open)})
	h.r.MarkServing()
	rec := httptest.NewRecorder()
	req, _ := http.NewRequest("GET", "/readyz", nil)
	h.r.AdminHandler().ServeHTTP(rec, req)
	var rd Readiness
	if err := json.Unmarshal(rec.Body.Bytes(), &rd); err != nil || rec.Code != 200 || !rd.Ready ||
		len(rd.OpenCircuits) != 1 || rd.OpenCircuits[0] != "guard" {
		t.Fatalf("readyz %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(rec.Body.String(), `"open_circuits":["guard"]`) {
		t.Fatalf("readyz body %s", rec.Body)
	}
}

func TestAdminHandler(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connect(tunA, runtimeA)
	admin := h.r.AdminHandler()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		req, _ := http.NewRequest("GET", path, nil)
		admin.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if c, _ := get("/healthz"); c != 200 {
		t.Fatalf("healthz %d", c)
	}
	if c, _ := get("/readyz"); c != 503 {
		t.Fatalf("readyz before serving %d", c)
	}
	h.r.MarkServing()
	c, b := get("/readyz")
	var rd Readiness
	if err := json.Unmarshal([]byte(b), &rd); c != 200 || err != nil || len(rd.Tunnels) != 2 {
		t.Fatalf("readyz %d %s", c, b)
	}
	for _, tr := range rd.Tunnels {
		if tr.AgentConnected != (tr.ID == tunA) {
			t.Fatalf("readyz tunnels %+v", rd.Tunnels)
		}
	}
	wait(t, h.clientPost(tunA, `{bad`, nil)).Body.Close()
	c, b = get("/metrics")
	for _, name := range []string{"sluice_relay_requests_total", "sluice_relay_queue_length", "sluice_relay_inflight_requests", "sluice_relay_agent_connected", "sluice_relay_polls_total", "sluice_relay_request_duration_seconds"} {
		if !strings.Contains(b, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	if c != 200 || !strings.Contains(b, `sluice_relay_requests_total{outcome="bad_request",tunnel="`+tunA+`"} 1`) {
		t.Fatalf("metrics %d", c)
	}
}

func TestTimeoutAfterStreamStarted(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Tunnels[0].ResponseTimeout = 300 * time.Millisecond }, Options{})
	h.connect(tunA, runtimeA)
	got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":9,"method":"tools/call"}`, nil)
	cmd := h.next(tunA, runtimeA)
	h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","method":"p"}`), RespType: wire.RespJSONRPCNotify})
	resp := wait(t, got)
	defer resp.Body.Close()
	sr := &sseReader{br: bufio.NewReader(resp.Body)}
	if ev, err := sr.next(); err != nil || ev != `{"jsonrpc":"2.0","method":"p"}` {
		t.Fatalf("first event %q %v", ev, err)
	}
	ev, err := sr.next()
	if err != nil || !strings.Contains(ev, `"id":9`) || !strings.Contains(ev, `"source":"timeout"`) {
		t.Fatalf("timeout event %q %v", ev, err)
	}
	if st, _ := h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{}`)}); st != 404 {
		t.Fatalf("late POST %d", st)
	}
}

// TestFramingFollowsTheServer: a response the MCP server sent as an event
// stream reaches a client that takes streams as an event stream (an empty
// one when the server closed its stream without an event), and a client
// that takes only JSON as JSON.
func TestFramingFollowsTheServer(t *testing.T) {
	const result = `{"jsonrpc":"2.0","id":1,"result":{}}`
	for _, tc := range []struct {
		name, accept, serverType, body string
		wantType, wantBody             string
	}{
		{"stream to stream", "application/json, text/event-stream", "text/event-stream", result, "text/event-stream", "event: message\ndata: " + result + "\n\n"},
		{"stream to JSON-only client", "application/json", "text/event-stream", result, "application/json", result},
		{"JSON stays JSON", "application/json, text/event-stream", "application/json", result, "application/json", result},
		{"empty stream", "application/json, text/event-stream", "text/event-stream", "", "text/event-stream", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, Options{})
			h.connect(tunA, runtimeA)
			got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"Accept": tc.accept})
			cmd := h.next(tunA, runtimeA)
			resp := wire.Response{RequestID: cmd.RequestID, RespCode: 200, RespType: wire.RespJSONRPCResponse,
				RespHeaders: map[string][]string{"Content-Type": {tc.serverType}}}
			if tc.body != "" {
				resp.RespJSON = json.RawMessage(tc.body)
			}
			if st, _ := h.respond(tunA, runtimeA, cmd.ShardToken, resp); st != 200 {
				t.Fatalf("response POST: %d", st)
			}
			r := wait(t, got)
			body := readAll(t, r)
			if r.StatusCode != 200 || r.Header.Get("Content-Type") != tc.wantType || body != tc.wantBody {
				t.Fatalf("client got %d %q %q, want 200 %q %q", r.StatusCode, r.Header.Get("Content-Type"), body, tc.wantType, tc.wantBody)
			}
		})
	}
}

// TestStrictJSONRPC: the front door answers what the specs require for a
// message that is not one valid MCP JSON-RPC message, and forwards nothing.
// MCP: "Requests MUST include a string or integer ID ... the ID MUST NOT be
// null"; JSON-RPC 2.0: "jsonrpc" MUST be exactly "2.0"; Streamable HTTP: the
// POST body is a JSON-RPC message (application/json).
func TestStrictJSONRPC(t *testing.T) {
	h := newHarness(t, nil, Options{})
	h.connect(tunA, runtimeA)
	for _, c := range []struct {
		name, body, ctype string
		status, code      int
	}{
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"tools/list"}`, "", 400, -32600},
		{"object id", `{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}`, "", 400, -32600},
		{"array id", `{"jsonrpc":"2.0","id":[1],"method":"tools/list"}`, "", 400, -32600},
		{"fractional id", `{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}`, "", 400, -32600},
		{"boolean id", `{"jsonrpc":"2.0","id":true,"method":"tools/list"}`, "", 400, -32600},
		{"jsonrpc 1.0", `{"jsonrpc":"1.0","id":1,"method":"tools/list"}`, "", 400, -32600},
		{"no jsonrpc member", `{"id":1,"method":"tools/list"}`, "", 400, -32600},
		{"jsonrpc is a number", `{"jsonrpc":2.0,"id":1,"method":"tools/list"}`, "", 400, -32600},
		{"method and result", `{"jsonrpc":"2.0","id":1,"method":"x","result":{}}`, "", 400, -32600},
		{"empty method", `{"jsonrpc":"2.0","id":1,"method":""}`, "", 400, -32600},
		{"null-id response", `{"jsonrpc":"2.0","id":null,"result":{}}`, "", 400, -32600},
		{"invalid UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\xff\"}", "", 400, -32700},
		{"not JSON", `{"jsonrpc":`, "", 400, -32700},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"x"}]`, "", 400, -32600},
		{"text/plain", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "text/plain", 415, -32600},
		{"form", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "application/x-www-form-urlencoded", 415, -32600},
		{"no content type", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "-", 415, -32600},
	} {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{"Authorization": "Bearer " + clientKeyA, "Content-Type": "application/json"}
			switch c.ctype {
			case "":
			case "-":
				delete(hdr, "Content-Type")
			default:
				hdr["Content-Type"] = c.ctype
			}
			resp := h.do("POST", "/v1/mcp/"+tunA, []byte(c.body), hdr)
			var e struct {
				ID    json.RawMessage `json:"id"`
				Error struct {
					Code int `json:"code"`
				} `json:"error"`
			}
			b := readAll(t, resp)
			if err := json.Unmarshal([]byte(b), &e); err != nil || resp.StatusCode != c.status || e.Error.Code != c.code || string(e.ID) != "null" {
				t.Errorf("got %d %s, want %d with JSON-RPC error %d and id null", resp.StatusCode, b, c.status, c.code)
			}
			if q, _ := h.r.tunnel(tunA).queues(); len(q) != 0 {
				t.Errorf("%d commands queued for an invalid message", len(q))
			}
		})
	}
	// Valid ids still pass: a string, an integer, a negative and a big integer.
	for _, id := range []string{`"a"`, `0`, `-3`, `123456789012345678901234567890`} {
		got := h.clientPost(tunA, `{"jsonrpc":"2.0","id":`+id+`,"method":"ping"}`, nil)
		cmd := h.next(tunA, runtimeA)
		h.respond(tunA, runtimeA, cmd.ShardToken, wire.Response{RequestID: cmd.RequestID, RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":` + id + `,"result":{}}`), RespCode: 200})
		if resp := wait(t, got); resp.StatusCode != 200 {
			t.Errorf("id %s: %d", id, resp.StatusCode)
		}
	}
}
