package hostapi

import "sync/atomic"

// Host is what a plugin can ask of the host.
type Host interface {
	// Log writes a log line at level 0 debug, 1 info, 2 warn, 3 error.
	Log(level int, msg string)
	// Config returns the plugin's config as a JSON object (nil when none).
	Config() []byte
	// KVGet returns the value of key and whether it exists.
	KVGet(key string) ([]byte, bool)
	// KVSet sets key to value.
	KVSet(key string, value []byte)
	// KVDelete deletes key.
	KVDelete(key string)
}

type nop struct{}

func (nop) Log(int, string)             {}
func (nop) Config() []byte              { return nil }
func (nop) KVGet(string) ([]byte, bool) { return nil, false }
func (nop) KVSet(string, []byte)        {}
func (nop) KVDelete(string)             {}

type holder struct {
	h   Host
	gen uint64
}

var current atomic.Pointer[holder]

func init() { current.Store(&holder{h: nop{}}) }

// Set installs h (nil = a host that does nothing) and bumps the generation so
// cached values (the config) are read again.
func Set(h Host) {
	if h == nil {
		h = nop{}
	}
	old := current.Load()
	current.Store(&holder{h: h, gen: old.gen + 1})
}

// Get returns the installed host and its generation.
func Get() (Host, uint64) {
	c := current.Load()
	return c.h, c.gen
}
