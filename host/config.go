package host

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/sluicemcp/sluice/engine"
)

// Defaults for PluginConfig's zero fields.
const (
	// DefaultMemoryPages is 1024 Wasm pages (64 MiB). A standard-Go guest
	// starts at a few MiB and, handling a 4 MiB message (copied, decoded and
	// re-encoded in its GC heap), needs several times that; 256 pages is too
	// tight for it. C, Rust and WAT guests only use what they touch.
	DefaultMemoryPages = 1024
	// DefaultCallTimeout bounds one guest call. It stops runaway guests; it is
	// not a latency budget: a standard-Go guest scanning a 4 MiB message with
	// loop checks on, on a busy machine, needs a good part of it.
	DefaultCallTimeout = time.Second
	// DefaultMaxMessageSize bounds the envelope/message in and the answer out.
	DefaultMaxMessageSize = 4 << 20
	// DefaultRecycleAfter is the number of calls after which an instance is
	// replaced by a fresh one (standard-Go guests leak slowly).
	DefaultRecycleAfter = 10000
	// DefaultIdleTimeout is how long an idle instance may wait in the pool
	// before it is closed (one idle instance is always kept).
	DefaultIdleTimeout = time.Minute
	// DefaultMaxMemory is the least memory budget a stage gets by default
	// (see PluginConfig.MaxMemory).
	DefaultMaxMemory = 256 << 20
	// MaxPoolSize caps a pool whatever its memory budget allows (a module
	// of one page would otherwise get thousands of instances).
	MaxPoolSize = 1024
	// instantiateTimeout bounds instantiation including _initialize.
	instantiateTimeout = 10 * time.Second
)

// Bounds of the limits in PluginConfig, HTTPConfig and Command: Load and
// LoadBinding refuse a value outside them, so no configured value reaches a
// library call that cannot take it (wazero panics on a memory limit above
// MaxMemoryPages).
const (
	// MaxMemoryPages is the most memory a 32-bit Wasm module can address:
	// 65536 pages of 64 KiB, 4 GiB.
	MaxMemoryPages = 65536
	// MaxTimeLimit bounds every time limit: a call timeout, a binding's HTTP
	// or command timeout, a circuit breaker's back-off.
	MaxTimeLimit = time.Hour
	// MaxSizeLimit bounds every byte limit (1 GiB): a message, an HTTP
	// response, a command's output. Every one of them is held in memory, on
	// the host and inside the guest.
	MaxSizeLimit = 1 << 30
	// MaxMemoryBudget bounds MaxMemory (1 TiB).
	MaxMemoryBudget = 1 << 40
	// MaxModuleSize bounds a module read from a file (256 MiB; a standard-Go
	// guest is a few MiB).
	MaxModuleSize = 256 << 20
)

// PluginConfig configures one plugin stage. The zero value of every field but
// Name and Path/Module means its default.
type PluginConfig struct {
	// Name is the stage name, used in logs and metrics and to key the
	// plugin's key/value store.
	Name string
	// Path is the .wasm file to load (ignored when Module is set).
	Path string
	// Module is the module's bytes (built-in plugins).
	Module []byte
	// SHA256 optionally pins the module (hex, optionally prefixed "sha256:");
	// a module that does not match is refused.
	SHA256 string
	// Config is passed to the plugin as a JSON object (and, for an Extism
	// plugin, each top-level member as an Extism config key). Every string
	// value in it that starts with "env:" or "file:" is a secret reference,
	// replaced by Secrets' answer before the plugin sees it.
	Config map[string]any
	// Secrets resolves the secret references in Config at load (and so at
	// every reload). Nil means a reference is a load error. Resolved values
	// are masked in the plugin's log lines and failure messages.
	Secrets SecretResolver
	// Hooks narrows the hooks the plugin's own description asks for
	// ("request", "response", "http_response"); empty = all it asks for.
	Hooks []string
	// Methods narrows the JSON-RPC methods; empty = all it asks for.
	Methods []string
	// MemoryPages is the per-instance memory limit in 64 KiB pages
	// (default DefaultMemoryPages, at most MaxMemoryPages).
	MemoryPages uint32
	// CallTimeout bounds one guest call (default DefaultCallTimeout, at most
	// MaxTimeLimit).
	CallTimeout time.Duration
	// Trusted turns off the checks that let CallTimeout interrupt a guest
	// stuck in a loop: the interrupt flag the host compiles into every loop
	// (about 10% of compute, see interrupt.go), or wazero's own checks
	// (several times that) for a module the instrumenter cannot parse. A
	// trusted module that loops forever holds its instance, and a pool slot,
	// forever: only for modules you vouch for.
	Trusted bool
	// MaxMessageSize bounds the message handed to the plugin and the answer
	// it returns (default 4 MiB, at most MaxSizeLimit).
	MaxMessageSize int
	// AllowedHosts lists the hosts an Extism plugin may reach with Extism's
	// http_request (exact names or * patterns such as "*.example.com");
	// none by default. Ignored for native plugins.
	AllowedHosts []string
	// OnError is the stage's failure policy (for engine.ChainStage).
	OnError engine.OnError
	// Shadow marks the stage as shadow (for engine.ChainStage).
	Shadow bool
	// PoolSize caps the number of live instances (at most MaxPoolSize); 0
	// means as many as MaxMemory allows. A call waits (bounded by its
	// context) when all are
	// checked out.
	PoolSize int
	// MaxMemory bounds the memory of all the stage's instances together, in
	// bytes: the pool never holds more instances than MaxMemory divided by
	// one instance's memory limit (MemoryPages, or less when the module
	// declares a smaller maximum; twice that for an Extism module, whose
	// kernel memory has the same limit). Default: the larger of
	// DefaultMaxMemory and that many instances' worth, where that many is
	// PoolSize, or 2×GOMAXPROCS when PoolSize is 0. A value below one
	// instance's limit is a load error.
	MaxMemory uint64
	// Breaker configures the stage's circuit breaker (on by default).
	Breaker BreakerConfig
	// RecycleAfter is the number of calls after which an instance is
	// replaced (default 10000).
	RecycleAfter int
}

