package faultkit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Classes of a call.
const (
	ClassOK         = "ok"         // its own answer, from an execution of its own
	ClassError      = "error"      // an error answer (HTTP or JSON-RPC) or a broken connection
	ClassHung       = "hung"       // no answer within Load.Hung
	ClassMismatched = "mismatched" // an answer that is not its own (another call's, or one never executed)
)

// Load is a closed-loop load: Concurrency workers each send one tools/call
// of the counting server's work tool at a time, every call with an id of its
// own (as JSON-RPC id and as the tool's id argument), until Duration has
// passed or Calls calls were started.
type Load struct {
	// URLs are the MCP endpoints, used round-robin per call.
	URLs []string
	// Header is sent on every call (the client key).
	Header http.Header
	// Concurrency is the number of workers (default 1).
	Concurrency int
	// Duration bounds the time calls are started in (0 = until Calls).
	Duration time.Duration
	// Calls bounds the number of calls (0 = until Duration).
	Calls int
	// Hung is how long a call may go unanswered before it is hung (default
	// 60 s); the client then gives up on it.
	Hung time.Duration
	// SleepMS makes the tool sleep that long per call.
	SleepMS int
	// PadBytes adds that many bytes of argument to each call.
	PadBytes int
	// Prefix starts every call id (default "c").
	Prefix string
	// Client sends the calls (nil = one with enough connections).
	Client *http.Client
	// Failover sends a call that cannot connect to its URL (nothing
	// listens: that replica is down) to the next URL at once, and skips the
	// dead URL for a second, as a load balancer's health check would. A
	// call whose connection broke after it was sent is not sent again.
	Failover bool
	// Stop, when closed, ends the load as Duration does: no call starts
	// after it, the calls in flight finish.
	Stop <-chan struct{}
}

// Call is one call's record.
type Call struct {
	ID       string
	URL      string
	Start    time.Time
	End      time.Time // when the answer was complete, or the client gave up
	Status   int       // HTTP status, 0 for none
	Class    string
	Kind     string // for errors: transport, http_503, rpc_-32603, …
	Detail   string // a short excerpt of what came back
	Executed int    // filled by Result.Join: how often the server ran it
	// Redirected counts the URLs that refused the call before URL took it
	// (Load.Failover).
	Redirected int
	dialFailed bool
	// LastExecuted is when the server last ran it (Result.Join).
	LastExecuted time.Time
}

// Duration is how long the call took.
func (c *Call) Duration() time.Duration { return c.End.Sub(c.Start) }

