package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/host"
)

// pluginConfigFlag parses repeated --config KEY=VALUE flags: VALUE is taken
// as JSON when it is valid JSON (a list, a number, true, a quoted string),
// else as a plain string.
func pluginConfigFlag(kvs []string) (map[string]any, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	cfg := map[string]any{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Errorf("--config %q: want KEY=VALUE", kv)}
		}
		var x any
		if json.Unmarshal([]byte(v), &x) == nil {
			cfg[k] = x
		} else {
			cfg[k] = v
		}
	}
	return cfg, nil
}

// pluginRuntime returns a plugin runtime with the user's compilation cache.
func pluginRuntime(ctx context.Context, log *slog.Logger) (*host.Runtime, error) {
	return host.NewRuntime(ctx, host.RuntimeOptions{Logger: log})
}

// stageName is the stage name a module file gets: its base name.
func stageName(file string) string {
	return strings.TrimSuffix(filepath.Base(file), ".wasm")
}

func (c *cli) pluginInspect(ctx context.Context, args []string) error {
	fs := c.pluginFlags("inspect")
	kvs := fs.StringArray("config", nil, "KEY=VALUE of the plugin's config (repeatable)")
	if err := parsePluginFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("want exactly one FILE.wasm")}
	}
	cfg, err := pluginConfigFlag(*kvs)
	if err != nil {
		return err
	}
	file := fs.Arg(0)
	bin, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	rt, err := pluginRuntime(ctx, nil)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	info, err := rt.Inspect(ctx, stageName(file), bin, cfg)
	if err != nil {
		return err
	}
	printModuleInfo(c.stdout, file, info)
	if info.LoadError != nil {
		return info.LoadError
	}
	return nil
}

// printModuleInfo writes what inspect shows.
func printModuleInfo(w io.Writer, file string, info *host.ModuleInfo) {
	fmt.Fprintf(w, "file:     %s\n", file)
	fmt.Fprintf(w, "size:     %d bytes\n", info.Size)
	fmt.Fprintf(w, "sha256:   %s\n", info.SHA256)
	switch info.ABI {
	case "native":
		v := "?"
		if info.ABIVersion != 0 {
			v = fmt.Sprint(info.ABIVersion)
		}
		fmt.Fprintf(w, "abi:      native (version %s)\n", v)
	case "extism":
		fmt.Fprintf(w, "abi:      extism\n")
	default:
		fmt.Fprintf(w, "abi:      none (no %s export, no %s import)\n", host.ExportABIVersion, host.ModuleExtismEnv)
	}
	if d := info.Description; d != nil {
		fmt.Fprintf(w, "plugin:   %s %s\n", d.Name, d.Version)
		fmt.Fprintf(w, "hooks:    %s\n", listOr(d.Hooks, "(every hook it exports)"))
		fmt.Fprintf(w, "methods:  %s\n", listOr(d.Methods, "(all)"))
		if d.Config != nil {
			fmt.Fprintf(w, "config:   %s\n", listOr(d.Config, "(none)"))
		} else {
			fmt.Fprintf(w, "config:   (keys not declared)\n")
		}
	} else if info.LoadError == nil {
		fmt.Fprintf(w, "plugin:   (no description)\n")
	}
	fmt.Fprintf(w, "memory:   %d pages initial (%d KiB)", info.MemoryPages, info.MemoryPages*64)
	if info.InstanceMemory > 0 {
		fmt.Fprintf(w, ", %d KiB per instance", info.InstanceMemory>>10)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "imports:  %d\n", len(info.Imports))
	for _, im := range info.Imports {
		verdict := "ok"
		if im.Refused != "" {
			verdict = "REFUSED: " + im.Refused
		}
		fmt.Fprintf(w, "  %-40s %-24s %s\n", im.Module+"."+im.Name, im.Signature, verdict)
	}
	fmt.Fprintf(w, "exports:  %d\n", len(info.Exports))
	for _, e := range info.Exports {
		fmt.Fprintf(w, "  %-40s %s\n", e.Name, e.Signature)
	}
	if info.LoadError != nil {
		fmt.Fprintf(w, "status:   refused\n")
	} else {
		fmt.Fprintf(w, "status:   loads\n")
	}
}

func listOr(l []string, empty string) string {
	if len(l) == 0 {
		return empty
	}
	return strings.Join(l, ", ")
}

