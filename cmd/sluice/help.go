package main

import (
	"fmt"
	"slices"
	"strings"
)

// inspectorCommand is the MCP Inspector CLI that works on Node 20 (the
// package the end-to-end tests run), for the help topics and dev's banner.
const inspectorCommand = "npx -y @modelcontextprotocol/inspector-cli@1.0.3 --cli"

// helpTopics are the texts of `sluice help <topic>`; docs/ says the same at
// length. Keep them short enough for a terminal.
var helpTopics = map[string]string{
	"quickstart": `Quick start

  sluice dev
      Starts a relay, an agent and a demo MCP server in one process, all on
      127.0.0.1, and prints the MCP URL and a client key. Paste the printed JSON
      snippet into your MCP client, or call a tool from a terminal:

      ` + inspectorCommand + ` <MCP URL> --transport http \
        --header 'Authorization: Bearer <client key>' \
        --method tools/call --tool-name echo --tool-arg message=hi

      (Node 20 or later; run it in a directory whose parent has a
      package.json, such as bin/ of a Sluice checkout.)

  sluice dev --mcp.server-url http://127.0.0.1:3000/mcp
      Puts your own MCP server behind the tunnel instead of the demo.
  sluice dev --public
      No client key (anyone who can reach the relay may call the tunnel).

For real use, run the two halves apart:
  sluice relay --config relay.yaml     the public side (or OpenAI's hosted
                                       tunnel service: sluice help openai)
  sluice run --control-plane.base-url https://relay.example.com \
    --control-plane.tunnel-id tunnel_... --mcp.server-url http://127.0.0.1:3000/mcp
      with the runtime key in CONTROL_PLANE_API_KEY.

Check a config before you start it: sluice config check --config FILE.
Docs: docs/self-hosted-relay.md, docs/configuration.md.
`,
	"plugins": `Plugins

Every MCP message through the tunnel runs through a chain of sandboxed Wasm
plugins: requests down the list, responses back up in reverse.

  pipeline:          the agent's chain (sluice run, sluice dev)
  relay.pipeline:    the relay's chain (none unless configured)

Without a pipeline key the agent runs the default chain: the built-in redact
plugin on responses, masking credentials (cloud and API keys, tokens, bearer
values, private keys, JWTs, connection-string passwords) and card numbers, and
leaving personal data (email, phone, IBAN) alone. pipeline: [] runs no plugins.
Every start and reload logs the active chain in one line.

An entry:
  - plugin: headers            a built-in (redact, headers, oauthmeta) or a .wasm path
    sha256: "..."              pin the module (refused at load and reload otherwise)
    config:                    handed to the plugin as JSON
      rules:
        - {hook: request, op: set, name: X-Api-Key, value: "file:/run/secrets/key"}
    on-error: fail_closed      or fail_open (never for redact)
    shadow: true               log and count verdicts without applying them

Strings in config that start with env: or file: are secrets: Sluice resolves
them before the plugin sees them and never logs the values. Chains reload live
on SIGHUP or when the config file changes; a chain that fails to build is
logged and the running one kept. sluice config check loads every plugin of a
config without starting anything.
Docs: docs/plugins.md, docs/configuration.md#pipelines.
`,
	"openai": `OpenAI's hosted tunnel

sluice run stands in for OpenAI's tunnel-client: ChatGPT, Codex, the Responses
API and AgentKit reach your private MCP server through OpenAI, and your network
only makes outbound HTTPS calls to api.openai.com.

  export CONTROL_PLANE_TUNNEL_ID=tunnel_...     from your OpenAI organization
  export CONTROL_PLANE_API_KEY=sk-...           the tunnel's runtime key
  sluice run --mcp.server-url http://127.0.0.1:3000/mcp

https://api.openai.com is the default control-plane.base-url. OPENAI_API_KEY is
used when CONTROL_PLANE_API_KEY is unset; --control-plane.organization-id sets
OpenAI-Organization; --ca-bundle and --http-proxy work through a corporate
proxy. The flags and environment variables are tunnel-client's. Check
readiness with curl -s 127.0.0.1:8080/readyz. The default plugin chain masks
credentials and card numbers in tool results before they leave your network.
Docs: docs/openai.md.
`,
	"troubleshooting": `Troubleshooting

Exit codes: 0 clean stop, 1 runtime failure, 2 configuration error. A
configuration error is one line naming the key:
  sluice: config: control-plane.max-inflight: want 1..10000
sluice config check --config FILE (--mode run|relay|dev) reports the same
errors without starting anything, plugins and secret references included.

The agent is not ready (curl -s 127.0.0.1:8080/readyz says why):
  relay unreachable            control-plane.base-url, DNS, proxy (--http-proxy),
                               TLS (--ca-bundle)
  runtime key rejected         CONTROL_PLANE_API_KEY and control-plane.tunnel-id
                               do not belong together, or the key was revoked
                               (the reason follows)
  mcp probe failed: ...        the MCP server at mcp.server-url does not answer
  mcp startup probe pending    still waiting for the first answer

An MCP client gets:
  503 tunnel_client_not_connected   no agent is polling this tunnel
  401                               missing, wrong or revoked client key (the
                                    message says which; sluice admin keys list)
  403                               Host or Origin is not relay.public-url: set it
                                    to the exact origin clients use
  504 or -32603 "response timeout"  the tool took longer than response-timeout
  -32603 naming a plugin            a plugin failed (trap, timeout, bad answer);
                                    see sluice_plugin_failures_total{plugin,kind}

A reload that fails keeps the running configuration and logs
"reload failed: kept the old ..." with the reason. "restart required: KEY"
means that key only changes on a restart. For more detail: --log.level debug
(never logs payloads unless log.http-raw-unsafe is on). A warning that repeats
is written once, then counted: "plugin failed … and 16,647 more in the last
10 s" (log.repeat-window; 0 writes every line).
Docs: docs/configuration.md, docs/metrics.md, docs/security.md,
docs/operations.md (logs, audit trail, log rotation).
`,
}

// helpTopicNames lists the topics, sorted.
func helpTopicNames() []string {
	names := make([]string, 0, len(helpTopics))
	for n := range helpTopics {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// help serves `sluice help [command|topic]`.
func (c *cli) help(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stdout, usageText)
		return exitOK
	}
	name := args[0]
	switch m := Mode(name); m {
	case ModeRun, ModeRelay, ModeDev:
		fs := newFlagSet(m, c.stdout)
		fmt.Fprintf(c.stdout, "Usage: sluice %s [flags]\n\nFlags:\n", m)
		fs.PrintDefaults()
		return exitOK
	}
	switch name {
	case "config":
		fmt.Fprint(c.stdout, configUsage)
		return exitOK
	case "plugin":
		fmt.Fprint(c.stdout, pluginUsage)
		return exitOK
	case "admin":
		fmt.Fprint(c.stdout, adminUsage)
		return exitOK
	}
	if text, ok := helpTopics[name]; ok {
		fmt.Fprint(c.stdout, text)
		return exitOK
	}
	all := append([]string{"run", "relay", "dev", "config", "admin", "plugin"}, helpTopicNames()...)
	msg := fmt.Sprintf("sluice help: no command or topic %q", name)
	if s, ok := nearest(name, all); ok {
		msg += " (did you mean " + s + "?)"
	}
	fmt.Fprintf(c.stderr, "%s\nTopics: %s\n", msg, strings.Join(helpTopicNames(), ", "))
	return exitConfig
}
