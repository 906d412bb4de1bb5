package host

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadRefusesOutOfRangeLimits: a limit outside its bounds is a load
// error naming it, never a panic (wazero panics on a memory limit above
// 65536 pages, and a uint32 -1 is 4294967295), and the bounds themselves
// load.
func TestLoadRefusesOutOfRangeLimits(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	tests := []struct {
		name string
		cfg  PluginConfig
		want string // "" = loads
	}{
		{"memory at the bound", PluginConfig{MemoryPages: MaxMemoryPages}, ""},
		{"memory one page above", PluginConfig{MemoryPages: MaxMemoryPages + 1}, "memory-pages: 65537 is out of range 1..65536"},
		{"memory -1 as uint32", PluginConfig{MemoryPages: math.MaxUint32}, "memory-pages: 4294967295 is out of range"},
		{"call timeout at the bound", PluginConfig{CallTimeout: MaxTimeLimit}, ""},
		{"call timeout above", PluginConfig{CallTimeout: MaxTimeLimit + 1}, "call-timeout"},
		{"negative call timeout", PluginConfig{CallTimeout: -time.Second}, "call-timeout: -1s is out of range"},
		{"call timeout that overflows ×10", PluginConfig{CallTimeout: math.MaxInt64}, "call-timeout"},
		{"message size at the bound", PluginConfig{MaxMessageSize: MaxSizeLimit}, ""},
		{"message size above", PluginConfig{MaxMessageSize: MaxSizeLimit + 1}, "max-message-size"},
		{"message size beyond uint32", PluginConfig{MaxMessageSize: 1 << 32}, "max-message-size"},
		{"negative message size", PluginConfig{MaxMessageSize: -1}, "max-message-size: -1 is out of range"},
		{"pool at the bound", PluginConfig{PoolSize: MaxPoolSize}, ""},
		{"pool above", PluginConfig{PoolSize: MaxPoolSize + 1}, "pool-size: 1025 is out of range 0..1024"},
		{"negative pool", PluginConfig{PoolSize: -1}, "pool-size"},
		{"negative recycle", PluginConfig{RecycleAfter: -1}, "recycle-after"},
		{"memory budget above", PluginConfig{MaxMemory: MaxMemoryBudget + 1}, "max-memory"},
		{"memory budget 2^64-1", PluginConfig{MaxMemory: math.MaxUint64}, "max-memory"},
		{"breaker failures", PluginConfig{Breaker: BreakerConfig{Failures: -1}}, "breaker.failures: -1"},
		{"breaker back-off", PluginConfig{Breaker: BreakerConfig{Backoff: math.MaxInt64}}, "breaker.backoff"},
		{"breaker max back-off", PluginConfig{Breaker: BreakerConfig{MaxBackoff: -time.Second}}, "breaker.max-backoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Name, cfg.Path = "limits", fixture("good.wasm")
			s, err := r.Load(context.Background(), cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				_ = s.Close()
				return
			}
			if err == nil {
				_ = s.Close()
				t.Fatal("loaded")
			}
			if !strings.HasPrefix(err.Error(), `host: load plugin "limits": `) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to name the plugin and contain %q", err, tt.want)
			}
		})
	}
}

// TestLoadBindingRefusesOutOfRangeLimits: the same for a binding plugin's
// own limits, its HTTP access and its commands, checked before anything is
// compiled or started.
func TestLoadBindingRefusesOutOfRangeLimits(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	sh := []string{"sh", "-c", "cat"}
	tests := []struct {
		name string
		cfg  BindingConfig
		want string
	}{
		{"memory", BindingConfig{Plugin: PluginConfig{MemoryPages: 70000}}, "memory-pages: 70000 is out of range"},
		{"pool", BindingConfig{Plugin: PluginConfig{PoolSize: -3}}, "pool-size: -3"},
		{"http timeout", BindingConfig{HTTP: HTTPConfig{Timeout: -time.Second}}, "http: timeout: -1s"},
		{"http response cap", BindingConfig{HTTP: HTTPConfig{MaxResponseBytes: MaxSizeLimit + 1}}, "http: max-response-bytes"},
		{"command timeout", BindingConfig{Commands: []Command{{Name: "c", Argv: sh, Timeout: 2 * MaxTimeLimit}}}, "command c: timeout"},
		{"command output cap", BindingConfig{Commands: []Command{{Name: "c", Argv: sh, MaxOutputBytes: -1}}}, "command c: max-output-bytes"},
		{"command without argv", BindingConfig{Commands: []Command{{Name: "c"}}}, "command c: empty argv"},
		{"command mode", BindingConfig{Commands: []Command{{Name: "c", Argv: sh, Mode: "both"}}}, `mode "both"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Plugin.Name, cfg.Plugin.Path = "wat", fixture("binding.wasm")
			b, err := r.LoadBinding(context.Background(), cfg)
			if err == nil {
				_ = b.Close()
				t.Fatal("loaded")
			}
			if !strings.HasPrefix(err.Error(), `host: load binding plugin "wat": `) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
	// A reload to an out-of-range limit keeps the running generation.
	b := loadBindingFixture(t, r, BindingConfig{})
	err := b.Reload(context.Background(), BindingConfig{Plugin: PluginConfig{Name: "wat", Path: fixture("binding.wasm"), MemoryPages: 70000}}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "memory-pages") {
		t.Fatalf("reload: %v", err)
	}
	if rep := final(doBinding(t, b, rpcRequest("ok"))); rep.Status != 200 {
		t.Fatalf("after the refused reload: %d %s", rep.Status, rep.Body)
	}
}

// TestLoadRefusesModulesThatAreNotFiles: a module path that names a device
// or a FIFO is refused at once instead of reading forever (/dev/zero) or
// blocking (a FIFO with no writer); an oversized file is refused unread.
func TestLoadRefusesModulesThatAreNotFiles(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.wasm")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.wasm")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxModuleSize + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	_ = f.Close()
	for _, tc := range []struct{ path, want string }{
		{"/dev/zero", "not a regular file"},
		{fifo, "not a regular file"},
		{dir, "not a regular file"},
		{big, "larger than 268435456 bytes"},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := r.Load(context.Background(), PluginConfig{Name: "dev", Path: tc.path})
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want %q", tc.path, err, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: load still reading after 10 s", tc.path)
		}
	}
}
