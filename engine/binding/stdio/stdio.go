package stdio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// Defaults for the zero Config values.
const (
	DefaultMaxLineBytes = 16 << 20
	DefaultMinBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff   = 10 * time.Second
)

// Config says which child to run.
type Config struct {
	// Command is the argv of the MCP server (Command[0] is looked up in PATH).
	// Use SplitCommand to turn a configured string into argv without a shell.
	Command []string
	// Env is the child's environment (nil = this process's environment).
	Env []string
	// Dir is the child's working directory ("" = this process's).
	Dir string
	// MaxLineBytes caps one JSON-RPC line from the child (0 = DefaultMaxLineBytes).
	MaxLineBytes int
	// MinBackoff and MaxBackoff bound the restart delay after the child dies
	// (0 = DefaultMinBackoff, DefaultMaxBackoff). The delay doubles per quick
	// death and resets once a child has lived MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
}

// Options holds the optional dependencies of a Binding.
type Options struct {
	// Logger receives lifecycle and debug logs (nil = discard). Payloads are
	// never logged.
	Logger *slog.Logger
}

// Binding talks to one supervised child process. It is safe for concurrent use.
type Binding struct {
	cfg Config
	log *slog.Logger

	nextID atomic.Uint64

	mu       sync.Mutex
	cur      *proc
	ready    chan struct{} // closed when cur becomes non-nil; replaced when it dies
	startErr error         // last failure to start, while cur is nil
	closed   bool

	stop context.CancelFunc
	done chan struct{}
}

// Interface guard.
var _ binding.Binding = (*Binding)(nil)

// New starts the supervisor, which starts the child. Errors starting the child
// are reported by Do (and retried with backoff), not by New.
func New(cfg Config, opts Options) (*Binding, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("stdio binding: command is empty")
	}
	if cfg.MaxLineBytes <= 0 {
		cfg.MaxLineBytes = DefaultMaxLineBytes
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Binding{cfg: cfg, log: log, ready: make(chan struct{}), stop: cancel, done: make(chan struct{})}
	go b.supervise(ctx)
	return b, nil
}

// Info describes the binding: sessions live in the child process.
func (b *Binding) Info() binding.Info { return binding.Info{ProcAffinity: true} }

// Close stops the child and the supervisor; in-flight requests fail.
func (b *Binding) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.stop()
	<-b.done
	return nil
}

// supervise runs the child, restarting it with backoff until Close.
func (b *Binding) supervise(ctx context.Context) {
	defer close(b.done)
	backoff := b.cfg.MinBackoff
	for ctx.Err() == nil {
		started := time.Now()
		p, err := b.start(ctx)
		if err != nil {
			b.log.Warn("stdio binding: start child failed", "err", err)
			b.mu.Lock()
			b.startErr = err
			b.mu.Unlock()
		} else {
			b.mu.Lock()
			b.cur, b.startErr = p, nil
			close(b.ready)
			b.mu.Unlock()
			b.log.Info("stdio binding: child started", "pid", p.cmd.Process.Pid)

			werr := p.run()
			b.mu.Lock()
			b.cur = nil
			b.ready = make(chan struct{})
			b.mu.Unlock()
			p.failAll(&binding.Error{Source: wire.SourceTransportClosed, Kind: "connection_closed",
				Err: fmt.Errorf("mcp server process exited: %w", werr)})
			if ctx.Err() != nil {
				return
			}
			b.log.Warn("stdio binding: child exited", "err", werr)
			if time.Since(started) >= b.cfg.MaxBackoff {
				backoff = b.cfg.MinBackoff
			}
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, b.cfg.MaxBackoff)
	}
}

// start launches one child process.
func (b *Binding) start(ctx context.Context) (*proc, error) {
	cmd := exec.CommandContext(ctx, b.cfg.Command[0], b.cfg.Command[1:]...)
	cmd.Env, cmd.Dir = b.cfg.Env, b.cfg.Dir
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("stdio binding: stdin pipe: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("stdio binding: stdout pipe: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("stdio binding: stderr pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("stdio binding: start %q: %w", b.cfg.Command[0], err)
	}
	p := &proc{
		b: b, cmd: cmd, stdin: stdin, stdout: stdout, stderr: stderr,
		pending: make(map[uint64]*pending),
		tokens:  make(map[string]*pending),
	}
	return p, nil
}

// proc is one running child.
type proc struct {
	b      *Binding
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.ReadCloser
	stderr io.ReadCloser

	wmu sync.Mutex // serializes lines on stdin

	mu      sync.Mutex
	pending map[uint64]*pending
	tokens  map[string]*pending // rewritten progress token → request
	dead    error
}

// pending is one request waiting for its response.
type pending struct {
	origID    json.RawMessage
	origToken json.RawMessage
	token     string
	msgs      chan []byte // non-final messages, already rewritten back
	final     chan result // exactly one
}

type result struct {
	body []byte
	err  error
}

// run reads the child's stdout until it closes, then waits for the child.
func (p *proc) run() error {
	go p.drainStderr()
	r := bufio.NewReaderSize(p.stdout, 64<<10)
	for {
		line, err := readLine(r, p.b.cfg.MaxLineBytes)
		if len(line) > 0 {
			p.dispatch(line)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				p.b.log.Warn("stdio binding: read child stdout", "err", err)
			}
			break
		}
	}
	_ = p.stdin.Close()
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill() // stdout is gone or garbage: the child is no use
	}
	return p.cmd.Wait()
}

