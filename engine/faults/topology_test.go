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

// runSound runs a load of the given shape (its concurrency, duration or
// calls, tool sleep, padding, prefix, failover and stop; a zero Hung is
// 30 s) against the tunnel on relays, joins it with the count server's
// executions, logs the summary, and fails the test on any hung,
// duplicated or mismatched call (assertSound).
func (tp *topo) runSound(shape faultkit.Load, relays ...*relayProc) *faultkit.Result {
	tp.t.Helper()
	l := tp.load(relays...)
	shape.URLs, shape.Header = l.URLs, l.Header
	if shape.Hung == 0 {
		shape.Hung = l.Hung
	}
	res := shape.Run(context.Background())
	res.Join(tp.count.executions(tp.t))
	tp.t.Logf("%s", res.Summary())
	assertSound(tp.t, res)
	return res
}

// standardOptions are what a scenario on the standard topology changes.
type standardOptions struct {
	relay relayOptions
	// agents is how many agents serve the tunnel (0 = one).
	agents int
	// agent is every agent's flags.
	agent agentOptions
	// agentConfig, when set, is the agents' config file (YAML: its
	// pipeline, audit log, …), passed with --config; standard.agentConfig
	// is its path, for a scenario that rewrites it.
	agentConfig string
	// noWait starts the load as soon as the agents are ready, without
	// first waiting for a call to succeed (for a chain that fails every
	// call).
	noWait bool
}

// standard is the standard topology: the counting MCP server, one relay,
// and its agents, serving (unless noWait) when startStandard returns.
type standard struct {
	*topo
	relay       *relayProc
	agents      []*agentProc
	agentConfig string // path of the agents' config file ("" without one)
}

// startStandard starts the standard topology of a new scenario.
func startStandard(t *testing.T, o standardOptions) *standard {
	t.Helper()
	s := &standard{topo: newTopo(t)}
	s.startCountServer()
	s.relay = s.startRelay(o.relay)
	if o.agentConfig != "" {
		s.agentConfig = writeFile(t, s.dir, "agent.yaml", o.agentConfig)
		o.agent.args = append([]string{"--config", s.agentConfig}, o.agent.args...)
	}
	for range max(o.agents, 1) {
		s.agents = append(s.agents, s.startAgent(s.relay, o.agent))
	}
	if !o.noWait {
		s.waitServing(s.relay, 20*time.Second)
	}
	return s
}

// sound runs a load of the given shape through the relay (runSound).
func (s *standard) sound(shape faultkit.Load) *faultkit.Result {
	s.t.Helper()
	return s.runSound(shape, s.relay)
}

// assertSound fails the test on any hung, duplicated or mismatched call.
func assertSound(t testing.TB, res *faultkit.Result) {
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

// assertNoErrors fails the test on any call answered with an error;
// during says when ("under steady load").
func assertNoErrors(t testing.TB, res *faultkit.Result, during string) {
	t.Helper()
	if n := res.Count(faultkit.ClassError); n > 0 {
		t.Errorf("%d calls failed %s: %v (first: %s)", n, during, res.Kinds(), firstOf(res, faultkit.ClassError))
	}
}

// assertKinds fails the test for each error kind that ok refuses; want
// says which kinds the scenario allows.
func assertKinds(t testing.TB, res *faultkit.Result, want string, ok func(kind string) bool) {
	t.Helper()
	for k, n := range res.Kinds() {
		if !ok(k) {
			t.Errorf("%d calls failed with %s, want %s", n, k, want)
		}
	}
}

// assertOKAfter fails the test unless a call that started after since
// succeeded; what names the moment ("the relay came back").
func assertOKAfter(t testing.TB, res *faultkit.Result, since time.Time, what string) {
	t.Helper()
	if len(res.Where(func(c *faultkit.Call) bool { return c.Class == faultkit.ClassOK && c.Start.After(since) })) == 0 {
		t.Errorf("no call succeeded after %s", what)
	}
}

// latestEnd is how long after t0 the last of calls ended.
func latestEnd(calls []*faultkit.Call, t0 time.Time) time.Duration {
	latest := time.Duration(0)
	for _, c := range calls {
		latest = max(latest, c.End.Sub(t0))
	}
	return latest
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
