package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"

	"github.com/sluicemcp/sluice/engine/logs"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitConfig  = 2
)

func main() {
	tuneGC()
	c := &cli{stdout: os.Stdout, stderr: os.Stderr, tty: isTerminal(os.Stderr), signals: true}
	os.Exit(c.main(context.Background(), os.Args[1:]))
}

// defaultGCPercent is the garbage collector target when GOGC is not set. The
// tunnel's heap is small and short-lived (messages in flight), so collecting
// at 3× the live heap instead of 2× costs a few MiB and buys calls/s at
// concurrency 64 (RATIONALE.md). GOGC in the environment always wins.
const defaultGCPercent = 200

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// cli is one invocation of the binary. Tests build their own with injected
// streams, environment and hooks.
type cli struct {
	stdout, stderr io.Writer
	env            envSource // nil = the process environment
	tty            bool      // stderr is a terminal
	signals        bool      // handle SIGINT/SIGTERM/SIGHUP (off in tests)

	// reload, when non-nil, triggers a reload like SIGHUP (tests).
	reload <-chan struct{}
	// devReady, when non-nil, is called once `sluice dev` is ready (tests).
	devReady func(devInfo)
}

const usageText = `Sluice: an outbound-only tunnel for MCP, with a Wasm plugin chain.

Usage:
  sluice run      [flags]   run the agent inside your network (polls a relay)
  sluice relay    [flags]   run the self-hosted relay (the public side)
  sluice dev      [flags]   relay + agent + demo MCP server in one process
  sluice config check [--mode run|relay|dev] [flags]
                            check a configuration and its plugins without starting
  sluice admin    COMMAND   manage a relay's tunnels and keys (tunnels, keys)
  sluice plugin   COMMAND   new, build, inspect and test Wasm plugins
  sluice version            print version, commit and Go version
  sluice help [command]     show the flags of a command (run, relay, dev, config, admin, plugin)
  sluice help <topic>       quickstart, plugins, openai, troubleshooting

Configuration: flags > environment > --config FILE (or SLUICE_CONFIG) > defaults.
Secrets in files and flags are references: env:NAME or file:/path.
Docs: docs/configuration.md
`

// commands are the subcommands, for suggestions.
var commands = []string{"run", "relay", "dev", "config", "admin", "plugin", "version", "help"}

func (c *cli) main(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usageText)
		return exitConfig
	}
	switch args[0] {
	case "version", "--version", "-version":
		printVersion(c.stdout)
		return exitOK
	case "help", "-h", "--help", "-help":
		return c.help(args[1:])
	case "config":
		return c.configCommand(ctx, args[1:])
	case string(ModeRun), string(ModeRelay), string(ModeDev):
		return c.serve(ctx, Mode(args[0]), args[1:])
	case "plugin":
		return c.plugin(ctx, args[1:])
	case "admin":
		return c.admin(ctx, args[1:])
	}
	msg := fmt.Sprintf("sluice: unknown command %q", args[0])
	if s, ok := nearest(args[0], commands); ok {
		msg += " (did you mean " + s + "?)"
	}
	fmt.Fprintf(c.stderr, "%s\n\n%s", msg, usageText)
	return exitConfig
}

// load parses args as mode's flags, then loads and validates the config as
// a start of mode does. On failure it prints the one-line error (prog names
// the command in flag errors) and returns a nil loader and the exit code.
func (c *cli) load(mode Mode, args []string, prog string) (*loader, *Config, *koanf.Koanf, int) {
	fs := newFlagSet(mode, c.stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, nil, nil, exitOK
		}
		fmt.Fprintf(c.stderr, "%s: %s\n", prog, withHint(err.Error(), flagHint(mode, err)))
		return nil, nil, nil, exitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "%s: unexpected argument %q\n", prog, fs.Arg(0))
		return nil, nil, nil, exitConfig
	}
	l := &loader{flags: fs, env: c.env, path: configPath(fs, c.env)}
	cfg, k, err := l.load()
	if err == nil {
		applyModeDefaults(cfg, mode, k)
		err = cfg.validate(mode)
	}
	if err != nil {
		fmt.Fprintln(c.stderr, "sluice: "+err.Error())
		return nil, nil, nil, exitConfig
	}
	return l, cfg, k, exitOK
}

