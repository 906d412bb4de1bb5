package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/sluicemcp/sluice/engine/demo"
	"github.com/sluicemcp/sluice/engine/relay"
)

// devInfo is what `sluice dev` prints once it listens.
type devInfo struct {
	MCPURL    string // the tunnel's public MCP endpoint
	Key       string // the client key ("" with --public)
	ServerURL string // the MCP server behind the tunnel
	HealthURL string // the agent's health listener
	AdminURL  string // the relay's admin listener
	Demo      bool   // ServerURL is the built-in demo server
	Agent     []string
	Relay     []string
}

// runDev runs relay, agent and (unless mcp.server-url names main) the demo
// MCP server in one process on loopback.
func (s *session) runDev(ctx context.Context) error {
	cfg := s.cfg
	public := false
	if f := s.loader.flags.Lookup("public"); f != nil {
		public = f.Value.String() == "true"
	}
	tunnelID := relay.NewTunnelID()
	runtimeKey := relay.NewKey("sk-sluice-rt-")
	t := relay.Tunnel{ID: tunnelID, Name: "dev", Description: "sluice dev", RuntimeKey: runtimeKey,
		ResponseTimeout: cfg.Relay.ResponseTimeout}
	info := devInfo{}
	if public {
		t.AuthMode = relay.AuthPublic
	} else {
		info.Key = relay.NewKey("sk-sluice-")
		t.AuthMode = relay.AuthClientKey
		t.ClientKeys = []relay.ClientKey{{Name: "dev", Key: info.Key}}
	}

	reg := s.newRegistry()
	pl := s.newPipelines(reg)
	defer func() { _ = pl.close(context.WithoutCancel(ctx)) }()

	// The relay outlives the agent so the agent can post its last results.
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRelay()
	relayChain, err := pl.build(ctx, "relay.pipeline", cfg.Relay.Pipeline)
	if err != nil {
		return asConfigError(err)
	}
	rp, err := s.startRelay(relayCtx, reg, []relay.Tunnel{t}, relayChain, cfg.Relay.AdminListenAddr, nil, nil)
	if err != nil {
		_ = relayChain.Close()
		return err
	}
	defer func() { _ = rp.pipeline.Close() }()
	relayDone := make(chan error, 1)
	go func() { relayDone <- rp.relay.Serve(relayCtx, rp.ln) }()

	setup := agentSetup{baseURL: "http://" + rp.ln.Addr().String(), tunnelID: tunnelID, apiKey: runtimeKey, plugins: pl}
	chans, _ := cfg.channels()
	if ch, ok := chans["main"]; ok {
		info.ServerURL = ch.describe()
	} else {
		demoCtx, stopDemo := context.WithCancel(context.WithoutCancel(ctx))
		defer stopDemo()
		u, err := demo.Serve(demoCtx, "127.0.0.1:0")
		if err != nil {
			stopRelay()
			<-relayDone
			return fmt.Errorf("demo MCP server: %w", err)
		}
		setup.mainURL, info.ServerURL, info.Demo = u, u, true
	}
	agentChain, err := pl.build(ctx, "pipeline", cfg.Pipeline)
	if err != nil {
		stopRelay()
		<-relayDone
		return asConfigError(err)
	}
	setup.chain = agentChain
	ap, err := s.startAgent(ctx, reg, setup)
	if err != nil {
		_ = agentChain.Close()
		stopRelay()
		<-relayDone
		return err
	}
	defer ap.close()

	info.MCPURL = rp.url + "/v1/mcp/" + tunnelID
	info.HealthURL, info.AdminURL = ap.healthURL, rp.adminURL
	info.Agent, info.Relay = agentChain.Stages(), relayChain.Stages()
	printDevBanner(s.cli.stdout, info)

	live := []liveKey{s.pipelineKey(pl, "pipeline", ap.pipeline, agentEntries),
		s.pipelineKey(pl, "relay.pipeline", rp.pipeline, relayEntries), // dev mints its own tunnel
		s.reloadBindings(ap.wasm)}
	s.log.Info("active chain", s.chainAttrs()...)
	rctx, stopReload := context.WithCancel(ctx)
	defer stopReload()
	go s.reloadLoop(rctx, live, nil)
	var once sync.Once
	go s.reportReadiness(rctx, ap.agent, func() {
		once.Do(func() {
			fmt.Fprintf(s.cli.stdout, "● ready: agent connected to the relay, MCP server answering. Ctrl-C to stop.\n")
			if s.cli.devReady != nil {
				s.cli.devReady(info)
			}
		})
	})

	agentErr := ap.agent.Run(ctx)
	_ = ap.pipeline.Close()
	stopRelay()
	if err := <-relayDone; err != nil && agentErr == nil {
		return err
	}
	return agentErr
}

// printDevBanner prints the friendly block: where to point an MCP client.
func printDevBanner(w io.Writer, in devInfo) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nSluice dev: relay + agent + MCP server in one process.\n\n")
	fmt.Fprintf(&b, "  MCP URL     %s\n", in.MCPURL)
	if in.Key != "" {
		fmt.Fprintf(&b, "  Client key  %s\n", in.Key)
	} else {
		fmt.Fprintf(&b, "  Client key  none (--public: anyone who can reach the relay may call it)\n")
	}
	server := in.ServerURL
	if in.Demo {
		server += "  (built-in demo: echo, slow, large, fake_secrets)"
	}
	fmt.Fprintf(&b, "  MCP server  %s\n", server)
	fmt.Fprintf(&b, "  Plugins     agent: %s; relay: %s\n", stageList(in.Agent), stageList(in.Relay))
	if in.HealthURL != "" {
		fmt.Fprintf(&b, "  Agent       %s/readyz  %s/metrics\n", in.HealthURL, in.HealthURL)
	}
	if in.AdminURL != "" {
		fmt.Fprintf(&b, "  Relay       %s/readyz  %s/metrics\n", in.AdminURL, in.AdminURL)
	}

	server2 := map[string]any{"type": "http", "url": in.MCPURL}
	if in.Key != "" {
		server2["headers"] = map[string]string{"Authorization": "Bearer " + in.Key}
	}
	snippet, _ := json.MarshalIndent(map[string]any{"mcpServers": map[string]any{"sluice-dev": server2}}, "", "  ")
	fmt.Fprintf(&b, "\nMCP client config (mcp.json / claude_desktop_config.json style):\n%s\n", snippet)

	auth := ""
	if in.Key != "" {
		auth = fmt.Sprintf(" --header 'Authorization: Bearer %s'", in.Key)
	}
	fmt.Fprintf(&b, "\nTry it:\n")
	fmt.Fprintf(&b, "  %s %s --transport http%s --method tools/call --tool-name echo --tool-arg message=hi\n", inspectorCommand, in.MCPURL, auth)
	fmt.Fprintf(&b, "    (Node 20 or later; run it in a directory whose parent has a package.json, such as bin/ of a Sluice checkout)\n")
	curlAuth := ""
	if in.Key != "" {
		curlAuth = fmt.Sprintf(" -H 'Authorization: Bearer %s'", in.Key)
	}
	fmt.Fprintf(&b, "  curl -s %s%s -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\\n"+
		"    -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"curl\",\"version\":\"1\"}}}'\n\n",
		in.MCPURL, curlAuth)
	_, _ = io.WriteString(w, b.String())
}

func stageList(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " → ")
}
