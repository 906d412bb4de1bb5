package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/faults/faultkit"
)

// The slow-body attack: slowBodyConns connections with a valid client key,
// all dialled at once, each declaring a 100 KB body and trickling it a byte
// a second; every connection the relay answers is dialled again a second
// later, at most slowBodyRate new connections a second (slowhttptest's -c
// 3000 -r 100; its default rate is 50).
const (
	slowBodyConns = 3000
	slowBodyRate  = 100
)

// TestSlowBodiesDoNotStarveOtherKeys: the slow-body attack above with the
// "other" key while the "load" key makes steady calls. The relay reads
// what arrives (never what is declared), gives the attacking key its
// max-concurrent-per-key (256), refuses the rest at once (429) and cuts
// the trickles at body-read-timeout (408). Bars: relay RSS rises by less
// than 100 MiB, and the steady key's calls/s or p50 stays within 20% of the
// same load without the attack (five rounds of an attacked and a quiet
// window, logged; `make bench-slow-bodies` reports them). The test fails on
// starvation: the steady key below half its calls/s and p50 more than
// doubled, which no loaded machine explains. A faster reconnect flood is not a slow-body
// attack: each refused connection costs the relay its TCP handshake and
// teardown (see BenchmarkRefusedRequest in engine/relay), which only a
// connection-rate limit in front of the relay can shed.
func TestSlowBodiesDoNotStarveOtherKeys(t *testing.T) {
	conns := raiseFileLimit(t, slowBodyConns)
	s := startStandard(t, standardOptions{})
	r := s.relay

	steady := func(prefix string, d time.Duration) *faultkit.Result {
		res := s.sound(faultkit.Load{Concurrency: 8, Duration: d, Prefix: prefix})
		assertNoErrors(t, res, prefix+": the steady key's calls")
		return res
	}
	steady("warm", 2*time.Second)
	rssBefore := r.RSS()
	ctx, stop := context.WithCancel(context.Background())
	var (
		peak    int64
		sampled sync.WaitGroup
	)
	sampled.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, r.RSS())
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})

	// Windows with and without the attack alternate, so that what else
	// runs on the machine weighs on both alike: each attacked window is
	// compared with the quiet windows on either side of it, and the median
	// of the rounds is what counts. One attack runs throughout (3,000
	// connections at once, then the redials), paused (SIGSTOP) for the
	// quiet windows: the relay then only holds the connections it had let
	// in, idle, until it cuts them at body-read-timeout.
	const rounds = 5
	quiet := []*faultkit.Result{steady("quiet0", 4*time.Second)}
	var loud []*faultkit.Result
	attacker := s.startSlowBodies(r, slowBodies{conns: conns, declared: 100_000, trickle: time.Second, redial: time.Second, rate: slowBodyRate})
	time.Sleep(2 * time.Second) // the 3,000 dialled, the first refused ones dialled again
	for i := range rounds {
		if i > 0 {
			attacker.pause(t, false)
			time.Sleep(time.Second)
		}
		loud = append(loud, steady(fmt.Sprintf("attack%d", i), 4*time.Second))
		attacker.pause(t, true)
		quiet = append(quiet, steady(fmt.Sprintf("quiet%d", i+1), 4*time.Second))
	}
	ares := attacker.stop(t)
	stop()
	sampled.Wait()

	t.Logf("attack: %s", ares)
	t.Logf("relay RSS: %d MiB before, %d MiB at most during the attacks (+%d MiB), %d MiB after",
		rssBefore>>20, peak>>20, (peak-rssBefore)>>20, r.RSS()>>20)
	rates, p50s := make([]float64, rounds), make([]float64, rounds)
	for i, l := range loud {
		q0, q1 := quiet[i], quiet[i+1]
		base, baseP50 := (rate(q0)+rate(q1))/2, (q0.Percentile(50, nil)+q1.Percentile(50, nil))/2
		rates[i], p50s[i] = rate(l)/base, float64(l.Percentile(50, nil))/float64(baseP50)
		t.Logf("round %d: steady key %.0f calls/s p50 %s under attack; %.0f calls/s p50 %s without (%.0f/%s before, %.0f/%s after): %.0f%% of the calls/s, p50 ×%.2f",
			i, rate(l), l.Percentile(50, nil).Round(10*time.Microsecond), base, baseP50.Round(10*time.Microsecond),
			rate(q0), q0.Percentile(50, nil).Round(10*time.Microsecond), rate(q1), q1.Percentile(50, nil).Round(10*time.Microsecond),
			100*rates[i], p50s[i])
	}
	rateRatio, p50Ratio := median(rates), median(p50s)
	t.Logf("median over %d rounds: %.0f%% of the calls/s, p50 ×%.2f", rounds, 100*rateRatio, p50Ratio)

	if ares.Requests < int64(conns) {
		t.Errorf("the attack made %d requests, fewer than its %d connections: the fault did not happen", ares.Requests, conns)
	}
	if ares.Answers[http.StatusTooManyRequests] == 0 || ares.Answers[http.StatusRequestTimeout] == 0 {
		t.Errorf("the attack got no 429 or no 408: %s", ares)
	}
	for st := range ares.Answers {
		if st != http.StatusTooManyRequests && st != http.StatusRequestTimeout {
			t.Errorf("the attack got %d answers %d", ares.Answers[st], st)
		}
	}
	if grew := peak - rssBefore; grew >= 100<<20 {
		t.Errorf("relay RSS rose by %d MiB under the attack (bar: < 100 MiB)", grew>>20)
	}
	// The 20% bar is a measurement (make bench-slow-bodies): what fails
	// here is starvation.
	if rateRatio < 0.5 && p50Ratio > 2 {
		t.Errorf("the attack starved the steady key: %.0f%% of its calls/s, p50 ×%.2f", 100*rateRatio, p50Ratio)
	}
}

