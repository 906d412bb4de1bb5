package relay

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicemcp/sluice/engine/wire"
)

func TestNewTunnelIDAndKey(t *testing.T) {
	idRe := regexp.MustCompile(`^tunnel_[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for range 50 {
		id := NewTunnelID()
		if !idRe.MatchString(id) || !wire.ValidTunnelID(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
		k := NewKey("sk-sluice-")
		if !strings.HasPrefix(k, "sk-sluice-") || !wire.ValidKey(k) || len(k) != len("sk-sluice-")+40 || seen[k] {
			t.Fatalf("bad or repeated key %q", k)
		}
		seen[k] = true
	}
}

func TestConfigValidation(t *testing.T) {
	good := func() Config { return baseConfig("http://127.0.0.1:8787") }
	cases := []struct {
		name   string
		mutate func(*Config)
		errHas string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"default public url", func(c *Config) { c.PublicURL = "" }, ""},
		{"unspecified listen needs public url", func(c *Config) { c.PublicURL = ""; c.ListenAddr = "0.0.0.0:80" }, "public-url is required"},
		{"bad listen addr", func(c *Config) { c.ListenAddr = "nope" }, "listen-addr"},
		{"public url scheme", func(c *Config) { c.PublicURL = "ftp://x" }, "scheme"},
		{"public url path", func(c *Config) { c.PublicURL = "https://x/base" }, "no path"},
		{"negative body cap", func(c *Config) { c.MaxBodyBytes = -1 }, "max-body-bytes"},
		{"negative queue", func(c *Config) { c.QueueSize = -1 }, "queue-size"},
		{"queue too large to allocate", func(c *Config) { c.QueueSize = 1 << 62 }, "queue-size"},
		{"body cap above the limit", func(c *Config) { c.MaxBodyBytes = MaxBodyLimit + 1 }, "max-body-bytes"},
		{"response cap above the limit", func(c *Config) { c.MaxResponseBytes = 1 << 62 }, "max-response-bytes"},
		{"bad tunnel id", func(c *Config) { c.Tunnels[0].ID = "tunnel_ABC" }, "tunnels[0].id"},
		{"duplicate id", func(c *Config) { c.Tunnels[1].ID = c.Tunnels[0].ID }, "duplicate"},
		{"missing runtime key", func(c *Config) { c.Tunnels[0].RuntimeKey = "" }, "tunnels[0] (" + tunA + ").runtime-key"},
		{"bad runtime key chars", func(c *Config) { c.Tunnels[0].RuntimeKey = "a b" }, "runtime-key"},
		{"shared runtime key", func(c *Config) { c.Tunnels[1].RuntimeKey = runtimeA }, "scoped to one tunnel"},
		{"bad auth mode", func(c *Config) { c.Tunnels[0].AuthMode = "magic" }, "auth-mode"},
		{"client-key mode without keys", func(c *Config) { c.Tunnels[0].ClientKeys = nil }, "client-keys"},
		{"oauth mode without keys", func(c *Config) { c.Tunnels[0].ClientKeys = nil; c.Tunnels[0].AuthMode = AuthOAuth }, ""},
		{"client key without name", func(c *Config) { c.Tunnels[0].ClientKeys[0].Name = "" }, "client-keys[0].name"},
		{"bad client key", func(c *Config) { c.Tunnels[0].ClientKeys[0].Key = "k!" }, "client-keys[0].key"},
		{"client key equals runtime key", func(c *Config) { c.Tunnels[0].ClientKeys[0].Key = runtimeB }, "runtime key"},
		{"negative response timeout", func(c *Config) { c.Tunnels[0].ResponseTimeout = -time.Second }, "response-timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := good()
			c.mutate(&cfg)
			_, err := New(cfg, Options{})
			if c.errHas == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("error %v, want it to contain %q", err, c.errHas)
			}
			for _, secret := range []string{runtimeA, runtimeB, clientKeyA, clientKeyB} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error leaks a key: %v", err)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	r, err := New(Config{Tunnels: baseConfig("").Tunnels}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := r.set
	if s.publicOrigin != "http://127.0.0.1:8787" || s.maxBody != DefaultMaxBodyBytes || s.maxResponse != DefaultMaxResponseBytes ||
		s.maxPollWait != DefaultMaxPollWait || s.queueSize != DefaultQueueSize || s.agentTimeout != DefaultAgentTimeout {
		t.Fatalf("defaults %+v", s)
	}
	c := r.tunnel(tunA).conf.Load()
	c2, _ := validateTunnels([]Tunnel{{ID: tunA, RuntimeKey: "k", AuthMode: AuthPublic}})
	if c.authMode != AuthClientKey || c2[0].responseTimeout != DefaultResponseTimeout {
		t.Fatalf("tunnel defaults %+v %+v", c, c2[0])
	}
}

func TestSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(baseConfig("http://127.0.0.1:1"), Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	// A second relay on the same registry collides: say so instead of panicking.
	if _, err := New(baseConfig("http://127.0.0.1:1"), Options{Registerer: reg}); err == nil {
		t.Fatal("duplicate registration accepted")
	}
	// Several relays without a registerer coexist.
	for range 2 {
		if _, err := New(baseConfig("http://127.0.0.1:1"), Options{}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(baseConfig("http://"+ln.Addr().String()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()

	// A long poll is in progress when the context ends: Serve still returns.
	pollErr := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", base+"/v1/tunnels/"+tunA+"/poll?timeout_ms=20000", nil)
		req.Header.Set("Authorization", "Bearer "+runtimeA)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			pollErr <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		pollErr <- resp.StatusCode
	}()
	for range 200 {
		if r.tunnel(tunA).connected(time.Now(), time.Hour) && r.serving.Load() {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	rec := httptestRecorder(r, "/readyz")
	var rd Readiness
	if err := json.Unmarshal(rec, &rd); err != nil || !rd.Ready || !rd.Tunnels[0].AgentConnected {
		t.Fatalf("readyz while serving: %s", rec)
	}
	cancel()
	if err := wait(t, done); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if st := wait(t, pollErr); st != 204 && st != 503 {
		t.Fatalf("poll during shutdown got %d", st)
	}
}

func httptestRecorder(r *Relay, path string) []byte {
	req, _ := http.NewRequest("GET", path, nil)
	rec := &bufRecorder{h: http.Header{}}
	r.AdminHandler().ServeHTTP(rec, req)
	return rec.b
}

type bufRecorder struct {
	h    http.Header
	b    []byte
	code int
}

func (b *bufRecorder) Header() http.Header         { return b.h }
func (b *bufRecorder) Write(p []byte) (int, error) { b.b = append(b.b, p...); return len(p), nil }
func (b *bufRecorder) WriteHeader(c int)           { b.code = c }

// FuzzClientFrontDoor feeds arbitrary bodies to the MCP endpoint's parser:
// it must never panic, and accepts only single JSON-RPC objects.
func FuzzClientFrontDoor(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"ping"}`, `{"jsonrpc":"2.0","method":"n"}`,
		`{"jsonrpc":"2.0","id":1,"result":{}}`, `[{"id":1}]`, `{`, ``, `null`, `{"method":5}`,
		` {"id":null,"method":"x"}`, `{"id":0,"error":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, kind, rpcErr := classify(body)
		if rpcErr != nil {
			if rpcErr.Code != -32700 && rpcErr.Code != -32600 {
				t.Fatalf("unexpected code %d", rpcErr.Code)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		switch kind {
		case kindRequest:
			if p.ID == nil || p.Method == "" {
				t.Fatalf("request without id or method: %q", body)
			}
		case kindNotification:
			if p.ID != nil {
				t.Fatalf("notification with id: %q", body)
			}
		case kindResponse:
			if p.ID == nil || !p.HasResult {
				t.Fatalf("response without id/result: %q", body)
			}
		}
	})
}