// validate refuses a limit outside its bounds. Zero means the default; a
// negative value is an error, not a default.
func (c *PluginConfig) validate() error {
	switch {
	case c.MemoryPages > MaxMemoryPages:
		return fmt.Errorf("memory-pages: %d is out of range 1..%d", c.MemoryPages, MaxMemoryPages)
	case c.CallTimeout < 0 || c.CallTimeout > MaxTimeLimit:
		return fmt.Errorf("call-timeout: %s is out of range 0..%s", c.CallTimeout, MaxTimeLimit)
	case c.MaxMessageSize < 0 || c.MaxMessageSize > MaxSizeLimit:
		return fmt.Errorf("max-message-size: %d is out of range 0..%d", c.MaxMessageSize, MaxSizeLimit)
	case c.PoolSize < 0 || c.PoolSize > MaxPoolSize:
		return fmt.Errorf("pool-size: %d is out of range 0..%d", c.PoolSize, MaxPoolSize)
	case c.MaxMemory > MaxMemoryBudget:
		return fmt.Errorf("max-memory: %d is out of range 0..%d", c.MaxMemory, uint64(MaxMemoryBudget))
	case c.RecycleAfter < 0:
		return fmt.Errorf("recycle-after: %d is negative", c.RecycleAfter)
	}
	return c.Breaker.validate()
}

func (c *PluginConfig) withDefaults() PluginConfig {
	d := *c
	if d.MemoryPages == 0 {
		d.MemoryPages = DefaultMemoryPages
	}
	if d.CallTimeout <= 0 {
		d.CallTimeout = DefaultCallTimeout
	}
	if d.MaxMessageSize <= 0 {
		d.MaxMessageSize = DefaultMaxMessageSize
	}
	if d.PoolSize < 0 {
		d.PoolSize = 0
	}
	d.Breaker = d.Breaker.withDefaults()
	if d.RecycleAfter <= 0 {
		d.RecycleAfter = DefaultRecycleAfter
	}
	return d
}

// poolBudget returns the stage's memory budget and pool size for instances
// of instLimit bytes each (see MaxMemory and PoolSize).
func (c *PluginConfig) poolBudget(instLimit uint64) (budget uint64, size int, err error) {
	instLimit = max(instLimit, 1)
	budget = c.MaxMemory
	if budget == 0 {
		n := c.PoolSize
		if n == 0 {
			n = runtime.GOMAXPROCS(0) * 2
		}
		budget = max(DefaultMaxMemory, uint64(n)*instLimit)
	}
	if budget < instLimit {
		return 0, 0, fmt.Errorf("max-memory %d is less than one instance's memory limit %d", budget, instLimit)
	}
	size = int(min(budget/instLimit, MaxPoolSize))
	if c.PoolSize > 0 {
		size = min(size, c.PoolSize)
	}
	return budget, size, nil
}

// readModule reads a module file (see ReadFileLimited).
func readModule(path string) ([]byte, error) { return ReadFileLimited(path, MaxModuleSize) }

// ReadFileLimited reads the regular file at path, at most limit bytes: a
// file a configuration names (a module, a secret, a certificate). A device
// such as /dev/zero (which would never end), a FIFO (whose open would block)
// or a directory is refused unread, and so is a larger file. Errors name the
// path, never the content.
func ReadFileLimited(path string, limit int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
