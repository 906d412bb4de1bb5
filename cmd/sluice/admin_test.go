package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/relay"
	"github.com/sluicemcp/sluice/engine/relay/natsconn"
)

// adminRelay is a relay in process whose admin API is served on loopback.
func adminRelay(t *testing.T) (url, key string) {
	t.Helper()
	r, err := relay.New(relay.Config{PublicURL: "http://127.0.0.1:1"}, relay.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	key, err = r.Bootstrap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.AdminHandler())
	t.Cleanup(srv.Close)
	return srv.URL, key
}

var (
	tunnelIDRe = regexp.MustCompile(`tunnel_[a-z0-9]{32}`)
	keyIDRe    = regexp.MustCompile(`key_[0-9a-f]{24}`)
)

// TestAdminCLI drives every `sluice admin` command against a relay's admin
// API, and the mistakes a user makes.
func TestAdminCLI(t *testing.T) {
	url, key := adminRelay(t)
	env := map[string]string{"SLUICE_ADMIN_URL": url, "SLUICE_ADMIN_KEY": key}
	run := func(want int, args ...string) string {
		t.Helper()
		code, out, errb := runCLI(t, env, append([]string{"admin"}, args...)...)
		if code != want {
			t.Fatalf("sluice admin %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, want, out, errb)
		}
		if want != exitOK {
			return errb
		}
		return out
	}

	out := run(exitOK, "tunnels", "create", "--name", "prod", "--description", "the prod server", "--response-timeout", "45s")
	id := tunnelIDRe.FindString(out)
	if id == "" || !strings.Contains(out, "created tunnel "+id) || !strings.Contains(out, "response timeout  45s") ||
		!strings.Contains(out, "sluice admin keys create --tunnel "+id+" --scope runtime") {
		t.Fatalf("tunnels create:\n%s", out)
	}
	if out := run(exitOK, "tunnels", "list"); !strings.Contains(out, id+"  prod") || !strings.Contains(out, "client-key") {
		t.Fatalf("tunnels list:\n%s", out)
	}
	var list struct {
		Tunnels []struct{ ID string } `json:"tunnels"`
	}
	if err := json.Unmarshal([]byte(run(exitOK, "--json", "tunnels", "list")), &list); err != nil || len(list.Tunnels) != 1 || list.Tunnels[0].ID != id {
		t.Fatalf("tunnels list --json: %+v %v", list, err)
	}
	if out := run(exitOK, "tunnels", "update", id, "--name", "prod-eu", "--auth-mode", "public"); !strings.Contains(out, "name              prod-eu") || !strings.Contains(out, "auth mode         public") {
		t.Fatalf("tunnels update:\n%s", out)
	}
	if out := run(exitOK, "tunnels", "get", id); !strings.Contains(out, "prod-eu") || !strings.Contains(out, "the prod server") {
		t.Fatalf("tunnels get:\n%s", out)
	}

	out = run(exitOK, "keys", "create", "--tunnel", id, "--scope", "runtime", "--name", "agent-1")
	rkValue := regexp.MustCompile(`sk_run_[0-9A-Za-z]{40}`).FindString(out)
	rkID := keyIDRe.FindString(out)
	if rkValue == "" || rkID == "" || !strings.Contains(out, "shown this once") || !strings.Contains(out, "--control-plane.tunnel-id "+id) {
		t.Fatalf("keys create:\n%s", out)
	}
	out = run(exitOK, "keys", "create", "--tunnel", id, "--scope", "client", "--name", "carol")
	if !strings.Contains(out, `known as "carol"`) {
		t.Fatalf("client key create:\n%s", out)
	}
	out = run(exitOK, "keys", "list", "--tunnel", id)
	if strings.Contains(out, rkValue) || !strings.Contains(out, rkID) || !strings.Contains(out, "sk_run_"+rkValue[7:11]+"...") || strings.Count(out, "active") != 2 {
		t.Fatalf("keys list shows a key or misses one:\n%s", out)
	}
	if out := run(exitOK, "keys", "revoke", rkID, "--tunnel", id); !strings.Contains(out, "revoked key "+rkID) {
		t.Fatalf("keys revoke:\n%s", out)
	}
	if out := run(exitOK, "keys", "list", "--tunnel", id); !strings.Contains(out, "revoked 20") {
		t.Fatalf("keys list after revoke:\n%s", out)
	}
	out = run(exitOK, "keys", "create", "--scope", "admin", "--name", "ops")
	if !regexp.MustCompile(`sk_adm_[0-9A-Za-z]{40}`).MatchString(out) {
		t.Fatalf("admin key create:\n%s", out)
	}
	if out := run(exitOK, "keys", "list", "--scope", "admin"); !strings.Contains(out, "bootstrap") || !strings.Contains(out, "ops") {
		t.Fatalf("admin keys list:\n%s", out)
	}

	// The key by reference.
	keyFile := filepath.Join(t.TempDir(), "admin.key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCLI(t, map[string]string{}, "admin", "--admin-url", url, "--admin-key", "file:"+keyFile, "tunnels", "list"); code != exitOK || !strings.Contains(out, id) {
		t.Fatalf("--admin-key file: exit %d\n%s", code, out)
	}

	// Mistakes: usage errors exit 2, refusals 1, each saying what is wrong.
	for _, c := range []struct {
		env  map[string]string
		args []string
		code int
		want string
	}{
		{env, []string{"tunnels", "delete", id}, exitConfig, "add --confirm"},
		{env, []string{"tunnels", "create"}, exitConfig, "--name is required"},
		{env, []string{"tunnels", "get"}, exitConfig, "want a TUNNEL_ID"},
		{env, []string{"tunnels", "list", "--scope", "admin"}, exitConfig, "tunnels list: no flag --scope"},
		{env, []string{"tunnels", "update", id}, exitConfig, "nothing to change"},
		{env, []string{"keys", "create", "--scope", "runtime", "--name", "x"}, exitConfig, "--tunnel TUNNEL_ID is required"},
		{env, []string{"keys", "revoke", "key_x", "--tunnel", id, "--scope", "admin"}, exitConfig, "admin keys belong to no tunnel"},
		{env, []string{"tunels", "list"}, exitConfig, `unknown command "tunels list" (did you mean tunnels list?)`},
		{env, []string{"tunnels", "get", "tunnel_nope"}, exitFailure, "400 Bad Request: tunnel id must match ^tunnel_[a-z0-9]{32}$ (invalid_tunnel_id_format)"},
		{env, []string{"tunnels", "create", "--name", "x", "--auth-mode", "none"}, exitFailure, "auth_mode must be client-key, oauth or public"},
		{env, []string{"keys", "create", "--tunnel", id, "--scope", "client", "--name", "bad name"}, exitFailure, "name (the caller's identity) must be"},
		{map[string]string{"SLUICE_ADMIN_URL": url}, []string{"tunnels", "list"}, exitConfig, "no admin key: set SLUICE_ADMIN_KEY"},
		{map[string]string{"SLUICE_ADMIN_URL": url, "SLUICE_ADMIN_KEY": "sk_adm_wrong"}, []string{"tunnels", "list"}, exitFailure,
			"GET /v1/tunnels: 401 Unauthorized: an admin key is required"},
		{map[string]string{"SLUICE_ADMIN_URL": url}, []string{"--admin-key", key, "tunnels", "list"}, exitConfig, "a secret must be a reference"},
		{map[string]string{"SLUICE_ADMIN_URL": "http://127.0.0.1:1", "SLUICE_ADMIN_KEY": key}, []string{"tunnels", "list"}, exitFailure,
			"is the relay running, and its admin listener at http://127.0.0.1:1?"},
	} {
		code, _, errb := runCLI(t, c.env, append([]string{"admin"}, c.args...)...)
		if code != c.code || !strings.Contains(errb, c.want) || strings.Contains(errb, key) {
			t.Errorf("sluice admin %v: exit %d, stderr %q; want exit %d and %q", c.args, code, errb, c.code, c.want)
		}
	}

	if out := run(exitOK, "tunnels", "delete", id, "--confirm"); !strings.Contains(out, "deleted tunnel "+id) {
		t.Fatalf("tunnels delete:\n%s", out)
	}
	if errb := run(exitFailure, "tunnels", "get", id); !strings.Contains(errb, "404") {
		t.Fatalf("get after delete:\n%s", errb)
	}
}

// TestAdminCLIConfigTunnels: a tunnel from the relay's configuration is
// listed and shown as read-only, its keys without any part of their
// value, and every change to it is refused with an error that names
// relay.tunnels (exit 1), while it keeps being served.
func TestAdminCLIConfigTunnels(t *testing.T) {
	const cfgID, runtime, client = "tunnel_0123456789abcdef0123456789abcdef", "sk-rt-config-file-key-0001", "sk-cl-config-file-key-0002"
	r, err := relay.New(relay.Config{PublicURL: "http://127.0.0.1:1", Tunnels: []relay.Tunnel{{ID: cfgID, Name: "from-file",
		RuntimeKey: runtime, ClientKeys: []relay.ClientKey{{Name: "ci", Key: client}}}}}, relay.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	key, err := r.Bootstrap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.AdminHandler())
	t.Cleanup(srv.Close)
	env := map[string]string{"SLUICE_ADMIN_URL": srv.URL, "SLUICE_ADMIN_KEY": key}
	run := func(want int, args ...string) (string, string) {
		t.Helper()
		code, out, errb := runCLI(t, env, append([]string{"admin"}, args...)...)
		if code != want {
			t.Fatalf("sluice admin %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, want, out, errb)
		}
		return out, errb
	}
	if out, _ := run(exitOK, "tunnels", "list"); !regexp.MustCompile(cfgID + `\s+from-file\s+client-key\s+-\s+config`).MatchString(out) {
		t.Fatalf("tunnels list does not mark the configured tunnel:\n%s", out)
	}
	if out, _ := run(exitOK, "tunnels", "get", cfgID); !strings.Contains(out, "config file (read-only here)") {
		t.Fatalf("tunnels get:\n%s", out)
	}
	out, _ := run(exitOK, "keys", "list", "--tunnel", cfgID)
	if strings.Count(out, "config file (read-only)") != 2 || !strings.Contains(out, "ci") || strings.Contains(out, runtime[:10]) || strings.Contains(out, client[:10]) {
		t.Fatalf("keys list of the configured tunnel:\n%s", out)
	}
	for _, args := range [][]string{
		{"tunnels", "delete", cfgID, "--confirm"},
		{"tunnels", "update", cfgID, "--name", "renamed"},
		{"keys", "create", "--tunnel", cfgID, "--scope", "runtime", "--name", "x"},
		{"keys", "revoke", "cfg_runtime", "--tunnel", cfgID},
	} {
		if _, errb := run(exitFailure, args...); !strings.Contains(errb, "409") || !strings.Contains(errb, "read-only") || !strings.Contains(errb, "config file") {
			t.Errorf("sluice admin %v: %s", args, errb)
		}
	}
	if out, _ := run(exitOK, "tunnels", "get", cfgID); !strings.Contains(out, "from-file") {
		t.Fatalf("the configured tunnel after the refused changes:\n%s", out)
	}
}

// relayProcess runs `sluice relay` in process until stop (or the test's
// end); its standard output and log are kept.
type relayProcess struct {
	stdout, log *enginetest.SyncBuffer
	stop        func()
}

func startRelayProcess(t *testing.T, cfg, adminAddr string, env map[string]string) *relayProcess {
	t.Helper()
	p := &relayProcess{stdout: &enginetest.SyncBuffer{}, log: &enginetest.SyncBuffer{}}
	p.stop = startStoppable(t, &cli{stdout: p.stdout, stderr: p.log, env: envOf(env)}, "relay", "--config", cfg, "--log.format", "json")
	// Ready once it serves, which is after the first admin key (if any) was
	// printed.
	enginetest.WaitFor(t, "relay ready", func() bool {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return p
}

// TestAdminEndToEnd: a real `sluice relay` prints its first admin key once;
// `sluice admin` makes a tunnel and its keys; `sluice run` serves it and an
// MCP client calls through it; a revoked runtime key makes the agent's
// /readyz say so; and after a restart on the same data-dir the tunnel is
// still there and no new admin key is printed.
func TestAdminEndToEnd(t *testing.T) {
	dir := t.TempDir()
	relayAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(dir, "relay.yaml")
	yaml := "relay:\n  listen-addr: " + relayAddr + "\n  admin-listen-addr: " + adminAddr + "\n  data-dir: " + filepath.Join(dir, "data") + "\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	rp := startRelayProcess(t, cfg, adminAddr, nil)
	adminKey := regexp.MustCompile(`sk_adm_[0-9A-Za-z]{40}`).FindString(rp.stdout.String())
	if adminKey == "" || !strings.Contains(rp.stdout.String(), "shown this once") {
		t.Fatalf("first start printed no admin key:\n%s", rp.stdout.String())
	}
	if strings.Contains(rp.log.String(), adminKey) || !strings.Contains(rp.log.String(), "printed once on standard output") {
		t.Fatalf("the log holds the admin key, or does not say it was printed:\n%s", rp.log.String())
	}
	env := map[string]string{"SLUICE_ADMIN_URL": "http://" + adminAddr, "SLUICE_ADMIN_KEY": adminKey}
	admin := func(args ...string) string {
		t.Helper()
		code, out, errb := runCLI(t, env, append([]string{"admin"}, args...)...)
		if code != exitOK {
			t.Fatalf("sluice admin %v: exit %d\n%s", args, code, errb)
		}
		return out
	}
	id := tunnelIDRe.FindString(admin("tunnels", "create", "--name", "e2e"))
	out := admin("keys", "create", "--tunnel", id, "--scope", "runtime", "--name", "agent")
	runtimeKey, runtimeID := regexp.MustCompile(`sk_run_[0-9A-Za-z]{40}`).FindString(out), keyIDRe.FindString(out)
	clientKey := regexp.MustCompile(`sk_cli_[0-9A-Za-z]{40}`).FindString(admin("keys", "create", "--tunnel", id, "--scope", "client", "--name", "e2e-client"))

	urlFile := filepath.Join(dir, "health.url")
	var agentErr enginetest.SyncBuffer
	startCLI(t, &cli{stdout: &bytes.Buffer{}, stderr: &agentErr, env: envOf(map[string]string{
		"CONTROL_PLANE_BASE_URL":  "http://" + relayAddr,
		"CONTROL_PLANE_TUNNEL_ID": id,
		"CONTROL_PLANE_API_KEY":   runtimeKey,
		"HEALTH_LISTEN_ADDR":      "127.0.0.1:0",
		"HEALTH_URL_FILE":         urlFile,
	})}, "run", "--embedded-mcp-stub", "--log.format", "json")
	enginetest.WaitFor(t, "agent ready", func() bool { return strings.Contains(agentErr.String(), `"msg":"ready"`) })
	if got := callEcho(t, mcpClient(t, "http://"+relayAddr+"/v1/mcp/"+id, clientKey), "through a managed tunnel"); got != "through a managed tunnel" {
		t.Fatalf("echo = %q", got)
	}

	admin("keys", "revoke", runtimeID, "--tunnel", id)
	health, _ := os.ReadFile(urlFile)
	readyz := func() (int, string) {
		resp, err := http.Get(strings.TrimSpace(string(health)) + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	enginetest.WaitFor(t, "agent readiness names the revocation", func() bool {
		st, body := readyz()
		return st == 503 && strings.HasPrefix(body, "runtime key rejected: runtime key revoked at ") && strings.Contains(body, "(tunnel_use_forbidden)")
	})
	// And its log says so once, with the relay's reason, as an error an
	// operator sees (it keeps polling slowly, in case the key is fixed).
	var rejected []map[string]any
	for _, l := range strings.Split(agentErr.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && strings.HasPrefix(fmt.Sprint(rec["msg"]), "relay rejected the runtime key") {
			rejected = append(rejected, rec)
		}
	}
	if len(rejected) != 1 || rejected[0]["level"] != "ERROR" || !strings.HasPrefix(fmt.Sprint(rejected[0]["reason"]), "runtime key revoked at ") {
		t.Fatalf("the agent's log of the revocation: %v\n%s", rejected, agentErr.String())
	}

	rp.stop()
	rp = startRelayProcess(t, cfg, adminAddr, nil)
	if strings.Contains(rp.stdout.String(), "sk_adm_") {
		t.Fatalf("a restart printed an admin key again:\n%s", rp.stdout.String())
	}
	if out := admin("tunnels", "get", id); !strings.Contains(out, "e2e") {
		t.Fatalf("tunnel after restart:\n%s", out)
	}
	if out := admin("keys", "list", "--tunnel", id); !strings.Contains(out, "revoked 20") || !strings.Contains(out, "e2e-client") {
		t.Fatalf("keys after restart:\n%s", out)
	}
	for _, logs := range []string{rp.log.String(), agentErr.String()} {
		for _, k := range []string{adminKey, runtimeKey, clientKey} {
			if strings.Contains(logs, k) {
				t.Fatal("a key appears in a log")
			}
		}
	}
}

// TestFirstAdminKeyNeedsTheAdminListener: with the admin listener off there
// is no admin API, so the first start prints no admin key; the first start
// with the listener on prints it, once.
func TestFirstAdminKeyNeedsTheAdminListener(t *testing.T) {
	dir := t.TempDir()
	relayAddr := freeAddr(t)
	yaml := "relay:\n  listen-addr: " + relayAddr + "\n  data-dir: " + filepath.Join(dir, "data") + "\n"
	var stdout, log enginetest.SyncBuffer
	stop := startStoppable(t, &cli{stdout: &stdout, stderr: &log, env: envOf(nil)},
		"relay", "--config", writeFile(t, "off.yaml", yaml+"  admin-listen-addr: \"\"\n"), "--log.format", "json")
	enginetest.WaitFor(t, "relay listening", func() bool { return strings.Contains(log.String(), `"msg":"relay listening"`) })
	stop()
	if strings.Contains(stdout.String(), "sk_adm_") || strings.Contains(log.String(), "admin key") {
		t.Fatalf("a relay without an admin listener made an admin key:\n%s\n%s", stdout.String(), log.String())
	}
	adminAddr := freeAddr(t)
	cfg := writeFile(t, "on.yaml", yaml+"  admin-listen-addr: "+adminAddr+"\n")
	rp := startRelayProcess(t, cfg, adminAddr, nil)
	if !regexp.MustCompile(`sk_adm_[0-9A-Za-z]{40}`).MatchString(rp.stdout.String()) || !strings.Contains(rp.stdout.String(), "--admin-url http://"+adminAddr) {
		t.Fatalf("the first start with the admin listener printed no admin key:\n%s", rp.stdout.String())
	}
	rp.stop()
	if rp = startRelayProcess(t, cfg, adminAddr, nil); strings.Contains(rp.stdout.String(), "sk_adm_") {
		t.Fatalf("a second start printed an admin key again:\n%s", rp.stdout.String())
	}
}

// TestRelaysShareNATSStore: two `sluice relay` processes on one NATS
// server share their tunnels and keys, and their work queue, each on one
// connection to NATS: only the first prints an admin key,
// a tunnel made on one is served by the other, and a key revoked on one is
// refused by the other within a second.
func TestRelaysShareNATSStore(t *testing.T) {
	srv, err := natsconn.StartServer(natsconn.ServerOptions{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	start := func() (relayAddr, adminAddr string, p *relayProcess) {
		relayAddr, adminAddr = freeAddr(t), freeAddr(t)
		cfg := writeFile(t, "relay.yaml", "relay:\n  listen-addr: "+relayAddr+"\n  admin-listen-addr: "+adminAddr+
			"\n  nats:\n    url: "+srv.ClientURL()+"\n")
		return relayAddr, adminAddr, startRelayProcess(t, cfg, adminAddr, nil)
	}
	_, adminA, a := start()
	relayB, adminB, b := start()
	keys := regexp.MustCompile(`sk_adm_[0-9A-Za-z]{40}`)
	adminKey := keys.FindString(a.stdout.String())
	if adminKey == "" || keys.MatchString(b.stdout.String()) {
		t.Fatalf("admin keys printed: first %q, second %q", a.stdout.String(), b.stdout.String())
	}
	if !strings.Contains(a.log.String(), `"store":"nats bucket sluice_relay"`) {
		t.Fatalf("the relay does not say where its store is:\n%s", a.log.String())
	}
	for _, p := range []*relayProcess{a, b} {
		if !strings.Contains(p.log.String(), `"msg":"relay joined NATS: replicas share work"`) {
			t.Fatalf("a relay on NATS did not join the work queue:\n%s", p.log.String())
		}
	}
	// One connection each carries both the store and the queue.
	if n := srv.NumClients(); n != 2 {
		t.Fatalf("two relays hold %d NATS connections, want 2 (one each)", n)
	}
	admin := func(addr string, args ...string) string {
		t.Helper()
		code, out, errb := runCLI(t, map[string]string{"SLUICE_ADMIN_URL": "http://" + addr, "SLUICE_ADMIN_KEY": adminKey}, append([]string{"admin"}, args...)...)
		if code != exitOK {
			t.Fatalf("sluice admin %v: exit %d\n%s", args, code, errb)
		}
		return out
	}
	id := tunnelIDRe.FindString(admin(adminA, "tunnels", "create", "--name", "shared"))
	out := admin(adminA, "keys", "create", "--tunnel", id, "--scope", "runtime", "--name", "agent")
	rk, kid := regexp.MustCompile(`sk_run_[0-9A-Za-z]{40}`).FindString(out), keyIDRe.FindString(out)
	poll := func() int {
		req, _ := http.NewRequest("GET", "http://"+relayB+"/v1/tunnels/"+id+"/poll?timeout_ms=1", nil)
		req.Header.Set("Authorization", "Bearer "+rk)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	enginetest.WaitFor(t, "the other relay serves the new tunnel", func() bool { return poll() == 204 })
	if out := admin(adminB, "tunnels", "list"); !strings.Contains(out, id) {
		t.Fatalf("the other relay does not list the tunnel:\n%s", out)
	}
	admin(adminA, "keys", "revoke", kid, "--tunnel", id)
	revoked := time.Now()
	for poll() != 401 {
		if time.Since(revoked) > time.Second {
			t.Fatal("the other relay accepts the key a second after its revocation")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = b
}
