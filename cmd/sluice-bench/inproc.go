package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sluicemcp/sluice/engine/agent"
	"github.com/sluicemcp/sluice/engine/binding"
	httpbinding "github.com/sluicemcp/sluice/engine/binding/http"
	"github.com/sluicemcp/sluice/engine/relay"
)

// startInproc runs a relay and an agent inside this process (for profiling:
// one -cpuprofile covers both halves). It returns the MCP URL.
func startInproc(ctx context.Context, echoURL string, tl *timeline) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	tunnel := relay.NewTunnelID()
	key := relay.NewKey("sk-bench-")
	r, err := relay.New(relay.Config{
		ListenAddr: ln.Addr().String(),
		Tunnels:    []relay.Tunnel{{ID: tunnel, Name: "bench", RuntimeKey: key, AuthMode: relay.AuthPublic}},
	}, relay.Options{})
	if err != nil {
		return "", err
	}
	var agentClient, bindingClient *http.Client
	if tl != nil {
		srv := &http.Server{Handler: tl.handler(r.Handler())}
		r.MarkServing()
		go srv.Serve(ln)
		go func() { <-ctx.Done(); srv.Close() }()
		agentClient = &http.Client{Transport: markRT{tl, "agent: response POST", agent.NewTransport(agent.TransportOptions{MaxConcurrent: 64})}}
		bindingClient = &http.Client{Transport: markRT{tl, "agent: MCP server call", httpbinding.NewTransport()}}
	} else {
		go r.Serve(ctx, ln)
	}
	b, err := httpbinding.New(httpbinding.Config{URL: echoURL}, httpbinding.Options{HTTPClient: bindingClient})
	if err != nil {
		return "", err
	}
	a, err := agent.New(agent.Config{
		BaseURL:       "http://" + ln.Addr().String(),
		TunnelID:      tunnel,
		APIKey:        key,
		MaxInflight:   128,
		MaxConcurrent: 64,
	}, agent.Options{Bindings: map[string]binding.Binding{"main": b}, HTTPClient: agentClient})
	if err != nil {
		return "", err
	}
	go a.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ok, _ := a.Ready(); ok {
			return "http://" + ln.Addr().String() + "/v1/mcp/" + tunnel, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, why := a.Ready()
	return "", fmt.Errorf("in-process agent not ready: %s", why)
}