var errLineTooLong = errors.New("line exceeds limit")

// readLine reads one newline-terminated line of at most max bytes.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > max+1 {
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimSpace(line), err
	}
}

func (p *proc) drainStderr() {
	sc := bufio.NewScanner(p.stderr)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		p.b.log.Debug("stdio binding: child stderr", "bytes", len(sc.Bytes()))
	}
}

// lineDoc is what the reader needs from a child line.
type lineDoc struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// dispatch routes one line from the child.
func (p *proc) dispatch(line []byte) {
	var d lineDoc
	if err := json.Unmarshal(line, &d); err != nil {
		p.b.log.Debug("stdio binding: dropped non-JSON line from child", "bytes", len(line))
		return
	}
	hasID := len(d.ID) > 0 && !bytes.Equal(d.ID, []byte("null"))
	switch {
	case d.Method == "" && (d.Result != nil || d.Error != nil):
		n, err := strconv.ParseUint(string(d.ID), 10, 64)
		p.mu.Lock()
		pd := p.pending[n]
		if err == nil && pd != nil {
			p.removeLocked(n, pd)
		}
		p.mu.Unlock()
		if pd == nil {
			p.b.log.Debug("stdio binding: dropped response for unknown id")
			return
		}
		s, e, _, err := member(line, "id")
		if err != nil {
			pd.final <- result{err: &binding.Error{Source: wire.SourceProtocol, Kind: "invalid_protocol_response", Err: err}}
			return
		}
		pd.final <- result{body: splice(line, s, e, pd.origID)}
	case d.Method != "" && !hasID:
		s, e, ok, _ := path(line, "params", "progressToken")
		if !ok {
			// notifications/progress carries the token in params, not _meta.
			p.b.log.Debug("stdio binding: dropped notification without progress token", "method", d.Method)
			return
		}
		p.mu.Lock()
		pd := p.tokens[string(line[s:e])]
		p.mu.Unlock()
		if pd == nil {
			p.b.log.Debug("stdio binding: dropped notification for unknown token", "method", d.Method)
			return
		}
		p.deliver(pd, splice(line, s, e, pd.origToken), d.Method)
	case d.Method != "" && hasID:
		// A server-to-client request: it belongs to the only request in flight,
		// if there is exactly one.
		p.mu.Lock()
		var only *pending
		if len(p.pending) == 1 {
			for _, v := range p.pending {
				only = v
			}
		}
		p.mu.Unlock()
		if only == nil {
			p.b.log.Debug("stdio binding: dropped server request with no single owner", "method", d.Method)
			return
		}
		p.deliver(only, bytes.Clone(line), d.Method)
	default:
		p.b.log.Debug("stdio binding: dropped line that is not a JSON-RPC message")
	}
}

func (p *proc) deliver(pd *pending, msg []byte, method string) {
	select {
	case pd.msgs <- msg:
	default:
		p.b.log.Debug("stdio binding: dropped notification, consumer too slow", "method", method)
	}
}

func (p *proc) removeLocked(n uint64, pd *pending) {
	delete(p.pending, n)
	if pd.token != "" {
		delete(p.tokens, pd.token)
	}
}

// failAll ends every pending request with err and refuses new ones.
func (p *proc) failAll(err error) {
	p.mu.Lock()
	p.dead = err
	all := p.pending
	p.pending, p.tokens = map[uint64]*pending{}, map[string]*pending{}
	p.mu.Unlock()
	for _, pd := range all {
		pd.final <- result{err: err}
	}
}

// write sends one line to the child.
func (p *proc) write(line []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	buf := make([]byte, 0, len(line)+1)
	buf = append(append(buf, line...), '\n')
	if _, err := p.stdin.Write(buf); err != nil {
		return &binding.Error{Source: wire.SourceTransportClosed, Kind: "closed_pipe", Err: err}
	}
	return nil
}

// current waits for a running child.
func (b *Binding) current(ctx context.Context) (*proc, error) {
	for {
		b.mu.Lock()
		p, ready, serr, closed := b.cur, b.ready, b.startErr, b.closed
		b.mu.Unlock()
		switch {
		case closed:
			return nil, errors.New("stdio binding: closed")
		case p != nil:
			return p, nil
		case serr != nil:
			return nil, &binding.Error{Source: wire.SourceConnect, Kind: "dial", Err: serr}
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctxError(ctx)
		}
	}
}

