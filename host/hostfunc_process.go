package host

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// The process capability: a binding plugin exchanges bytes with a program
// the operator named in its config. The guest names a command; it never
// chooses what runs, with which arguments or in which environment.

// Defaults for Command's zero fields.
const (
	// DefaultCommandTimeout bounds one exchange.
	DefaultCommandTimeout = 10 * time.Second
	// DefaultCommandMaxOutput bounds one exchange's output (a line, or a
	// run's stdout).
	DefaultCommandMaxOutput = 1 << 20
	// restartBackoffMax caps the wait before a line command that keeps
	// dying is started again.
	restartBackoffMax = 5 * time.Second
)

// Command modes.
const (
	// CommandLine runs one long-lived process, started at load and restarted
	// when it dies: each exchange writes the input as one line to its stdin
	// and reads one line of its stdout.
	CommandLine = "line"
	// CommandRun starts the program afresh for each exchange: the input is
	// its whole stdin, its whole stdout (until it exits) is the output.
	CommandRun = "run"
)

// Command is a program a binding plugin may exchange data with.
type Command struct {
	// Name is what the guest asks for.
	Name string
	// Argv is the program and its arguments (no shell).
	Argv []string
	// Mode is CommandLine (the default) or CommandRun.
	Mode string
	// Timeout bounds one exchange (0 = DefaultCommandTimeout). A line
	// command that does not answer in time is killed and restarted.
	Timeout time.Duration
	// MaxOutputBytes bounds one exchange's output (0 = DefaultCommandMaxOutput).
	MaxOutputBytes int
	// Env is added (KEY=VALUE) to the minimal environment the program gets:
	// PATH, HOME, LANG and TZ of the host process, nothing else (no secrets).
	Env []string
	// Dir is the working directory ("" = the host process's).
	Dir string
	// MergeStderr makes stderr part of the output (a line command's error
	// messages then answer the exchange instead of timing out).
	MergeStderr bool
}

func (c *Command) withDefaults() Command {
	d := *c
	if d.Mode == "" {
		d.Mode = CommandLine
	}
	if d.Timeout <= 0 {
		d.Timeout = DefaultCommandTimeout
	}
	if d.MaxOutputBytes <= 0 {
		d.MaxOutputBytes = DefaultCommandMaxOutput
	}
	return d
}

// environ is the program's environment: a few harmless variables of the
// host process and the command's own.
func (c *Command) environ() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "LANG", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, c.Env...)
}

// commandRunner runs one configured command.
type commandRunner struct {
	cmd Command
	log *slog.Logger

	sem chan struct{} // one exchange at a time (line mode)

	// line mode: the running process, guarded by sem
	proc     *lineProcess
	failures int       // consecutive deaths, for the restart backoff
	lastDied time.Time // when the process last died
}

// lineProcess is one running line command.
type lineProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan []byte   // complete output lines, from the reader goroutine
	quit  chan struct{} // closed by stop: the reader drops what it still reads
	done  chan struct{} // closed when the process has exited and its output ended
	err   error         // why the output ended (set before done closes)
}

// validate checks what a command says without running anything: a name,
// an argv, a mode, and limits within their bounds (zero means the default).
func (c *Command) validate() error {
	switch {
	case c.Name == "":
		return errors.New("command without a name")
	case len(c.Argv) == 0 || c.Argv[0] == "":
		return fmt.Errorf("command %s: empty argv", c.Name)
	case c.Mode != "" && c.Mode != CommandLine && c.Mode != CommandRun:
		return fmt.Errorf("command %s: mode %q: want %s or %s", c.Name, c.Mode, CommandLine, CommandRun)
	case c.Timeout < 0 || c.Timeout > MaxTimeLimit:
		return fmt.Errorf("command %s: timeout: %s is out of range 0..%s", c.Name, c.Timeout, MaxTimeLimit)
	case c.MaxOutputBytes < 0 || c.MaxOutputBytes > MaxSizeLimit:
		return fmt.Errorf("command %s: max-output-bytes: %d is out of range 0..%d", c.Name, c.MaxOutputBytes, MaxSizeLimit)
	}
	return nil
}

