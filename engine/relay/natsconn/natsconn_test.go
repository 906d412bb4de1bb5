package natsconn

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

func TestEmbeddedServerInProcessAndListener(t *testing.T) {
	s, err := StartServer(ServerOptions{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if !strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("ClientURL = %q", s.ClientURL())
	}
	ctx := context.Background()
	in, err := s.Connect(ctx, "in-process", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := Connect(ctx, Config{URL: s.ClientURL(), Name: "socket"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()

	// A message crosses from the socket client to the in-process one, and
	// JetStream is on.
	sub, err := in.SubscribeSync("x")
	if err != nil {
		t.Fatal(err)
	}
	_ = in.Flush()
	if err := out.Publish("x", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "hi" {
		t.Fatalf("got %v, %v", m, err)
	}
	js, err := jetstream.New(in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatalf("JetStream: %v", err)
	}
}

func TestEmbeddedServerWithoutListener(t *testing.T) {
	s, err := StartServer(ServerOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if s.ClientURL() != "" {
		t.Fatalf("ClientURL = %q, want none", s.ClientURL())
	}
	nc, err := s.Connect(context.Background(), "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if _, err := StartServer(ServerOptions{}); err == nil {
		t.Fatal("a server without a store directory started")
	}
}

// tokenServer starts a plain server that requires token.
func tokenServer(t *testing.T, token string) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, Authorization: token, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

func TestConnectToken(t *testing.T) {
	url := tokenServer(t, "s3cret-token")
	ctx := context.Background()
	nc, err := Connect(ctx, Config{URL: url, Token: "s3cret-token"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	// A wrong token fails at once (no retry until the timeout), and the
	// error does not carry the token.
	start := time.Now()
	_, err = Connect(ctx, Config{URL: url, Token: "wrong-token", ConnectTimeout: 20 * time.Second}, nil)
	if err == nil {
		t.Fatal("connected with a wrong token")
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("an authorization failure was retried until the timeout")
	}
	if strings.Contains(err.Error(), "wrong-token") {
		t.Errorf("error holds the token: %v", err)
	}
}

func TestConnectGivesUpAtTimeout(t *testing.T) {
	// Nothing listens on this port.
	_, err := Connect(context.Background(), Config{URL: "nats://127.0.0.1:1", ConnectTimeout: 600 * time.Millisecond}, nil)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("err = %v", err)
	}
}

func TestValidate(t *testing.T) {
	creds := testCreds(t)
	for _, c := range []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"ok", Config{URL: "nats://a:4222, tls://b:4222"}, ""},
		{"creds", Config{URL: "nats://a:4222", Credentials: creds}, ""},
		{"no url", Config{}, "url: required"},
		{"scheme", Config{URL: "http://a:4222"}, "scheme"},
		{"no host", Config{URL: "nats://"}, "no host"},
		{"both", Config{URL: "nats://a", Token: "t", Credentials: creds}, "not both"},
		{"bad creds", Config{URL: "nats://a", Credentials: "not a creds file"}, "credentials"},
		{"half tls", Config{URL: "nats://a", TLS: TLS{CertFile: "c.pem"}}, "set both"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("err = %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"nats://user:pass@h:4222": "nats://h:4222",
		"nats://tok@h:4222":       "nats://h:4222",
		"nats://h:4222":           "nats://h:4222",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Connect(context.Background(), Config{URL: "tls://127.0.0.1:1", TLS: TLS{CAFile: bad}}, nil)
	if err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("err = %v", err)
	}
	_, err = Connect(context.Background(), Config{URL: "tls://127.0.0.1:1", TLS: TLS{CAFile: filepath.Join(dir, "missing.pem")}}, nil)
	if err == nil || !strings.Contains(err.Error(), "tls.ca-file") {
		t.Fatalf("err = %v", err)
	}
}

// testCreds returns a credentials file's content for a fresh user.
func testCreds(t *testing.T) string {
	t.Helper()
	acc, _ := nkeys.CreateAccount()
	user, _ := nkeys.CreateUser()
	upub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(upub)
	tok, err := uc.Encode(acc)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	b, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