func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &binding.Error{Source: wire.SourceTimeout, Kind: "timeout", Err: ctx.Err()}
	}
	return fmt.Errorf("stdio binding: request canceled: %w", ctx.Err())
}

func protocolErr(kind string, err error) error {
	return &binding.Error{Source: wire.SourceProtocol, Kind: kind, Err: err}
}

// Interface guard.
var _ binding.Prober = (*Binding)(nil)

// probeBody is the readiness probe: a ping, which an MCP server may answer at
// any time, before initialize too, and which starts no session.
var probeBody = []byte(`{"jsonrpc":"2.0","id":"sluice-readiness-probe","method":"ping"}`)

// Probe checks that a child is running and answers a ping with any JSON-RPC
// reply (a result, or an error such as "not initialized": either way the
// server reads and answers). It never sends initialize: the child's one
// session belongs to the MCP client, and after a restart the client's next
// initialize must reach the fresh child.
func (b *Binding) Probe(ctx context.Context) error {
	got := false
	err := b.Do(ctx, &binding.Request{Kind: binding.KindJSONRPC, Body: probeBody, ID: json.RawMessage(`"sluice-readiness-probe"`)},
		func(r *binding.Reply) error {
			if r.Final {
				got = true
			}
			return nil
		})
	if err != nil {
		return err
	}
	if !got {
		return protocolErr("response_body_missing", errors.New("no answer to the probe"))
	}
	return nil
}

// Do delivers req to the child and emits its messages (see binding.Binding).
// Session termination is answered 204 locally: a stdio server has one
// implicit session per process.
func (b *Binding) Do(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
	if req.Kind == binding.KindSessionTermination {
		return emit(&binding.Reply{Status: 204, Final: true})
	}
	if req.Kind != binding.KindJSONRPC {
		return fmt.Errorf("stdio binding: request kind %d: unknown", req.Kind)
	}
	body := bytes.TrimSpace(req.Body)
	if bytes.IndexByte(body, '\n') >= 0 || bytes.IndexByte(body, '\r') >= 0 {
		var c bytes.Buffer
		if err := json.Compact(&c, body); err != nil {
			return fmt.Errorf("stdio binding: request body: %w", err)
		}
		body = c.Bytes()
	}
	var d lineDoc
	if err := json.Unmarshal(body, &d); err != nil {
		return fmt.Errorf("stdio binding: request body: %w", err)
	}
	p, err := b.current(ctx)
	if err != nil {
		return err
	}
	isRequest := d.Method != "" && len(d.ID) > 0 && !bytes.Equal(d.ID, []byte("null"))
	if !isRequest {
		// Notifications and client responses: deliver and acknowledge.
		if err := p.write(body); err != nil {
			return err
		}
		return emit(&binding.Reply{Status: 202, Final: true})
	}

	s, e, _, err := member(body, "id")
	if err != nil {
		return fmt.Errorf("stdio binding: request id: %w", err)
	}
	n := b.nextID.Add(1)
	pd := &pending{
		origID: bytes.Clone(body[s:e]),
		msgs:   make(chan []byte, 64),
		final:  make(chan result, 1),
	}
	line := splice(body, s, e, strconv.AppendUint(nil, n, 10))
	if ts, te, ok, _ := path(line, "params", "_meta", "progressToken"); ok {
		pd.origToken = bytes.Clone(line[ts:te])
		pd.token = `"sluice-` + strconv.FormatUint(n, 10) + `"`
		line = splice(line, ts, te, []byte(pd.token))
	}

	p.mu.Lock()
	if p.dead != nil {
		p.mu.Unlock()
		return p.dead
	}
	p.pending[n] = pd
	if pd.token != "" {
		p.tokens[pd.token] = pd
	}
	p.mu.Unlock()
	forget := func() {
		p.mu.Lock()
		if p.pending[n] == pd {
			p.removeLocked(n, pd)
		}
		p.mu.Unlock()
	}
	if err := p.write(line); err != nil {
		forget()
		return err
	}
	for {
		select {
		case m := <-pd.msgs:
			if err := emit(&binding.Reply{Status: 200, Body: m}); err != nil {
				forget()
				return err
			}
		case r := <-pd.final:
			if r.err != nil {
				return r.err
			}
			// Messages that arrived before the response go first.
			for len(pd.msgs) > 0 {
				if err := emit(&binding.Reply{Status: 200, Body: <-pd.msgs}); err != nil {
					return err
				}
			}
			return emit(&binding.Reply{Status: 200, Body: r.body, Final: true})
		case <-ctx.Done():
			forget()
			return ctxError(ctx)
		}
	}
}