// median is the middle value of xs (sorted in place).
func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// rate is the ok calls per second of res.
func rate(res *faultkit.Result) float64 {
	return float64(res.Count(faultkit.ClassOK)) / res.Ended.Sub(res.Began).Seconds()
}

// raiseFileLimit raises this process's open-file limit (which the relay it
// starts inherits) to hold want connections on both ends, and returns want,
// or as many as the hard limit allows.
func raiseFileLimit(t *testing.T, want int) int {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	need := uint64(want) + 512
	if lim.Cur < need {
		lim.Cur = min(need, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	if lim.Cur < need {
		got := int(lim.Cur) - 512
		t.Logf("open-file limit %d: the attack holds %d connections instead of %d", lim.Cur, got, want)
		return got
	}
	return want
}

// slowBodies configures the slow-body attacker process.
type slowBodies struct {
	conns, declared, rate int
	trickle, redial       time.Duration
}

// attackerProc is the slow-body attacker: the test binary in the role
// "slowbodies", a client process of its own.
type attackerProc struct{ *faultkit.Proc }

// startSlowBodies starts the attacker against relay r with the "other" key.
func (tp *topo) startSlowBodies(r *relayProc, o slowBodies) *attackerProc {
	env := []string{roleEnv + "=slowbodies", "SLOW_URL=" + tp.mcpURL(r), "SLOW_KEY_FILE=" + tp.tun.otherKeyFile,
		"SLOW_CONNS=" + strconv.Itoa(o.conns), "SLOW_DECLARED=" + strconv.Itoa(o.declared),
		"SLOW_TRICKLE=" + o.trickle.String(), "SLOW_REDIAL=" + o.redial.String(), "SLOW_RATE=" + strconv.Itoa(o.rate)}
	return &attackerProc{faultkit.Start(tp.t, "slowbodies", env, os.Args[0])}
}

// pause stops (SIGSTOP) or resumes (SIGCONT) the attacker.
func (a *attackerProc) pause(t *testing.T, stop bool) {
	t.Helper()
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if err := a.Signal(sig); err != nil {
		t.Fatalf("attacker %s: %v", sig, err)
	}
}

// stop ends the attack and returns what it got.
func (a *attackerProc) stop(t *testing.T) *faultkit.SlowResult {
	t.Helper()
	a.pause(t, false)
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop the attacker: %v", err)
	}
	if err := a.Wait(20 * time.Second); err != nil {
		t.Fatalf("attacker: %v\n%s", err, a.Tail(20))
	}
	lines := a.LogLines(`"requests"`)
	var res faultkit.SlowResult
	if len(lines) == 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &res) != nil {
		t.Fatalf("attacker wrote no result:\n%s", a.Tail(20))
	}
	return &res
}

// runSlowBodies is the attacker process: it attacks until SIGTERM, then
// prints its result as one JSON line.
func runSlowBodies() error {
	key, err := os.ReadFile(os.Getenv("SLOW_KEY_FILE"))
	if err != nil {
		return err
	}
	s := faultkit.SlowBodies{URL: os.Getenv("SLOW_URL"), Header: http.Header{"Authorization": {"Bearer " + strings.TrimSpace(string(key))}}}
	for _, f := range []struct {
		env string
		n   *int
	}{{"SLOW_CONNS", &s.Conns}, {"SLOW_DECLARED", &s.Declared}, {"SLOW_RATE", &s.Rate}} {
		if *f.n, err = strconv.Atoi(os.Getenv(f.env)); err != nil {
			return fmt.Errorf("%s: %w", f.env, err)
		}
	}
	for _, f := range []struct {
		env string
		d   *time.Duration
	}{{"SLOW_TRICKLE", &s.Trickle}, {"SLOW_REDIAL", &s.Redial}} {
		if *f.d, err = time.ParseDuration(os.Getenv(f.env)); err != nil {
			return fmt.Errorf("%s: %w", f.env, err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return json.NewEncoder(os.Stdout).Encode(s.Run(ctx))
}
