package faultkit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// WorkTool is the counting server's tool: it records one execution of the
// call named by its "id" argument, optionally sleeps "sleep_ms", and answers
// with the text Done(id).
const WorkTool = "work"

// Done is the text the work tool answers for call id.
func Done(id string) string { return "done:" + id }

// CountServer is an MCP server (Streamable HTTP, stateless, mcp-go) whose
// work tool appends each call id it executes to a log file, one line per
// execution, before answering. The file survives the server being killed and
// started again, so a scenario can tell how often each call ran in all.
type CountServer struct {
	mu  sync.Mutex
	log *os.File
}

// ServeCountServer serves the counting server on addr (path /mcp) until ctx
// ends, appending executions to logPath.
func ServeCountServer(ctx context.Context, addr, logPath string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("count server: %w", err)
	}
	defer f.Close()
	cs := &CountServer{log: f}
	s := server.NewMCPServer("sluice-faults-count", "1.0.0")
	s.AddTool(mcp.NewTool(WorkTool,
		mcp.WithString("id", mcp.Required()),
		mcp.WithNumber("sleep_ms"),
		mcp.WithString("pad"),
	), cs.work)
	mux := http.NewServeMux()
	mux.Handle("/mcp", server.NewStreamableHTTPServer(s, server.WithStateLess(true)))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("count server: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (cs *CountServer) work(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	id := req.GetString("id", "")
	if id == "" || strings.ContainsAny(id, "\r\n") {
		return mcp.NewToolResultError("work: id required"), nil
	}
	line := id + " " + strconv.FormatInt(time.Now().UnixNano(), 10) + "\n"
	cs.mu.Lock()
	_, err := cs.log.WriteString(line)
	cs.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if ms := req.GetFloat("sleep_ms", 0); ms > 0 {
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return mcp.NewToolResultText(Done(id)), nil
}

// Executions are what a counting server's log says of each call id: how
// often it ran, and when it ran last.
type Executions map[string]Execution

// Execution is one call id's record.
type Execution struct {
	Count int
	Last  time.Time
}

// ReadExecutions reads a counting server's log file (missing = none yet).
func ReadExecutions(logPath string) (Executions, error) {
	f, err := os.Open(logPath)
	if errors.Is(err, os.ErrNotExist) {
		return Executions{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := Executions{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, ts, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if id == "" {
			continue
		}
		e := out[id]
		e.Count++
		if ns, err := strconv.ParseInt(ts, 10, 64); err == nil && time.Unix(0, ns).After(e.Last) {
			e.Last = time.Unix(0, ns)
		}
		out[id] = e
	}
	return out, sc.Err()
}
