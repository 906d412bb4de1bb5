package faults

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/faults/faultkit"
	"github.com/sluicemcp/sluice/engine/relay"
)

// tunnel is one tunnel of a scenario: its ids and key files. The relay
// knows two client keys: clientKey ("load") and otherKey ("other").
type tunnel struct {
	id             string
	runtimeKey     string
	clientKey      string
	otherKey       string
	runtimeKeyFile string
	clientKeyFile  string
	otherKeyFile   string
}

// topo is a scenario's processes: the counting MCP server, relays and agents.
type topo struct {
	t     *testing.T
	dir   string
	tun   tunnel
	count *countServer
}

func newTopo(t *testing.T) *topo {
	t.Helper()
	dir := t.TempDir()
	tn := tunnel{id: relay.NewTunnelID(), runtimeKey: relay.NewKey("sk-faults-rt-"), clientKey: relay.NewKey("sk-faults-cl-")}
	tn.runtimeKeyFile = writeFile(t, dir, "runtime.key", tn.runtimeKey)
	tn.clientKeyFile = writeFile(t, dir, "client.key", tn.clientKey)
	tn.otherKey = relay.NewKey("sk-faults-ot-")
	tn.otherKeyFile = writeFile(t, dir, "other.key", tn.otherKey)
	return &topo{t: t, dir: dir, tun: tn}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// countServer is the counting MCP server in a process of its own.
type countServer struct {
	*faultkit.Proc
	URL string
	log string
}

func (tp *topo) startCountServer() *countServer {
	t := tp.t
	t.Helper()
	addr := faultkit.FreeAddr(t)
	log := filepath.Join(tp.dir, "executions.log")
	p := faultkit.Start(t, "countserver", []string{roleEnv + "=countserver", "ADDR=" + addr, "COUNT_LOG=" + log}, os.Args[0])
	cs := &countServer{Proc: p, URL: "http://" + addr + "/mcp", log: log}
	faultkit.WaitHTTP(t, cs.URL, 10*time.Second, func(int) bool { return true })
	tp.count = cs
	return cs
}

// executions reads how often each call ran.
func (cs *countServer) executions(t *testing.T) faultkit.Executions {
	t.Helper()
	ex, err := faultkit.ReadExecutions(cs.log)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// relayProc is one `sluice relay`.
type relayProc struct {
	*faultkit.Proc
	addr     string // public listener, fixed across restarts
	URL      string
	adminURL string
	config   string
}

// relayOptions are what a scenario changes in the relay's config.
type relayOptions struct {
	responseTimeout time.Duration // default 10s
	extraYAML       string        // appended under relay:
	env             []string
}

func (tp *topo) startRelay(o relayOptions) *relayProc {
	t := tp.t
	t.Helper()
	if o.responseTimeout == 0 {
		o.responseTimeout = 10 * time.Second
	}
	addr, admin := faultkit.FreeAddr(t), faultkit.FreeAddr(t)
	cfg := fmt.Sprintf(`log:
  format: json
  level: info
relay:
  listen-addr: %s
  admin-listen-addr: %s
  response-timeout: %s
  data-dir: %s
%s
  tunnels:
    - id: %s
      name: faults
      runtime-key: file:%s
      client-keys:
        - name: load
          key: file:%s
        - name: other
          key: file:%s
`, addr, admin, o.responseTimeout, filepath.Join(tp.dir, "data-"+strings.ReplaceAll(addr, ":", "_")), indent(o.extraYAML, "  "), tp.tun.id, tp.tun.runtimeKeyFile, tp.tun.clientKeyFile, tp.tun.otherKeyFile)
	path := writeFile(t, tp.dir, "relay-"+strings.ReplaceAll(addr, ":", "_")+".yaml", cfg)
	p := faultkit.Start(t, "relay", o.env, sluiceBin, "relay", "--config", path)
	r := &relayProc{Proc: p, addr: addr, URL: "http://" + addr, adminURL: "http://" + admin, config: path}
	faultkit.WaitHTTP(t, r.adminURL+"/healthz", 20*time.Second, func(s int) bool { return s == 200 })
	return r
}

// restart starts a stopped relay again on the same addresses.
func (r *relayProc) restart(t *testing.T) {
	t.Helper()
	r.Restart(t)
	faultkit.WaitHTTP(t, r.adminURL+"/healthz", 20*time.Second, func(s int) bool { return s == 200 })
}

func indent(s, pre string) string {
	if strings.TrimSpace(s) == "" {
		return ""
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pre + l
	}
	return strings.Join(lines, "\n")
}

// mcpURL is the tunnel's MCP endpoint on relay r.
func (tp *topo) mcpURL(r *relayProc) string { return r.URL + "/v1/mcp/" + tp.tun.id }

// agentProc is one `sluice run`.
type agentProc struct {
	*faultkit.Proc
	healthURL string
}

// agentOptions are what a scenario changes in an agent's flags.
type agentOptions struct {
	maxInflight, maxConcurrent int
	args                       []string
	env                        []string
}

func (tp *topo) startAgent(r *relayProc, o agentOptions) *agentProc {
	tp.t.Helper()
	return tp.startAgentAt(r.URL, o)
}

// startAgentAt starts an agent polling baseURL (a relay, or a load
// balancer in front of several).
func (tp *topo) startAgentAt(baseURL string, o agentOptions) *agentProc {
	t := tp.t
	t.Helper()
	if tp.count == nil {
		t.Fatal("start the count server first")
	}
	if o.maxInflight == 0 {
		o.maxInflight = 64
	}
	if o.maxConcurrent == 0 {
		o.maxConcurrent = 64
	}
	urlFile := filepath.Join(t.TempDir(), "health.url")
	args := append([]string{sluiceBin, "run",
		"--control-plane.base-url", baseURL,
		"--control-plane.tunnel-id", tp.tun.id,
		"--control-plane.api-key", "file:" + tp.tun.runtimeKeyFile,
		"--control-plane.poll-timeout", "5s",
		"--control-plane.max-inflight", fmt.Sprint(o.maxInflight),
		"--mcp.max-concurrent-requests", fmt.Sprint(o.maxConcurrent),
		"--mcp.server-url", tp.count.URL,
		"--health.listen-addr", "127.0.0.1:0",
		"--health.url-file", urlFile,
		"--log.format", "json",
		"--drain-timeout", "5s",
	}, o.args...)
	p := faultkit.Start(t, "agent", o.env, args...)
	a := &agentProc{Proc: p}
	a.healthURL = faultkit.WaitFile(t, urlFile, 20*time.Second)
	faultkit.WaitHTTP(t, a.healthURL+"/readyz", 20*time.Second, func(s int) bool { return s == 200 })
	return a
}

// load returns a load against the tunnel on the given relays.
func (tp *topo) load(relays ...*relayProc) *faultkit.Load {
	urls := make([]string, len(relays))
	for i, r := range relays {
		urls[i] = tp.mcpURL(r)
	}
	return &faultkit.Load{URLs: urls, Header: http.Header{"Authorization": {"Bearer " + tp.tun.clientKey}}, Hung: 30 * time.Second}
}

// run runs l, joins it with the count server's executions and logs the
// summary.
func (tp *topo) run(ctx context.Context, l *faultkit.Load) *faultkit.Result {
	res := l.Run(ctx)
	res.Join(tp.count.executions(tp.t))
	tp.t.Logf("%s", res.Summary())
	return res
}

// assertSound fails the test on any hung, duplicated or mismatched call.
func assertSound(t *testing.T, res *faultkit.Result) {
	t.Helper()
	if n := res.Count(faultkit.ClassHung); n > 0 {
		t.Errorf("%d calls hung (first: %s)", n, firstOf(res, faultkit.ClassHung))
	}
	if n := res.Count(faultkit.ClassMismatched); n > 0 {
		t.Errorf("%d calls got an answer not their own (first: %s)", n, firstOf(res, faultkit.ClassMismatched))
	}
	if n := len(res.Duplicated); n > 0 {
		t.Errorf("%d calls executed more than once (first: %s ×%d)", n, res.Duplicated[0].ID, res.Duplicated[0].Executed)
	}
}

func firstOf(res *faultkit.Result, class string) string {
	for _, c := range res.Calls {
		if c.Class == class {
			return c.ID + " " + c.Kind + " " + c.Detail
		}
	}
	return ""
}

// waitServing waits until a call through relay r succeeds.
func (tp *topo) waitServing(r *relayProc, d time.Duration) {
	t := tp.t
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		l := tp.load(r)
		l.Calls, l.Prefix, l.Hung = 1, "probe", 5*time.Second
		res := l.Run(context.Background())
		if res.Count(faultkit.ClassOK) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tunnel not serving through %s within %s: %s", r.URL, d, res.Summary())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