func (c *cli) pluginTest(ctx context.Context, args []string) error {
	fs := c.pluginFlags("test")
	msgFile := fs.String("message", "", "file holding the JSON-RPC message (required)")
	hookName := fs.String("hook", "request", "request or response")
	method := fs.String("method", "", "JSON-RPC method (default: the request's; required for a response)")
	tool := fs.String("tool", "", "tool name (default: a tools/call request's params.name)")
	kvs := fs.StringArray("config", nil, "KEY=VALUE of the plugin's config (repeatable; VALUE is JSON when it parses)")
	expect := fs.String("expect", "", "fail unless the action is this one (continue, replace, respond, reject, drop)")
	if err := parsePluginFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("want exactly one FILE.wasm")}
	}
	if *msgFile == "" {
		return usageError{errors.New("--message is required")}
	}
	actions := []string{"continue", "replace", "respond", "reject", "drop"}
	if *expect != "" && !slices.Contains(actions, *expect) {
		return usageError{fmt.Errorf("--expect %q: want one of %s", *expect, strings.Join(actions, ", "))}
	}
	hook, err := engine.ParseHook(*hookName)
	if err != nil || hook == engine.HookHTTPResponse {
		return usageError{fmt.Errorf("--hook %q: want request or response", *hookName)}
	}
	cfg, err := pluginConfigFlag(*kvs)
	if err != nil {
		return err
	}
	body, err := os.ReadFile(*msgFile)
	if err != nil {
		return err
	}
	body = []byte(strings.TrimSpace(string(body)))
	if !engine.ValidObject(body) {
		return fmt.Errorf("%s: not one JSON object", *msgFile)
	}
	var rpc struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
		ID json.RawMessage `json:"id"`
	}
	_ = json.Unmarshal(body, &rpc)
	m := &engine.Message{
		Hook: hook, Side: engine.SideAgent, Channel: "main", RequestID: "sluice-plugin-test",
		Method: *method, Tool: *tool, Header: http.Header{}, Body: body,
	}
	if m.Method == "" {
		if hook == engine.HookResponse {
			return usageError{errors.New("--hook response needs --method (a response carries no method)")}
		}
		m.Method = rpc.Method
	}
	if m.Tool == "" && m.Method == "tools/call" && hook == engine.HookRequest {
		m.Tool = rpc.Params.Name
	}
	m.Notification = hook == engine.HookRequest && rpc.ID == nil

	file := fs.Arg(0)
	// Guest logs go to stderr, for the first call only (the timing runs
	// repeat it).
	var quiet atomic.Bool
	log := slog.New(&muteHandler{Handler: slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}), mute: &quiet})
	rt, err := pluginRuntime(ctx, log)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	start := time.Now()
	st, err := rt.Load(ctx, host.PluginConfig{Name: stageName(file), Path: file, Config: cfg})
	if err != nil {
		return err
	}
	defer st.Close()
	loadTime := time.Since(start)
	desc := fmt.Sprintf("%s %s", hook, m.Method)
	if m.Tool != "" {
		desc += " (tool " + m.Tool + ")"
	}
	fmt.Fprintf(c.stdout, "message:  %s\n", desc)
	if !st.Wants(hook, m.Method) {
		fmt.Fprintf(c.stdout, "action:   continue (not called: the plugin does not handle %s)\n", desc)
		return expectAction(*expect, engine.Continue)
	}
	f, err := st.Open(ctx)
	if err != nil {
		return err
	}
	defer f.Close()
	start = time.Now()
	res, err := f.Handle(ctx, m)
	d := time.Since(start)
	if err != nil {
		fmt.Fprintf(c.stdout, "action:   failure\ntime:     %s (load %s)\n", d.Round(time.Microsecond/10), loadTime.Round(time.Millisecond))
		return err
	}
	fmt.Fprintf(c.stdout, "action:   %s\n", res.Action)
	if res.Status != 0 {
		fmt.Fprintf(c.stdout, "status:   %d\n", res.Status)
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range res.Header {
			if !yield(k) {
				return
			}
		}
	}) {
		if !slices.Equal(res.Header[k], m.Header[k]) {
			fmt.Fprintf(c.stdout, "header:   %s: %s\n", k, strings.Join(res.Header[k], ", "))
		}
	}
	for k := range m.Header {
		if res.Header != nil && res.Header[k] == nil {
			fmt.Fprintf(c.stdout, "header:   %s deleted\n", k)
		}
	}
	if res.Error != nil {
		e, _ := json.Marshal(res.Error)
		fmt.Fprintf(c.stdout, "error:    %s\n", e)
	}
	if res.Body != nil {
		fmt.Fprintf(c.stdout, "body:     %s\n", res.Body)
	}
	// Then as many calls as fit in 200 ms (at most 1000) for a warm figure.
	quiet.Store(true)
	n, start := 0, time.Now()
	for n < 1000 && time.Since(start) < 200*time.Millisecond {
		if _, err := f.Handle(ctx, m); err != nil {
			break
		}
		n++
	}
	warm := ""
	if n > 0 {
		warm = fmt.Sprintf("; then %s per call (%d calls)", (time.Since(start) / time.Duration(n)).Round(time.Microsecond/10), n)
	}
	fmt.Fprintf(c.stdout, "time:     first call %s%s; load %s\n", d.Round(time.Microsecond/10), warm, loadTime.Round(time.Millisecond))
	return expectAction(*expect, res.Action)
}

// muteHandler drops every record while mute is set.
type muteHandler struct {
	slog.Handler
	mute *atomic.Bool
}

func (h *muteHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return !h.mute.Load() && h.Handler.Enabled(ctx, l)
}

func (h *muteHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &muteHandler{Handler: h.Handler.WithAttrs(attrs), mute: h.mute}
}

func (h *muteHandler) WithGroup(name string) slog.Handler {
	return &muteHandler{Handler: h.Handler.WithGroup(name), mute: h.mute}
}

func expectAction(want string, got engine.Action) error {
	if want != "" && want != got.String() {
		return fmt.Errorf("expected action %s, got %s", want, got)
	}
	return nil
}
