package host

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/sluicemcp/sluice/engine"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Limits of the host functions.
const (
	maxLogLine    = 4 << 10  // longer log lines are truncated
	maxKVKey      = 1 << 10  // bytes
	maxKVBytes    = 16 << 20 // total keys+values per plugin
	maxKVValueCap = 4 << 20  // bytes per value
)

// kvStore is one plugin's key/value store, shared by all its instances.
type kvStore struct {
	mu    sync.RWMutex
	m     map[string][]byte
	bytes int
	dirty bool // changed since it was last written to the state directory
}

func newKVStore() *kvStore { return &kvStore{m: map[string][]byte{}} }

func (s *kvStore) get(k []byte) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[string(k)]
	return v, ok
}

func (s *kvStore) set(k, v []byte) error {
	if len(k) > maxKVKey {
		return fmt.Errorf("kv key of %d bytes exceeds %d", len(k), maxKVKey)
	}
	if len(v) > maxKVValueCap {
		return fmt.Errorf("kv value of %d bytes exceeds %d", len(v), maxKVValueCap)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.m[string(k)]
	nb := s.bytes + len(v) - len(old)
	if !had {
		nb += len(k)
	}
	if nb > maxKVBytes {
		return fmt.Errorf("kv store full (%d bytes)", maxKVBytes)
	}
	if had && bytes.Equal(old, v) {
		return nil
	}
	s.m[string(k)] = append([]byte(nil), v...)
	s.bytes = nb
	s.dirty = true
	return nil
}

func (s *kvStore) delete(k []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[string(k)]; ok {
		s.bytes -= len(k) + len(old)
		delete(s.m, string(k))
		s.dirty = true
	}
}

// guestBytes returns guest memory [ptr, ptr+n) or panics, which wazero turns
// into a trap of the calling guest.
func guestBytes(mod api.Module, ptr, n uint32, what string) []byte {
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		panic(fmt.Errorf("sluice.%s: [%d, +%d) out of bounds", what, ptr, n))
	}
	return b
}

// logGuest writes a line a guest logged, tagged with the plugin and, while
// it handles a message, the request id and method.
func (s *Stage) logGuest(lv slog.Level, msg string, m *engine.Message) {
	attrs := []slog.Attr{slog.String("plugin", s.name)}
	if m != nil {
		attrs = append(attrs, slog.String("request_id", m.RequestID), slog.String("method", m.Method))
	}
	s.log.LogAttrs(context.Background(), lv, s.scrub.str(msg), attrs...)
}

// instantiateHostModule provides the sluice import module for stage s in rt.
func instantiateHostModule(ctx context.Context, rt wazero.Runtime, s *Stage) error {
	b := rt.NewHostModuleBuilder(ModuleSluice)
	fn := func(name string, f api.GoModuleFunc) {
		sg := hostImports[name]
		b.NewFunctionBuilder().WithGoModuleFunction(f, sg.params, sg.results).Export(name)
	}
	fn(ImportLog, func(ctx context.Context, mod api.Module, st []uint64) {
		level, ptr, n := int32(st[0]), uint32(st[1]), uint32(st[2])
		if n > maxLogLine {
			n = maxLogLine
		}
		msg := guestBytes(mod, ptr, n, ImportLog)
		lv := slog.LevelDebug
		switch level {
		case logInfo:
			lv = slog.LevelInfo
		case logWarn:
			lv = slog.LevelWarn
		case logError:
			lv = slog.LevelError
		}
		if !s.log.Enabled(ctx, lv) {
			return
		}
		var m *engine.Message
		if i, ok := ctx.Value(instanceKey{}).(*nativeInstance); ok {
			m = i.msg
		}
		s.logGuest(lv, string(msg), m)
	})
	fn(ImportConfig, func(ctx context.Context, mod api.Module, st []uint64) {
		ptr, capacity := uint32(st[0]), uint32(st[1])
		if uint64(len(s.cfgJSON)) <= uint64(capacity) {
			copy(guestBytes(mod, ptr, uint32(len(s.cfgJSON)), ImportConfig), s.cfgJSON)
		}
		st[0] = uint64(uint32(len(s.cfgJSON)))
	})
	fn(ImportKVGet, func(ctx context.Context, mod api.Module, st []uint64) {
		kp, kn, vp, vc := uint32(st[0]), uint32(st[1]), uint32(st[2]), uint32(st[3])
		v, ok := s.kv.get(guestBytes(mod, kp, kn, ImportKVGet))
		if !ok {
			st[0] = uint64(uint32(0xffffffff)) // -1
			return
		}
		if uint64(len(v)) <= uint64(vc) {
			copy(guestBytes(mod, vp, uint32(len(v)), ImportKVGet), v)
		}
		st[0] = uint64(uint32(len(v)))
	})
	fn(ImportKVSet, func(ctx context.Context, mod api.Module, st []uint64) {
		kp, kn, vp, vn := uint32(st[0]), uint32(st[1]), uint32(st[2]), uint32(st[3])
		k := guestBytes(mod, kp, kn, ImportKVSet)
		v := guestBytes(mod, vp, vn, ImportKVSet)
		if err := s.kv.set(k, v); err != nil {
			panic(fmt.Errorf("sluice.%s: %w", ImportKVSet, err))
		}
	})
	fn(ImportKVDelete, func(ctx context.Context, mod api.Module, st []uint64) {
		s.kv.delete(guestBytes(mod, uint32(st[0]), uint32(st[1]), ImportKVDelete))
	})
	for _, c := range capabilityFuncs { // hostfunc_*.go: one file per capability
		fn(c.name, func(ctx context.Context, mod api.Module, st []uint64) { c.fn(ctx, s, mod, st) })
	}
	_, err := b.Instantiate(ctx)
	return err
}
