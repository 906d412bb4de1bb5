package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/sluicemcp/sluice/sdk/internal/hostapi"
)

// Level is a log level. The values are part of the ABI.
type Level int

// Log levels.
const (
	LevelDebug Level = 0
	LevelInfo  Level = 1
	LevelWarn  Level = 2
	LevelError Level = 3
)

// Log writes a log line through the host, which tags it with the plugin and the
// request. Never log secrets, tokens or payloads.
func Log(level Level, msg string) {
	h, _ := hostapi.Get()
	h.Log(int(level), msg)
}

// Debugf logs a formatted debug line.
func Debugf(format string, args ...any) { Log(LevelDebug, fmt.Sprintf(format, args...)) }

// Infof logs a formatted info line.
func Infof(format string, args ...any) { Log(LevelInfo, fmt.Sprintf(format, args...)) }

// Warnf logs a formatted warning.
func Warnf(format string, args ...any) { Log(LevelWarn, fmt.Sprintf(format, args...)) }

// Errorf logs a formatted error.
func Errorf(format string, args ...any) { Log(LevelError, fmt.Sprintf(format, args...)) }

var configCache struct {
	gen    uint64
	loaded bool
	data   []byte
}

// Config returns the plugin's config as raw JSON (an object), or nil when it
// has none. It is read from the host once and cached; do not modify it.
func Config() []byte {
	h, gen := hostapi.Get()
	if !configCache.loaded || configCache.gen != gen {
		configCache.data = h.Config()
		configCache.gen = gen
		configCache.loaded = true
	}
	return configCache.data
}

// ConfigInto decodes the plugin's config into v (a pointer). An absent config
// leaves v unchanged.
func ConfigInto(v any) error {
	c := Config()
	if len(c) == 0 {
		return nil
	}
	if err := json.Unmarshal(c, v); err != nil {
		return fmt.Errorf("sdk: decode plugin config: %w", err)
	}
	return nil
}

// DecodeConfig decodes the config raw (a JSON object, as ConfigValue's Parse
// receives it) into v (a pointer), refusing members v has no field for at
// any depth: a typo in an operator's config is then an error, not a setting
// silently left off. Empty or all-white-space raw (no config) leaves v
// unchanged. The error is encoding/json's; wrap it with the plugin's name.
func DecodeConfig(raw []byte, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// KVGet returns the value of key in the plugin's key/value store, shared by all
// instances of the plugin, and whether it exists.
func KVGet(key string) ([]byte, bool) {
	h, _ := hostapi.Get()
	return h.KVGet(key)
}

// KVSet sets key to value in the plugin's key/value store.
func KVSet(key string, value []byte) {
	h, _ := hostapi.Get()
	h.KVSet(key, value)
}

// KVDelete deletes key from the plugin's key/value store.
func KVDelete(key string) {
	h, _ := hostapi.Get()
	h.KVDelete(key)
}

// ConfigValue is a value derived from the plugin's config (parsed rules,
// compiled patterns) computed on first use and again only when the config
// changes, so handlers stay cheap:
//
//	var rules = sdk.ConfigValue[*Rules]{Parse: parseRules}
//	...
//	r, err := rules.Get()
type ConfigValue[T any] struct {
	// Parse builds the value from the raw config JSON (nil when none).
	Parse func(raw []byte) (T, error)

	loaded bool
	gen    uint64
	v      T
	err    error
}

// Get returns the parsed value, or Parse's error, for the current config.
func (c *ConfigValue[T]) Get() (T, error) {
	_, gen := hostapi.Get()
	if !c.loaded || c.gen != gen {
		c.v, c.err = c.Parse(Config())
		c.gen, c.loaded = gen, true
	}
	return c.v, c.err
}
