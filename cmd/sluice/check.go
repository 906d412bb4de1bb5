package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicemcp/sluice/engine/relay"
)

const configUsage = `Usage: sluice config check [--mode run|relay|dev] [--config FILE] [flags of that mode]

Checks a configuration as a start of that mode would, without starting
anything: flags, environment and the config file (--config or SLUICE_CONFIG)
are merged and validated, secret references are resolved (their values are
never printed), the CA bundle and TLS certificate are read, and every plugin
of the mode's pipelines is loaded through the plugin host, sha256 pins
included. Without --mode it checks for sluice relay when the file configures
the relay and not the agent, and for sluice run otherwise.

Exit codes: 0 the configuration is valid; 2 it is not, with the same one-line
error a start would print.
`

// configCommand serves `sluice config …`.
func (c *cli) configCommand(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(c.stdout, configUsage)
		if len(args) == 0 {
			return exitConfig
		}
		return exitOK
	}
	if args[0] != "check" {
		msg := fmt.Sprintf("sluice config: unknown subcommand %q", args[0])
		if s, ok := nearest(args[0], []string{"check"}); ok {
			msg += " (did you mean " + s + "?)"
		}
		fmt.Fprintf(c.stderr, "%s\n\n%s", msg, configUsage)
		return exitConfig
	}
	return c.configCheck(ctx, args[1:])
}

// configCheck validates a configuration for a mode (see configUsage).
func (c *cli) configCheck(ctx context.Context, args []string) int {
	mode, args, err := c.checkMode(args)
	if err != nil {
		fmt.Fprintln(c.stderr, "sluice config check: "+err.Error())
		return exitConfig
	}
	l, cfg, k, code := c.load(mode, args, "sluice config check")
	if l == nil {
		return code
	}
	s := &session{cli: c, mode: mode, loader: l, cfg: cfg, known: k, log: slog.New(slog.DiscardHandler)}
	summary, err := s.check(ctx)
	if err != nil {
		fmt.Fprintln(c.stderr, "sluice: "+asConfigError(err).Error())
		return exitConfig
	}
	fmt.Fprintf(c.stdout, "config ok for sluice %s: %s\n", mode, summary)
	return exitOK
}

// checkMode takes --mode out of args, or infers the mode from the config
// file: relay when it sets relay keys and no agent keys, run otherwise.
func (c *cli) checkMode(args []string) (Mode, []string, error) {
	var mode Mode
	rest := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--mode" || a == "-mode":
			if i+1 == len(args) {
				return "", nil, fmt.Errorf("--mode needs a value: run, relay or dev")
			}
			i++
			mode = Mode(args[i])
		case strings.HasPrefix(a, "--mode="):
			mode = Mode(strings.TrimPrefix(a, "--mode="))
		default:
			rest = append(rest, a)
		}
	}
	switch mode {
	case ModeRun, ModeRelay, ModeDev:
		return mode, rest, nil
	case "":
	default:
		msg := fmt.Sprintf("--mode %q: want run, relay or dev", mode)
		if s, ok := nearest(string(mode), []string{"run", "relay", "dev"}); ok {
			msg += " (did you mean " + s + "?)"
		}
		return "", nil, fmt.Errorf("%s", msg)
	}
	path := ""
	for i, a := range rest {
		switch {
		case a == "--config" && i+1 < len(rest):
			path = rest[i+1]
		case strings.HasPrefix(a, "--config="):
			path = strings.TrimPrefix(a, "--config=")
		}
	}
	if path == "" {
		path, _ = c.env.lookup(envConfig)
	}
	return inferMode(path), rest, nil
}

// inferMode reads the top-level keys of the config file at path: a file that
// configures the relay and not the agent is a relay's. Anything else,
// including a file that cannot be read (the load reports that), is run's.
func inferMode(path string) Mode {
	if path == "" {
		return ModeRun
	}
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		return ModeRun
	}
	top := k.Raw()
	_, relayKeys := top["relay"]
	for _, agentKey := range []string{"control-plane", "mcp", "health", "pipeline", "embedded-mcp-stub"} {
		if _, ok := top[agentKey]; ok {
			return ModeRun
		}
	}
	if relayKeys {
		return ModeRelay
	}
	return ModeRun
}

// check does everything a start of s.mode does before it listens: the audit
// file's path, secrets,
// the control plane's TLS and proxy settings, the relay's TLS certificate and
// tunnels, and every plugin of the mode's pipelines. It returns a one-line
// summary.
func (s *session) check(ctx context.Context) (string, error) {
	cfg := s.cfg
	var parts []string
	if err := checkAuditPath(cfg.Log.Audit); err != nil {
		return "", err
	}
	if s.mode == ModeRun {
		if _, err := cfg.ControlPlane.APIKey.resolve("control-plane.api-key", s.cli.env); err != nil {
			return "", err
		}
		if _, err := s.controlPlaneClient(); err != nil {
			return "", err
		}
	}
	if s.mode == ModeRelay || s.mode == ModeDev {
		var tunnels []relay.Tunnel
		if s.mode == ModeRelay {
			ts, err := s.resolveTunnels(cfg)
			if err != nil {
				return "", err
			}
			tunnels = ts
			parts = append(parts, fmt.Sprintf("%d tunnel(s)", len(tunnels)))
			if _, err := s.relayAdminKeys(cfg); err != nil {
				return "", err
			}
			if cfg.Relay.NATS.URL != "" {
				if _, err := s.resolveNATS(); err != nil {
					return "", err
				}
				parts = append(parts, "store on NATS")
			} else {
				dir, err := s.relayDataDir()
				if err != nil {
					return "", err
				}
				parts = append(parts, "store in "+dir)
			}
		}
		scheme := "http"
		if cfg.Relay.TLSCert != "" {
			scheme = "https"
			if _, err := relayCert(cfg); err != nil {
				return "", err
			}
		}
		public, err := relayPublicURL(cfg, scheme, cfg.Relay.ListenAddr)
		if err != nil {
			return "", err
		}
		r, err := relay.New(relayConfig(cfg, cfg.Relay.ListenAddr, public, tunnels), relay.Options{})
		if err != nil {
			return "", &ConfigError{Msg: oneLine(err)}
		}
		r.Close()
	}
	pl := s.newPipelines(prometheus.NewRegistry())
	defer func() { _ = pl.close(context.WithoutCancel(ctx)) }()
	chains := []struct {
		key     string
		entries []PluginConfig
		on      bool
	}{
		{"pipeline", cfg.Pipeline, s.mode != ModeRelay},
		{"relay.pipeline", cfg.Relay.Pipeline, s.mode != ModeRun},
	}
	for _, ch := range chains {
		if !ch.on {
			continue
		}
		c, err := pl.build(ctx, ch.key, ch.entries)
		if err != nil {
			return "", err
		}
		parts = append(parts, ch.key+" "+chainLine(c))
		_ = c.Close()
	}
	return strings.Join(parts, "; "), nil
}
