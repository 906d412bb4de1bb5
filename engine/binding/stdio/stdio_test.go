package stdio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/binding/bindingtest"
	"github.com/sluicemcp/sluice/engine/wire"
)

const childEnv = "SLUICE_STDIO_TEST_CHILD"

// TestMain turns the test binary into a tiny newline-delimited JSON-RPC server
// when childEnv is set.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		child()
		return
	}
	os.Exit(m.Run())
}

// child answers: echo (result = params), delay (answers after params.ms, so
// replies come out of order), progress (two notifications/progress with the
// request's token, then a result), ask (a server-to-client request, then the
// result once the client answered), crash (exits), pid.
func child() {
	out := json.NewEncoder(os.Stdout)
	var mu sync.Mutex
	send := func(v any) { mu.Lock(); _ = out.Encode(v); mu.Unlock() }
	asked := make(chan json.RawMessage, 1)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Result json.RawMessage `json:"result"`
			Params struct {
				MS   int             `json:"ms"`
				Meta json.RawMessage `json:"_meta"`
			} `json:"params"`
			RawParams json.RawMessage `json:"-"`
		}
		line := bytes.Clone(sc.Bytes())
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		var params struct {
			Params json.RawMessage `json:"params"`
		}
		_ = json.Unmarshal(line, &params)
		reply := func(result any) {
			send(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": result})
		}
		switch m.Method {
		case "echo":
			reply(map[string]any{"params": params.Params})
		case "delay":
			go func() {
				time.Sleep(time.Duration(m.Params.MS) * time.Millisecond)
				reply(map[string]any{"ms": m.Params.MS})
			}()
		case "progress":
			var meta struct {
				Token json.RawMessage `json:"progressToken"`
			}
			_ = json.Unmarshal(m.Params.Meta, &meta)
			for i := 1; i <= 2; i++ {
				send(map[string]any{"jsonrpc": "2.0", "method": "notifications/progress", "params": map[string]any{"progressToken": meta.Token, "progress": i}})
			}
			send(map[string]any{"jsonrpc": "2.0", "method": "notifications/message", "params": map[string]any{"level": "info", "data": "x"}})
			reply("ok")
		case "ask":
			send(map[string]any{"jsonrpc": "2.0", "id": "srv-1", "method": "sampling/createMessage", "params": map[string]any{}})
			go func(id json.RawMessage) {
				answer := <-asked
				send(map[string]any{"jsonrpc": "2.0", "id": id, "result": map[string]any{"answer": answer}})
			}(m.ID)
		case "crash":
			os.Exit(3)
		case "pid":
			reply(os.Getpid())
		case "":
			if string(m.ID) == `"srv-1"` {
				asked <- m.Result
			}
		}
	}
}