func newCommandRunner(c Command, log *slog.Logger) (*commandRunner, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	if _, err := exec.LookPath(c.Argv[0]); err != nil {
		return nil, fmt.Errorf("command %s: %w", c.Name, err)
	}
	r := &commandRunner{cmd: c, log: log, sem: make(chan struct{}, 1)}
	if c.Mode == CommandLine {
		p, err := r.start()
		if err != nil {
			return nil, fmt.Errorf("command %s: start: %w", c.Name, err)
		}
		r.proc = p
	}
	return r, nil
}

// start starts the line command and its output reader.
func (r *commandRunner) start() (*lineProcess, error) {
	c := &r.cmd
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Env, cmd.Dir = c.environ(), c.Dir
	ownProcessGroup(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = pw
	if c.MergeStderr {
		cmd.Stderr = pw
	}
	if err := cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return nil, err
	}
	_ = pw.Close()
	p := &lineProcess{cmd: cmd, stdin: stdin, lines: make(chan []byte, 16), quit: make(chan struct{}), done: make(chan struct{})}
	go p.read(pr, c.MaxOutputBytes)
	r.log.Debug("binding command started", "command", c.Name, "pid", cmd.Process.Pid)
	return p, nil
}

// read splits the output into lines until it ends, then reaps the process.
func (p *lineProcess) read(out *os.File, max int) {
	br := bufio.NewReaderSize(out, 4096)
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max+1 {
			p.err = fmt.Errorf("an output line exceeds %d bytes", max)
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			p.err = err
			break
		}
		select {
		case p.lines <- bytes.TrimRight(line, "\r\n"):
		case <-p.quit:
		}
		line = nil
	}
	_ = out.Close()
	p.kill()
	werr := p.cmd.Wait()
	if werr != nil {
		p.err = werr
	}
	close(p.done)
}

// kill kills the process group.
func (p *lineProcess) kill() {
	if p.cmd.Process != nil {
		_ = killProcessGroup(p.cmd.Process)
	}
}

// exited reports whether the process has ended.
func (p *lineProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop kills the process and waits for its reader.
func (p *lineProcess) stop() {
	close(p.quit)
	_ = p.stdin.Close()
	p.kill()
	<-p.done
}

// close stops the runner's process (line mode).
func (r *commandRunner) close() {
	r.sem <- struct{}{}
	defer func() { <-r.sem }()
	if r.proc != nil {
		r.proc.stop()
		r.proc = nil
	}
}

// exchange runs one exchange; a non-zero code is a HostErr* with its message.
func (r *commandRunner) exchange(ctx context.Context, input []byte) ([]byte, int32, string) {
	ctx, cancel := context.WithTimeout(ctx, r.cmd.Timeout)
	defer cancel()
	if r.cmd.Mode == CommandRun {
		return r.run(ctx, input)
	}
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, HostErrTimeout, fmt.Sprintf("command %s busy for %s", r.cmd.Name, r.cmd.Timeout)
	}
	defer func() { <-r.sem }()
	return r.line(ctx, input)
}

// line writes input as one line to the supervised process and reads one line.
func (r *commandRunner) line(ctx context.Context, input []byte) ([]byte, int32, string) {
	if r.proc != nil && r.proc.exited() {
		r.log.Warn("binding command exited: restarting it", "command", r.cmd.Name, "err", r.proc.err)
		r.proc, r.failures, r.lastDied = nil, r.failures+1, time.Now()
	}
	if r.proc == nil {
		if wait := time.Until(r.lastDied.Add(backoff(r.failures))); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, HostErrFailed, fmt.Sprintf("command %s is restarting after it exited", r.cmd.Name)
			}
		}
		p, err := r.start()
		if err != nil {
			r.failures, r.lastDied = r.failures+1, time.Now()
			return nil, HostErrFailed, fmt.Sprintf("command %s did not start: %v", r.cmd.Name, err)
		}
		r.proc = p
	}
	p := r.proc
	for drained := false; !drained; { // output nobody asked for is not an answer
		select {
		case <-p.lines:
		default:
			drained = true
		}
	}
	msg := input
	if !bytes.HasSuffix(msg, []byte("\n")) {
		msg = append(bytes.Clone(input), '\n')
	}
	werr := make(chan error, 1)
	go func() { _, err := p.stdin.Write(msg); werr <- err }()
	select {
	case out := <-p.lines:
		r.failures = 0
		return out, 0, ""
	case <-p.done:
		return nil, HostErrFailed, fmt.Sprintf("command %s exited without answering", r.cmd.Name)
	case err := <-werr:
		if err != nil {
			return nil, HostErrFailed, fmt.Sprintf("command %s: writing its input: %v", r.cmd.Name, err)
		}
	case <-ctx.Done():
	}
	select {
	case out := <-p.lines:
		r.failures = 0
		return out, 0, ""
	case <-p.done:
		if p.err != nil && strings.Contains(p.err.Error(), "exceeds") {
			return nil, HostErrTooLarge, fmt.Sprintf("command %s: %v", r.cmd.Name, p.err)
		}
		return nil, HostErrFailed, fmt.Sprintf("command %s exited without answering", r.cmd.Name)
	case <-ctx.Done():
		// The stream's state is unknown: a late answer would be taken for
		// the next exchange's. Start afresh.
		r.log.Warn("binding command did not answer in time: restarting it", "command", r.cmd.Name, "timeout", r.cmd.Timeout)
		p.stop()
		r.proc = nil
		return nil, HostErrTimeout, fmt.Sprintf("command %s did not answer within %s", r.cmd.Name, r.cmd.Timeout)
	}
}

