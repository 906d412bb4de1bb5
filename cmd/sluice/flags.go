package main

import (
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// newFlagSet returns the flags of one subcommand. Flag names are the config
// keys; their defaults are shown in help only (defaults come from defaults()
// and the subcommand's own, applyModeDefaults; only flags given on the
// command line override the file and env).
func newFlagSet(mode Mode, out io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("sluice "+string(mode), pflag.ContinueOnError)
	fs.SetOutput(out)
	fs.SortFlags = false
	d := modeDefaults(mode)
	atLeast := ""
	if mode == ModeDev {
		atLeast = fmt.Sprintf(" (dev raises it to at least %d)", devMinConcurrency)
	}
	fs.String("config", "", "YAML config file (env SLUICE_CONFIG); none is read unless given")

	if mode == ModeRun {
		fs.String("control-plane.base-url", d.ControlPlane.BaseURL, "relay or hosted tunnel service base URL")
		fs.String("control-plane.url-path", "", "path prefix inserted before /v1/...")
		fs.String("control-plane.tunnel-id", "", "tunnel id (tunnel_ + 32 lowercase hex)")
		fs.String("control-plane.api-key", "", "runtime key reference: env:NAME or file:/path")
		fs.String("control-plane.organization-id", "", "sent as OpenAI-Organization")
		fs.StringArray("control-plane.extra-headers", nil, "extra control-plane header 'Name: value' (repeatable)")
	}
	if mode == ModeRun || mode == ModeDev {
		fs.Int("control-plane.max-inflight", d.ControlPlane.MaxInflight, "commands polled but not yet running (max 10000)"+atLeast)
		fs.Duration("control-plane.poll-timeout", d.ControlPlane.PollTimeout, "long-poll wait asked of the relay")
		fs.Bool("control-plane.response-batch", d.ControlPlane.ResponseBatch, "deliver finished responses together when a sluice relay offers it")
		fs.Bool("control-plane.get-stream", d.ControlPlane.GetStream, "carry MCP clients' standalone GET streams when a sluice relay offers it")
		fs.StringArray("mcp.server-url", nil, "MCP server: URL for main, or channel=NAME,url=URL (repeatable)")
		fs.StringArray("mcp.command", nil, "stdio MCP server: channel=NAME,command=ARGV (repeatable)")
		fs.Int("mcp.max-concurrent-requests", d.MCP.MaxConcurrentRequests, "MCP requests running at once"+atLeast)
		fs.StringArray("mcp.extra-headers", nil, "extra header to the MCP server 'Name: value' (repeatable)")
		fs.Duration("mcp.startup-wait-timeout", 0, "wait this long for the MCP server before the first poll (0 = off)")
		fs.Int("mcp.max-streams", d.MCP.MaxStreams, "MCP clients' GET streams open at once (max 10000)")
		fs.String("health.listen-addr", d.Health.ListenAddr, "health, readiness and metrics listener")
		fs.String("health.url-file", "", "write the health listener's base URL here after binding")
		fs.String("ca-bundle", "", "PEM file added to the system roots")
		fs.String("http-proxy", "", "outbound proxy URL")
		fs.String("pid.file", "", "write the process id here at start, remove it at stop")
	}
	if mode == ModeRun {
		fs.Bool("embedded-mcp-stub", false, "start a demo MCP server in process and bind main to it")
	}
	if mode == ModeRelay || mode == ModeDev {
		fs.String("relay.listen-addr", d.Relay.ListenAddr, "relay listener for MCP clients and agents (:0 = any free port)")
		fs.String("relay.public-url", "", "the relay's public origin (default http://<listen-addr>)")
		fs.String("relay.admin-listen-addr", d.Relay.AdminListenAddr, "relay admin API, health, readiness and metrics listener (loopback)")
	}
	if mode == ModeRelay {
		fs.String("relay.tls-cert", "", "TLS certificate file (direct TLS)")
		fs.String("relay.tls-key", "", "TLS key file (direct TLS)")
		fs.Int64("relay.max-body-bytes", d.Relay.MaxBodyBytes, "cap on an MCP client's request body")
		fs.Int64("relay.max-response-bytes", d.Relay.MaxResponseBytes, "cap on an agent's response POST (one response or a batch)")
		fs.Duration("relay.response-timeout", d.Relay.ResponseTimeout, "default response_timeout per command")
		fs.Duration("relay.body-read-timeout", d.Relay.BodyReadTimeout, "time a request body may take to arrive (plus 1s per 64 KiB); 408 after it")
		fs.Int64("relay.max-body-bytes-in-flight", 0, "request body bytes being read at once, relay-wide (0 = 64 MiB or the per-key budget)")
		fs.Int64("relay.max-body-bytes-in-flight-per-key", 0, "request body bytes being read at once per key (0 = 16 MiB or the larger body cap)")
		fs.Int("relay.max-concurrent-per-key", d.Relay.MaxConcurrentPerKey, "MCP requests in progress per client key (0 = no limit)")
		fs.Int("relay.max-concurrent-per-address", d.Relay.MaxConcurrentPerAddress, "MCP requests in progress per remote IP address (0 = no limit)")
		fs.String("relay.nats.url", "", "NATS server URLs (comma-separated): replicas share work through this cluster")
		fs.String("relay.nats.credentials", "", "NATS credentials file content (env:NAME or file:/path)")
		fs.String("relay.nats.token", "", "NATS token (env:NAME or file:/path)")
		fs.String("relay.nats.tls.ca-file", "", "PEM roots for the NATS servers' certificates")
		fs.String("relay.nats.tls.cert-file", "", "client certificate for NATS (mutual TLS)")
		fs.String("relay.nats.tls.key-file", "", "client key for NATS (mutual TLS)")
		fs.String("relay.nats.tls.server-name", "", "name expected in the NATS servers' certificates")
		fs.Int("relay.nats.replicas", 0, "work-queue stream replicas (0 = 3 on a cluster of 3 or more, else 1)")
		fs.String("relay.nats.prefix", "", `NATS subject prefix (default "sluice")`)
		fs.String("relay.data-dir", "", "where tunnels and keys made through the admin API are kept without NATS (default ~/.local/state/sluice/relay)")
		fs.String("relay.admin-key", "", "an admin key for the admin API: env:NAME or file:/path (no first key is printed then)")
	}
	if mode == ModeDev {
		fs.Bool("public", false, "no client key: anyone who can reach the relay may call the tunnel")
	}
	fs.String("log.level", d.Log.Level, "debug, info, warn or error")
	fs.String("log.format", d.Log.Format, "auto (text on a terminal, JSON otherwise), text or json")
	fs.Bool("log.http-raw-unsafe", false, "log raw HTTP payloads (unsafe: may log secrets)")
	fs.String("log.audit", d.Log.Audit, `audit trail, one record per tool call: "log", "off" or a file path (reopened on SIGHUP)`)
	fs.Duration("log.repeat-window", d.Log.RepeatWindow, "write a repeated warning once per window, then a count (0 = every line)")
	fs.Duration("drain-timeout", d.DrainTimeout, "how long in-flight work may finish on shutdown or reload")
	fs.String("plugin-state-dir", "", "keep plugins' key/value stores here across restarts (one directory per process)")
	return fs
}