// serve loads and validates the config of mode, then runs it until ctx ends
// or a signal stops it.
func (c *cli) serve(ctx context.Context, mode Mode, args []string) int {
	l, cfg, k, code := c.load(mode, args, "sluice "+string(mode))
	if l == nil {
		return code
	}
	log, throttle := newLogger(cfg.Log, c.stderr, c.tty)
	if throttle != nil {
		defer throttle.Close() // last: what the rest of the shutdown logs is counted too
	}
	if cfg.Log.HTTPRawUnsafe {
		log.Warn("UNSAFE: log.http-raw-unsafe is on: raw MCP payloads, which may hold secrets and personal data, will be written to the logs; turn it off outside debugging")
	}

	if c.signals {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	if cfg.PID.File != "" {
		if err := os.WriteFile(cfg.PID.File, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			fmt.Fprintln(c.stderr, "sluice: "+cfgErr("pid.file", "write %s: %v", cfg.PID.File, unwrapPathErr(err)).Error())
			return exitConfig
		}
		defer os.Remove(cfg.PID.File)
	}

	audit, auditFile, err := newAuditLogger(cfg.Log, c.stderr, c.tty, log)
	if err != nil {
		fmt.Fprintln(c.stderr, "sluice: "+err.Error())
		return exitConfig
	}
	if auditFile != nil {
		defer auditFile.Close() // writes the records still queued
	}
	s := &session{cli: c, mode: mode, loader: l, cfg: cfg, known: k, log: log, audit: audit,
		auditFile: auditFile, throttle: throttle}
	switch mode {
	case ModeRun:
		err = s.runAgent(ctx)
	case ModeRelay:
		err = s.runRelay(ctx)
	case ModeDev:
		err = s.runDev(ctx)
	}
	var ce *ConfigError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		fmt.Fprintln(c.stderr, "sluice: "+err.Error())
		return exitConfig
	default:
		log.Error("sluice "+string(mode)+" failed", "err", err)
		return exitFailure
	}
}

// applyModeDefaults adjusts defaults that differ per subcommand, only where
// the operator did not set the key (newFlagSet shows the result in help).
func applyModeDefaults(cfg *Config, mode Mode, k interface{ Exists(string) bool }) {
	if mode == ModeRelay {
		return
	}
	// The agent's default chain; `pipeline: []` is the explicit "none".
	if !k.Exists("pipeline") {
		cfg.Pipeline = defaultPipeline()
	}
	if mode != ModeDev {
		return
	}
	// One process on loopback: its listeners must not collide with anything
	// else on 8080 or 8788.
	if !k.Exists("health.listen-addr") {
		cfg.Health.ListenAddr = "127.0.0.1:0"
	}
	if !k.Exists("relay.admin-listen-addr") {
		cfg.Relay.AdminListenAddr = "127.0.0.1:0"
	}
	cfg.ControlPlane.MaxInflight = max(cfg.ControlPlane.MaxInflight, devMinConcurrency)
	cfg.MCP.MaxConcurrentRequests = max(cfg.MCP.MaxConcurrentRequests, devMinConcurrency)
}

// modeDefaults is what mode runs with when nothing is configured.
func modeDefaults(mode Mode) Config {
	d := defaults()
	applyModeDefaults(&d, mode, noKeys{})
	return d
}

// noKeys is a configuration in which no key is set.
type noKeys struct{}

func (noKeys) Exists(string) bool { return false }

// session is one running subcommand.
type session struct {
	cli    *cli
	mode   Mode
	loader *loader
	cfg    *Config
	known  koanfView
	log    *slog.Logger
	audit  *slog.Logger // the tool-call audit trail (nil = off)
	// auditFile is the audit trail's file when log.audit is a path (nil
	// otherwise): reopened on every reload, for log rotation.
	auditFile *logs.File
	// throttle counts repeated log lines (nil when log.repeat-window is 0).
	throttle *logs.Throttle
	chains   []sessionChain
}

// auditFor returns the audit trail for one side of the tunnel ("agent" or
// "relay": `sluice dev` writes both to one trail), or nil when it is off.
func (s *session) auditFor(side string) *slog.Logger {
	if s.audit == nil {
		return nil
	}
	return s.audit.With("side", side)
}

// koanfView is what a session keeps of the loaded koanf instance: the
// configured (non-default) values, for reload diffs.
type koanfView interface {
	Exists(string) bool
	All() map[string]any
	Get(string) any
}