// backoff is the wait before restarting a line command that died n times in
// a row: 0, 100 ms, 200 ms, … up to restartBackoffMax.
func backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := 100 * time.Millisecond << min(n-1, 10)
	return min(d, restartBackoffMax)
}

// run starts the program with input as stdin and returns its stdout.
func (r *commandRunner) run(ctx context.Context, input []byte) ([]byte, int32, string) {
	c := &r.cmd
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Env, cmd.Dir = c.environ(), c.Dir
	ownProcessGroup(cmd)
	cmd.Cancel = func() error { return killProcessGroup(cmd.Process) }
	cmd.WaitDelay = time.Second
	cmd.Stdin = bytes.NewReader(input)
	out := &capWriter{max: c.MaxOutputBytes}
	cmd.Stdout = out
	if c.MergeStderr {
		cmd.Stderr = out
	}
	err := cmd.Run()
	switch {
	case ctx.Err() != nil:
		return nil, HostErrTimeout, fmt.Sprintf("command %s did not finish within %s", c.Name, c.Timeout)
	case out.over:
		return nil, HostErrTooLarge, fmt.Sprintf("command %s: output exceeds %d bytes", c.Name, c.MaxOutputBytes)
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, HostErrFailed, fmt.Sprintf("command %s: %s", c.Name, ee.ProcessState.String())
		}
		return nil, HostErrFailed, fmt.Sprintf("command %s: %v", c.Name, err)
	}
	return out.b, 0, ""
}

// capWriter keeps at most max bytes and remembers that there were more.
type capWriter struct {
	b    []byte
	max  int
	over bool
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - len(w.b); len(p) > room {
		w.b = append(w.b, p[:max(room, 0)]...)
		w.over = true
		return len(p), nil
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

func init() {
	registerHostFunc(hostFunc{name: ImportProcess, sig: sig{[]api.ValueType{i32, i32, i32, i32, i32, i32}, []api.ValueType{i32}}, fn: hostProcess})
}

// hostProcess runs one exchange with the command named at [name_ptr,
// +name_len), input [in_ptr, +in_len), and delivers the output.
func hostProcess(ctx context.Context, s *Stage, mod api.Module, st []uint64) {
	c := callOf(ctx)
	if c == nil {
		st[0] = hostErr(HostErrDenied)
		return
	}
	name := string(guestBytes(mod, uint32(st[0]), uint32(st[1]), ImportProcess))
	r := s.io.procs[name]
	if r == nil {
		s.io.refuse("command", name)
		st[0] = c.fail(HostErrDenied, fmt.Sprintf("no command %q in the binding's config", name))
		return
	}
	input := bytes.Clone(guestBytes(mod, uint32(st[2]), uint32(st[3]), ImportProcess))
	c.pause()
	out, code, msg := r.exchange(c.ctx, input)
	c.resume()
	if code != 0 {
		st[0] = c.fail(code, msg)
		return
	}
	c.buf = append(c.buf[:0], out...)
	st[0] = c.deliver(mod, c.buf, uint32(st[4]), uint32(st[5]), ImportProcess)
}
