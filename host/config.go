package host

import (
	"fmt"
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
	// maxPoolSize caps a pool whatever its memory budget allows (a module
	// of one page would otherwise get thousands of instances).
	maxPoolSize = 1024
	// instantiateTimeout bounds instantiation including _initialize.
	instantiateTimeout = 10 * time.Second
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
	// (default DefaultMemoryPages).
	MemoryPages uint32
	// CallTimeout bounds one guest call (default DefaultCallTimeout).
	CallTimeout time.Duration
	// Trusted turns off the checks that let CallTimeout interrupt a guest
	// stuck in a loop: the interrupt flag the host compiles into every loop
	// (about 10% of compute, see interrupt.go), or wazero's own checks
	// (several times that) for a module the instrumenter cannot parse. A
	// trusted module that loops forever holds its instance, and a pool slot,
	// forever: only for modules you vouch for.
	Trusted bool
	// MaxMessageSize bounds the message handed to the plugin and the answer
	// it returns (default 4 MiB).
	MaxMessageSize int
	// AllowedHosts lists the hosts an Extism plugin may reach with Extism's
	// http_request (exact names or * patterns such as "*.example.com");
	// none by default. Ignored for native plugins.
	AllowedHosts []string
	// OnError is the stage's failure policy (for engine.ChainStage).
	OnError engine.OnError
	// Shadow marks the stage as shadow (for engine.ChainStage).
	Shadow bool
	// PoolSize caps the number of live instances; 0 means as many as
	// MaxMemory allows. A call waits (bounded by its context) when all are
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
	size = int(min(budget/instLimit, maxPoolSize))
	if c.PoolSize > 0 {
		size = min(size, c.PoolSize)
	}
	return budget, size, nil
}