// Run runs the load and returns every call, classified (duplicates are only
// known after Join with the server's counts). It returns once every call
// started has an answer or is hung; ctx ends it early.
func (l *Load) Run(ctx context.Context) *Result {
	conc := max(l.Concurrency, 1)
	hung := l.Hung
	if hung <= 0 {
		hung = 60 * time.Second
	}
	prefix := l.Prefix
	if prefix == "" {
		prefix = "c"
	}
	client := l.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        conc * 2,
			MaxIdleConnsPerHost: conc * 2,
			IdleConnTimeout:     time.Minute,
		}}
	}
	pad := strings.Repeat("x", l.PadBytes)
	down := &downSet{until: make(map[string]time.Time)}
	var (
		next    atomic.Int64
		mu      sync.Mutex
		calls   []*Call
		wg      sync.WaitGroup
		stopAt  time.Time
		started = time.Now()
	)
	if l.Duration > 0 {
		stopAt = started.Add(l.Duration)
	}
	for w := 0; w < conc; w++ {
		wg.Go(func() {
			for ctx.Err() == nil {
				n := next.Add(1)
				if l.Calls > 0 && n > int64(l.Calls) {
					return
				}
				if !stopAt.IsZero() && time.Now().After(stopAt) {
					return
				}
				select {
				case <-l.Stop: // nil: never
					return
				default:
				}
				id := prefix + "-" + strconv.FormatInt(n, 10)
				c := l.failover(ctx, client, int(n-1), id, pad, hung, down)
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Slice(calls, func(i, j int) bool { return calls[i].Start.Before(calls[j].Start) })
	return &Result{Calls: calls, Began: started, Ended: time.Now()}
}

// downSet is the URLs Failover skips, until when.
type downSet struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (d *downSet) isDown(url string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return now.Before(d.until[url])
}

func (d *downSet) mark(url string, now time.Time) {
	d.mu.Lock()
	d.until[url] = now.Add(time.Second)
	d.mu.Unlock()
}

// failover makes call n on its round-robin URL, or with Failover on the
// next one that is up and accepts it.
func (l *Load) failover(ctx context.Context, client *http.Client, n int, id, pad string, hung time.Duration, down *downSet) *Call {
	var c *Call
	redirected := 0
	for i := range len(l.URLs) {
		url := l.URLs[(n+i)%len(l.URLs)]
		if l.Failover && i < len(l.URLs)-1 && down.isDown(url, time.Now()) {
			continue
		}
		c = l.call(ctx, client, url, id, pad, hung)
		if !l.Failover || !c.dialFailed {
			break
		}
		down.mark(url, time.Now())
		redirected++
	}
	c.Redirected = redirected
	if l.Failover && c.dialFailed {
		// Every replica refused: back off a little, as a client would,
		// rather than spin on refused connections.
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

func (l *Load) call(ctx context.Context, client *http.Client, url, id, pad string, hung time.Duration) *Call {
	c := &Call{ID: id, URL: url, Start: time.Now()}
	defer func() { c.End = time.Now() }()
	args := map[string]any{"id": id}
	if l.SleepMS > 0 {
		args["sleep_ms"] = l.SleepMS
	}
	if pad != "" {
		args["pad"] = pad
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call",
		"params": map[string]any{"name": WorkTool, "arguments": args}})
	cctx, cancel := context.WithTimeout(ctx, hung)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		c.Class, c.Kind, c.Detail = ClassError, "client", err.Error()
		return c
	}
	for k, vs := range l.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	resp, err := client.Do(req)
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			c.Class, c.Detail = ClassHung, "no answer within "+hung.String()
			return c
		}
		c.Class, c.Kind, c.Detail = ClassError, "transport", short(err.Error())
		var op *net.OpError
		c.dialFailed = errors.As(err, &op) && op.Op == "dial"
		return c
	}
	defer resp.Body.Close()
	c.Status = resp.StatusCode
	msg, err := readMessage(resp, id)
	if err != nil {
		switch {
		case cctx.Err() != nil && ctx.Err() == nil:
			c.Class, c.Detail = ClassHung, "answer incomplete after "+hung.String()
		case resp.StatusCode != http.StatusOK:
			c.Class, c.Kind = ClassError, "http_"+strconv.Itoa(resp.StatusCode)
		default:
			c.Class, c.Kind, c.Detail = ClassError, "transport", short(err.Error())
		}
		return c
	}
	classify(c, resp.StatusCode, msg, id)
	return c
}

// readMessage reads the JSON-RPC answer: a JSON body, or the event of an
// event stream that carries the response to id.
func readMessage(resp *http.Response, id string) ([]byte, error) {
	ct := resp.Header.Get("Content-Type")
	if !strings.HasPrefix(strings.ToLower(ct), "text/event-stream") {
		b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("data:")):
			data = append(data, bytes.TrimSpace(line[5:])...)
		case len(line) == 0 && len(data) > 0:
			var m struct {
				ID     json.RawMessage `json:"id"`
				Method string          `json:"method"`
			}
			if json.Unmarshal(data, &m) == nil && m.Method == "" && len(m.ID) > 0 {
				return data, nil // the response (whoever it is for: classify checks)
			}
			data = nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(data) > 0 {
		return data, nil
	}
	return nil, errors.New("event stream ended without a response")
}

func classify(c *Call, status int, msg []byte, id string) {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Result *struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
			IsError bool `json:"isError"`
		} `json:"result"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		c.Class, c.Kind, c.Detail = ClassError, "http_"+strconv.Itoa(status), short(string(msg))
		return
	}
	var gotID string
	_ = json.Unmarshal(m.ID, &gotID)
	switch {
	case m.Error != nil:
		if len(m.ID) > 0 && string(m.ID) != "null" && gotID != id {
			c.Class, c.Detail = ClassMismatched, "error for id "+string(m.ID)
			return
		}
		c.Class, c.Kind, c.Detail = ClassError, "rpc_"+strconv.Itoa(m.Error.Code), short(m.Error.Message)
		if status != http.StatusOK {
			c.Kind = "http_" + strconv.Itoa(status) + "/" + c.Kind
		}
	case m.Result == nil:
		c.Class, c.Kind, c.Detail = ClassError, "http_"+strconv.Itoa(status), short(string(msg))
	case gotID != id:
		c.Class, c.Detail = ClassMismatched, "answer for id "+string(m.ID)
	case len(m.Result.Content) != 1 || m.Result.Content[0].Text != Done(id):
		if m.Result.IsError {
			c.Class, c.Kind = ClassError, "tool_error"
			return
		}
		c.Class, c.Detail = ClassMismatched, "content "+short(string(msg))
	default:
		c.Class = ClassOK
	}
}

func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// Result is every call of a load.
type Result struct {
	Calls        []*Call
	Began, Ended time.Time
	// Duplicated lists the calls the server executed more than once (Join).
	Duplicated []*Call
	// Late lists calls that did not end ok and were executed after their
	// client had its answer (Join): work done by surprise.
	Late []*Call
	// Phantom lists executions of ids no call of this load sent (Join).
	Phantom []string
	joined  bool
}

// Join records, from the counting server's executions, how often each call
// was executed: a call executed more than once is duplicated, an ok answer
// for a call that was never executed is mismatched (it cannot be its own),
// and an execution after its client had given up with an error is late.
func (r *Result) Join(ex Executions) {
	seen := make(map[string]bool, len(r.Calls))
	r.Duplicated, r.Late = r.Duplicated[:0], r.Late[:0]
	for _, c := range r.Calls {
		seen[c.ID] = true
		e := ex[c.ID]
		c.Executed, c.LastExecuted = e.Count, e.Last
		if c.Executed > 1 {
			r.Duplicated = append(r.Duplicated, c)
		}
		if c.Class == ClassOK && c.Executed == 0 {
			c.Class, c.Detail = ClassMismatched, "ok answer for a call the server never executed"
		}
		if c.Class != ClassOK && c.Executed > 0 && c.LastExecuted.After(c.End) {
			r.Late = append(r.Late, c)
		}
	}
	r.Phantom = r.Phantom[:0]
	for id := range ex {
		if !seen[id] && strings.HasPrefix(id, prefixOf(r)) {
			r.Phantom = append(r.Phantom, id)
		}
	}
	slices.Sort(r.Phantom)
	r.joined = true
}

func prefixOf(r *Result) string {
	if len(r.Calls) == 0 {
		return "\x00"
	}
	p, _, _ := strings.Cut(r.Calls[0].ID, "-")
	return p + "-"
}

// Count returns the number of calls of class.
func (r *Result) Count(class string) int {
	n := 0
	for _, c := range r.Calls {
		if c.Class == class {
			n++
		}
	}
	return n
}

// Kinds counts the error kinds.
func (r *Result) Kinds() map[string]int {
	out := map[string]int{}
	for _, c := range r.Calls {
		if c.Class == ClassError {
			out[c.Kind]++
		}
	}
	return out
}

// Of returns the calls of class.
func (r *Result) Of(class string) []*Call {
	return r.Where(func(c *Call) bool { return c.Class == class })
}

// Where returns the calls for which f holds.
func (r *Result) Where(f func(*Call) bool) []*Call {
	var out []*Call
	for _, c := range r.Calls {
		if f(c) {
			out = append(out, c)
		}
	}
	return out
}

// Percentile returns the p-th percentile (0..100) of the durations of the
// calls for which f holds (nil = all ok calls).
func (r *Result) Percentile(p float64, f func(*Call) bool) time.Duration {
	if f == nil {
		f = func(c *Call) bool { return c.Class == ClassOK }
	}
	var ds []time.Duration
	for _, c := range r.Calls {
		if f(c) {
			ds = append(ds, c.Duration())
		}
	}
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(p / 100 * float64(len(ds)-1))
	return ds[i]
}

// Summary is one line: totals per class, error kinds, and duplicates.
func (r *Result) Summary() string {
	var b strings.Builder
	el := r.Ended.Sub(r.Began)
	fmt.Fprintf(&b, "%d calls in %s (%.0f/s): ok %d, error %d, hung %d, mismatched %d",
		len(r.Calls), el.Round(time.Millisecond), float64(len(r.Calls))/el.Seconds(),
		r.Count(ClassOK), r.Count(ClassError), r.Count(ClassHung), r.Count(ClassMismatched))
	if r.joined {
		fmt.Fprintf(&b, ", duplicated %d, late %d, phantom %d", len(r.Duplicated), len(r.Late), len(r.Phantom))
	}
	if k := r.Kinds(); len(k) > 0 {
		keys := make([]string, 0, len(k))
		for n := range k {
			keys = append(keys, n)
		}
		slices.Sort(keys)
		b.WriteString("; errors:")
		for _, n := range keys {
			fmt.Fprintf(&b, " %s=%d", n, k[n])
		}
	}
	fmt.Fprintf(&b, "; p50 %s p99 %s", r.Percentile(50, nil).Round(100*time.Microsecond), r.Percentile(99, nil).Round(100*time.Microsecond))
	return b.String()
}