func newBinding(t *testing.T) *Binding {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{
		Command:    []string{exe, "-test.run=^$"},
		Env:        append(os.Environ(), childEnv+"=1"),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func req(body string) *binding.Request {
	return &binding.Request{Kind: binding.KindJSONRPC, Header: http.Header{}, Body: json.RawMessage(body)}
}

func do(t *testing.T, b *Binding, r *binding.Request, emit func(*binding.Reply)) ([]*binding.Reply, error) {
	t.Helper()
	return bindingtest.Collect(b, r, emit)
}

func TestEchoPreservesIDBytes(t *testing.T) {
	b := newBinding(t)
	for _, id := range []string{`0`, `"abc"`, `-7`, `1.5e3`, `"ünï\"code"`, `12345678901234567890123`} {
		t.Run(id, func(t *testing.T) {
			r, err := do(t, b, req(`{"jsonrpc":"2.0","id":`+id+`,"method":"echo","params":{"x":[1,2]}}`), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(r) != 1 || !r[0].Final || r[0].Status != 200 {
				t.Fatalf("replies: %+v", r)
			}
			if !bytes.Contains(r[0].Body, []byte(`"id":`+id)) || !bytes.Contains(r[0].Body, []byte(`{"x":[1,2]}`)) {
				t.Fatalf("body %s lacks id %s", r[0].Body, id)
			}
		})
	}
}

func TestMultiplexSameIDsOutOfOrder(t *testing.T) {
	b := newBinding(t)
	var wg sync.WaitGroup
	results := make([]string, 4)
	for i, ms := range []int{300, 200, 100, 0} {
		wg.Go(func() {
			r, err := do(t, b, req(fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"delay","params":{"ms":%d}}`, ms)), nil)
			if err != nil || len(r) != 1 {
				t.Errorf("call %d: %v %+v", i, err, r)
				return
			}
			results[i] = string(r[0].Body)
		})
	}
	wg.Wait()
	for i, ms := range []int{300, 200, 100, 0} {
		if !bytes.Contains([]byte(results[i]), []byte(fmt.Sprintf(`"ms":%d`, ms))) || !bytes.Contains([]byte(results[i]), []byte(`"id":1`)) {
			t.Errorf("call %d got %s", i, results[i])
		}
	}
}

func TestProgressRouted(t *testing.T) {
	b := newBinding(t)
	var wg sync.WaitGroup
	for _, tok := range []string{`"t"`, `"t"`, `7`} { // same token from two callers
		wg.Go(func() {
			r, err := do(t, b, req(`{"jsonrpc":"2.0","id":"x","method":"progress","params":{"_meta":{"progressToken":`+tok+`}}}`), nil)
			if err != nil {
				t.Error(err)
				return
			}
			if len(r) != 3 || r[0].Final || r[1].Final || !r[2].Final {
				t.Errorf("token %s: %d replies", tok, len(r))
				return
			}
			for _, m := range r[:2] {
				if !bytes.Contains(m.Body, []byte(`"progressToken":`+tok)) {
					t.Errorf("notification %s lacks original token %s", m.Body, tok)
				}
			}
			if !bytes.Contains(r[2].Body, []byte(`"id":"x"`)) {
				t.Errorf("final %s", r[2].Body)
			}
		})
	}
	wg.Wait()
}

func TestServerRequestAndClientAnswer(t *testing.T) {
	b := newBinding(t)
	done := make(chan []*binding.Reply, 1)
	go func() {
		r, err := do(t, b, req(`{"jsonrpc":"2.0","id":5,"method":"ask"}`), func(rp *binding.Reply) {
			if !rp.Final && bytes.Contains(rp.Body, []byte(`"sampling/createMessage"`)) {
				// The MCP client answers with a separate message.
				ack, err := do(t, b, req(`{"jsonrpc":"2.0","id":"srv-1","result":{"ok":1}}`), nil)
				if err != nil || len(ack) != 1 || ack[0].Status != 202 {
					t.Errorf("answer: %v %+v", err, ack)
				}
			}
		})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	r := <-done
	if len(r) != 2 || !bytes.Contains(r[1].Body, []byte(`"answer":{"ok":1}`)) || !bytes.Contains(r[1].Body, []byte(`"id":5`)) {
		t.Fatalf("replies %d: %s", len(r), r[len(r)-1].Body)
	}
}

func TestNotificationAndTermination(t *testing.T) {
	b := newBinding(t)
	tests := []struct {
		name string
		r    *binding.Request
		want int
	}{
		{"notification", &binding.Request{Kind: binding.KindJSONRPC, Notification: true, Body: json.RawMessage(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)}, 202},
		{"termination", &binding.Request{Kind: binding.KindSessionTermination}, 204},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := do(t, b, tt.r, nil)
			if err != nil || len(r) != 1 || r[0].Status != tt.want || !r[0].Final || len(r[0].Body) != 0 {
				t.Fatalf("%v %+v", err, r)
			}
		})
	}
}

func TestCrashFailsInFlightAndRestarts(t *testing.T) {
	b := newBinding(t)
	pidOf := func() string {
		r, err := do(t, b, req(`{"jsonrpc":"2.0","id":1,"method":"pid"}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(r[0].Body)
	}
	before := pidOf()
	inflight := make(chan error, 1)
	go func() {
		_, err := do(t, b, req(`{"jsonrpc":"2.0","id":2,"method":"delay","params":{"ms":10000}}`), nil)
		inflight <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the delay request reach the child
	_, err := do(t, b, req(`{"jsonrpc":"2.0","id":3,"method":"crash"}`), nil)
	for _, e := range []error{err, <-inflight} {
		var be *binding.Error
		if !errors.As(e, &be) || be.Source != wire.SourceTransportClosed {
			t.Fatalf("err = %v, want transport_closed", e)
		}
	}
	after := pidOf() // waits for the restarted child
	if after == before {
		t.Fatalf("same pid %s after crash", after)
	}
}

func TestStartFailure(t *testing.T) {
	b, err := New(Config{Command: []string{"/nonexistent/mcp-server"}, MinBackoff: time.Millisecond}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var be *binding.Error
	for range 500 {
		err = b.Do(ctx, req(`{"jsonrpc":"2.0","id":1,"method":"x"}`), func(*binding.Reply) error { return nil })
		if errors.As(err, &be) && be.Source == wire.SourceConnect {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("err = %v, want connect", err)
}

func TestTimeout(t *testing.T) {
	b := newBinding(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := b.Do(ctx, req(`{"jsonrpc":"2.0","id":1,"method":"delay","params":{"ms":5000}}`), func(*binding.Reply) error { return nil })
	var be *binding.Error
	if !errors.As(err, &be) || be.Source != wire.SourceTimeout {
		t.Fatalf("err = %v", err)
	}
}

func TestDuplicateIDRejected(t *testing.T) {
	b := newBinding(t)
	_, err := do(t, b, req(`{"jsonrpc":"2.0","id":1,"id":2,"method":"echo"}`), nil)
	if err == nil {
		t.Fatal("duplicate id accepted")
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"npx -y @modelcontextprotocol/server-everything stdio", []string{"npx", "-y", "@modelcontextprotocol/server-everything", "stdio"}},
		{`node "my server.js" 'a b' c\ d`, []string{"node", "my server.js", "a b", "c d"}},
		{`x "a\"b" ''`, []string{"x", `a"b`, ""}},
		{`x $HOME *`, []string{"x", "$HOME", "*"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := SplitCommand(tt.in)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %q %v, want %q", got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "  ", `"open`, `'open`, `x\`} {
		if _, err := SplitCommand(bad); err == nil {
			t.Errorf("SplitCommand(%q) succeeded", bad)
		}
	}
}

func FuzzMember(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"progressToken":"t"}}}`))
	f.Add([]byte(`{"id":"a\"}","x":[{"id":2}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, e, ok, err := member(b, "id")
		if err != nil || !ok {
			return
		}
		if s < 0 || e > len(b) || s > e || !json.Valid(b[s:e]) {
			t.Fatalf("bad span %d..%d in %q", s, e, b)
		}
		out := splice(b, s, e, []byte(`"X"`))
		s2, e2, ok2, err := member(out, "id")
		if err != nil || !ok2 || string(out[s2:e2]) != `"X"` {
			t.Fatalf("splice round trip: %q", out)
		}
		_, _, _, _ = path(b, "params", "_meta", "progressToken")
	})
}
