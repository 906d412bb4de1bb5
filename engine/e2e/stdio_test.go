package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/enginetest"
)

// TestStdioSessionBelongsToTheClient runs the go-sdk everything server as
// the agent's stdio child. The agent's readiness probe must not take the
// child's one session: the client's initialize succeeds (it used to get
// `duplicate "initialize" received`). After the child is killed and
// restarted, the client's next initialize reaches the fresh child.
func TestStdioSessionBelongsToTheClient(t *testing.T) {
	requireFiles(t, goEverythingServer())
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	// The shell records the child's PID, then becomes the server.
	cmd := []string{"/bin/sh", "-c", `echo $$ > "$0"; exec "$1"`, pidFile, goEverythingServer()}
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{command: cmd}}})
	te := h.tunnel(0)

	initialize := func() (int, string) {
		hdr := te.clientHeaders()
		if hdr == nil {
			hdr = map[string]string{}
		}
		hdr["Content-Type"] = "application/json"
		hdr["Accept"] = "application/json, text/event-stream"
		st, _, body := rawPost(t, "POST", te.mcpURL, hdr, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`))
		return st, string(body)
	}
	// The agent has probed the child by now (the tunnel serves only once the
	// agent is ready enough to take a command); give it a second probe too.
	enginetest.WaitFor(t, "the child to start", func() bool { return readPID(pidFile) > 0 })
	time.Sleep(200 * time.Millisecond)
	st, body := initialize()
	if st != 200 || !strings.Contains(body, `"serverInfo"`) {
		t.Fatalf("client initialize: %d %s", st, body)
	}
	// A second initialize in the same process is the server's to refuse.
	if st, body := initialize(); st == 200 && strings.Contains(body, `"serverInfo"`) {
		t.Fatalf("the stdio server accepted a second initialize: %d %s", st, body)
	}

	first := readPID(pidFile)
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	enginetest.WaitFor(t, "the child to restart", func() bool { p := readPID(pidFile); return p > 0 && p != first })
	var last string
	enginetest.WaitFor(t, "an initialize the restarted child accepts", func() bool {
		st, body := initialize()
		last = strconv.Itoa(st) + " " + body
		return st == 200 && strings.Contains(body, `"serverInfo"`)
	})
	if strings.Contains(last, "duplicate") {
		t.Fatalf("the restarted child's session was taken: %s", last)
	}
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}
