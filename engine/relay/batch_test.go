package relay

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine/wire"
)

// respondBatch POSTs a response batch as an agent.
func (h *harness) respondBatch(tunnel, key, tokens, body string) (int, string) {
	h.t.Helper()
	r := h.do("POST", "/v1/tunnels/"+tunnel+wire.BatchPath, []byte(body), map[string]string{
		"Authorization": "Bearer " + key, wire.HeaderShardToken: tokens, "Content-Type": "application/json",
	})
	return r.StatusCode, readAll(h.t.(*testing.T), r)
}

func TestResponseBatch(t *testing.T) {
	h := newHarness(t, nil, Options{})
	// Authenticated agent answers advertise the extension; others do not.
	for _, key := range []string{runtimeA, "wrong"} {
		r := h.do("GET", "/v1/tunnels/"+tunA, nil, map[string]string{"Authorization": "Bearer " + key})
		_ = readAll(t, r)
		if got := wire.HasExtension(r.Header.Get(wire.HeaderExtensions), wire.ExtResponseBatch); got != (key == runtimeA) {
			t.Errorf("key %q: extension advertised = %v", key, got)
		}
	}
	h.connect(tunA, runtimeA)

	const n = 3
	var clients []<-chan *http.Response
	for i := 0; i < n; i++ {
		clients = append(clients, h.clientPost(tunA, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i), map[string]string{"Accept": "application/json"}))
	}
	cmds := map[string]wire.Command{} // by JSON-RPC id
	for len(cmds) < n {
		c := h.next(tunA, runtimeA)
		var m struct{ ID json.RawMessage }
		_ = json.Unmarshal(c.JSONRPC, &m)
		cmds[string(m.ID)] = c
	}
	item := func(c wire.Command, id string) string {
		b, _ := json.Marshal(wire.Response{RequestID: c.RequestID, RespCode: 200, RespType: wire.RespJSONRPCResponse,
			RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":` + id + `,"result":{}}`)})
		return string(b)
	}
	c0, c1, c2 := cmds["0"], cmds["1"], cmds["2"]
	unknown := wire.Response{RequestID: "req_unknown", RespType: wire.RespJSONRPCResponse}
	ub, _ := json.Marshal(unknown)
	// Items: delivered, delivered, wrong token, unknown request, malformed.
	body := `{"responses":[` + item(c0, "0") + "," + item(c1, "1") + "," + item(c2, "2") + "," + string(ub) + `,{"request_id":7}]}`
	tokens := strings.Join([]string{c0.ShardToken, c1.ShardToken, "st_wrong", "st_x", "st_y"}, ", ")

	// Whole-batch refusals take nothing.
	for _, tc := range []struct {
		name, key, tokens, body string
		status                  int
	}{
		{"wrong key", runtimeB, tokens, body, 401},
		{"token count", runtimeA, c0.ShardToken, body, 400},
		{"not a batch", runtimeA, tokens, `{"responses":{}}`, 400},
		{"empty batch", runtimeA, "", `{"responses":[]}`, 400},
		{"item not an object", runtimeA, "a", `{"responses":[1]}`, 400},
		{"broken JSON", runtimeA, tokens, body[:len(body)-2], 400},
	} {
		if st, out := h.respondBatch(tunA, tc.key, tc.tokens, tc.body); st != tc.status {
			t.Errorf("%s: status %d (%s), want %d", tc.name, st, out, tc.status)
		}
	}

	st, out := h.respondBatch(tunA, runtimeA, tokens, body)
	if st != 200 {
		t.Fatalf("batch: %d %s", st, out)
	}
	got, err := wire.DecodeBatchStatuses([]byte(out), 5)
	if err != nil {
		t.Fatalf("answer %s: %v", out, err)
	}
	if want := []int{200, 200, 401, 404, 400}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	for i := 0; i < 2; i++ {
		resp := wait(t, clients[i])
		if b := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(b, fmt.Sprintf(`"id":%d`, i)) {
			t.Errorf("client %d got %d %s", i, resp.StatusCode, b)
		}
	}
	// The item with the wrong token was not taken: the right one still is.
	if st, _ := h.respond(tunA, runtimeA, c2.ShardToken, wire.Response{RequestID: c2.RequestID, RespCode: 200,
		RespJSON: json.RawMessage(`{"jsonrpc":"2.0","id":2,"result":{}}`)}); st != 200 {
		t.Fatalf("single POST after the batch: %d", st)
	}
	if resp := wait(t, clients[2]); resp.StatusCode != 200 {
		t.Errorf("client 2 got %d", resp.StatusCode)
	}
	// Delivered items are finished: a repeated batch gets 404 for them.
	st, out = h.respondBatch(tunA, runtimeA, c0.ShardToken+","+c1.ShardToken, `{"responses":[`+item(c0, "0")+","+item(c1, "1")+`]}`)
	if st != 200 || out != `{"statuses":[404,404]}` {
		t.Errorf("repeated batch: %d %s", st, out)
	}
}

func TestResponseBatchBodyCap(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxResponseBytes = 1024 }, Options{})
	big := `{"responses":[{"request_id":"x","resp_json":{"p":"` + strings.Repeat("a", 2048) + `"}}]}`
	if st, _ := h.respondBatch(tunA, runtimeA, "st_x", big); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize batch: %d, want 413", st)
	}
}
