package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/spf13/pflag"

	"github.com/sluicemcp/sluice/engine/binding/stdio"
	"github.com/sluicemcp/sluice/plugins/toolguard"
)

const toolsUsage = `Usage:
  sluice tools pin (--url URL | --command ARGV) [--header 'Name: value']...
                   [--bearer env:NAME|file:/path] [-o FILE] [--timeout 30s]
                             connect to an MCP server, list its tools and print
                             the pin (sha256) of each definition: the document
                             toolguard's pins.sets[].from reads. Commit it, and
                             run it again to re-pin after a reviewed change.

Docs: docs/plugins.md (toolguard)
`

// pinProtocolVersion is the protocol the pin command speaks: the session
// era every current server supports, so the tools/list results can be read
// raw (the pins hash the definitions byte for byte as served, not as a
// client library re-encodes them).
const pinProtocolVersion = "2025-11-25"

// tools runs `sluice tools ...`.
func (c *cli) tools(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, toolsUsage)
		return exitConfig
	}
	var err error
	switch args[0] {
	case "pin":
		err = c.toolsPin(ctx, args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(c.stdout, toolsUsage)
		return exitOK
	default:
		err = usageError{fmt.Errorf("unknown command %q", args[0])}
	}
	var ue usageError
	switch {
	case err == nil, errors.Is(err, pflag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "sluice tools %s: %v\n\n%s", args[0], ue.err, toolsUsage)
		return exitConfig
	default:
		fmt.Fprintf(c.stderr, "sluice tools %s: %v\n", args[0], err)
		return exitFailure
	}
}

func (c *cli) toolsPin(ctx context.Context, args []string) error {
	fs := pflag.NewFlagSet("sluice tools pin", pflag.ContinueOnError)
	fs.SetOutput(c.stderr)
	serverURL := fs.String("url", "", "the MCP server's Streamable HTTP endpoint")
	command := fs.String("command", "", "a stdio MCP server's command line (split like a shell; no shell runs)")
	headers := fs.StringArray("header", nil, "extra request header 'Name: value' (repeatable; not for secrets)")
	bearer := fs.String("bearer", "", "send Authorization: Bearer <token>, the token as a reference: env:NAME or file:/path")
	out := fs.StringP("output", "o", "", "write the document to FILE instead of stdout")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on the whole exchange")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if (*serverURL == "") == (*command == "") {
		return usageError{errors.New("give exactly one of --url and --command")}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	var tr transport.Interface
	if *serverURL != "" {
		u, err := url.Parse(*serverURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageError{fmt.Errorf("--url %q: want an http:// or https:// URL", *serverURL)}
		}
		h := map[string]string{}
		for _, line := range *headers {
			name, value, ok := strings.Cut(line, ":")
			name = strings.TrimSpace(name)
			if !ok || name == "" {
				return usageError{fmt.Errorf("--header %q: want 'Name: value'", line)}
			}
			if strings.EqualFold(name, "Authorization") {
				return usageError{errors.New("--header Authorization: give the token with --bearer env:NAME or file:/path")}
			}
			h[name] = strings.TrimSpace(value)
		}
		if *bearer != "" {
			tok, err := Secret(*bearer).resolve("--bearer", c.env)
			if err != nil {
				return usageError{err}
			}
			h["Authorization"] = "Bearer " + tok
		}
		st, err := transport.NewStreamableHTTP(*serverURL, transport.WithHTTPHeaders(h))
		if err != nil {
			return err
		}
		tr = st
	} else {
		if len(*headers) > 0 || *bearer != "" {
			return usageError{errors.New("--header and --bearer go with --url")}
		}
		argv, err := stdio.SplitCommand(*command)
		if err != nil || len(argv) == 0 {
			return usageError{fmt.Errorf("--command %q: cannot split the command line (quotes?)", *command)}
		}
		tr = transport.NewStdio(argv[0], os.Environ(), argv[1:]...)
	}
	doc, err := pinTools(ctx, tr)
	if err != nil {
		return err
	}
	b, err := toolguard.MarshalPins(doc)
	if err != nil {
		return err
	}
	if *out != "" {
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "pinned %d tool(s) of %s into %s\n", len(doc.Tools), serverName(doc), *out)
		return nil
	}
	_, err = c.stdout.Write(b)
	return err
}

// pinTools initializes a session on tr, lists every tool (following
// pages) and returns their pins.
func pinTools(ctx context.Context, tr transport.Interface) (*toolguard.PinsFile, error) {
	cl := client.NewClient(tr, client.WithProtocolVersion(pinProtocolVersion))
	if err := cl.Start(ctx); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer cl.Close()
	init, err := cl.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{
		ProtocolVersion: pinProtocolVersion,
		ClientInfo:      mcp.Implementation{Name: "sluice-tools-pin", Version: toolsClientVersion()},
	}})
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	doc := &toolguard.PinsFile{Version: toolguard.PinsVersion, Tools: map[string]string{},
		Server: &toolguard.ServerInfo{Name: init.ServerInfo.Name, Version: init.ServerInfo.Version}}
	cursor := ""
	seen := map[string]bool{}
	for page := 1; ; page++ {
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		resp, err := cl.GetTransport().SendRequest(ctx, transport.JSONRPCRequest{
			JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId(int64(page + 1)), Method: "tools/list", Params: params})
		if err != nil {
			return nil, fmt.Errorf("tools/list: %w", err)
		}
		if resp.Error != nil {
			return nil, fmt.Errorf("tools/list: %w", resp.Error.AsError())
		}
		var res struct {
			Tools      []json.RawMessage `json:"tools"`
			NextCursor string            `json:"nextCursor"`
		}
		if err := json.Unmarshal(resp.Result, &res); err != nil {
			return nil, fmt.Errorf("tools/list result: %w", err)
		}
		for i, def := range res.Tools {
			var t struct {
				Name string `json:"name"`
			}
			if err := json.Unmarshal(def, &t); err != nil || t.Name == "" {
				return nil, fmt.Errorf("tools/list page %d: tool %d has no name", page, i)
			}
			if seen[t.Name] {
				return nil, fmt.Errorf("tools/list: tool %q is listed twice", t.Name)
			}
			seen[t.Name] = true
			pin, err := toolguard.HashTool(def)
			if err != nil {
				return nil, fmt.Errorf("tools/list: tool %q: %w", t.Name, err)
			}
			doc.Tools[t.Name] = pin
		}
		if res.NextCursor == "" || res.NextCursor == cursor || page >= 1000 {
			return doc, nil
		}
		cursor = res.NextCursor
	}
}

func serverName(doc *toolguard.PinsFile) string {
	if doc.Server == nil || doc.Server.Name == "" {
		return "the server"
	}
	return doc.Server.Name
}

func toolsClientVersion() string {
	v, _ := buildVersion()
	return v
}
