package host

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine"
)

var benchGuests = []struct{ name, fixture string }{
	{"native-wat", "good.wasm"},
	{"native-c", "cguest.wasm"},
	{"native-go", "goguest.wasm"},
	{"extism-go", "extism-go.wasm"},
}

func benchMessage(size int, method string) *engine.Message {
	m := request(method)
	pad := size - len(`{"jsonrpc":"2.0","id":1,"method":"","params":{"p":""}}`) - len(method)
	m.Body = json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":{"p":"` + strings.Repeat("a", max(pad, 0)) + `"}}`)
	return m
}

// BenchmarkStage measures one stage call (continue, the common path) per
// guest ABI and message size: "exchange" is Open+Handle+Close, "handle" is
// Handle alone on an open filter.
func BenchmarkStage(b *testing.B) {
	r, err := NewRuntime(context.Background(), RuntimeOptions{CacheDir: sharedCacheDir(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(context.Background())
	for _, g := range benchGuests {
		s, err := r.Load(context.Background(), PluginConfig{Name: g.name, Path: fixture(g.fixture), CallTimeout: 10e9})
		if err != nil {
			b.Fatal(err)
		}
		for _, size := range []int{1 << 10, 16 << 10, 256 << 10} {
			m := benchMessage(size, "tools/call")
			b.Run(fmt.Sprintf("%s/%dKiB/exchange", g.name, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					f, err := s.Open(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					if _, err := f.Handle(context.Background(), m); err != nil {
						b.Fatal(err)
					}
					f.Close()
				}
			})
			b.Run(fmt.Sprintf("%s/%dKiB/handle", g.name, size>>10), func(b *testing.B) {
				f, err := s.Open(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := f.Handle(context.Background(), m); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		_ = s.Close()
	}
}

// BenchmarkEcho measures the replace path (the guest copies the message into
// its answer, the host copies it out).
func BenchmarkEcho(b *testing.B) {
	r, err := NewRuntime(context.Background(), RuntimeOptions{CacheDir: sharedCacheDir(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(context.Background())
	for _, g := range benchGuests[1:] {
		s, err := r.Load(context.Background(), PluginConfig{Name: g.name, Path: fixture(g.fixture), CallTimeout: 10e9})
		if err != nil {
			b.Fatal(err)
		}
		m := benchMessage(1<<10, "echo")
		b.Run(g.name+"/1KiB", func(b *testing.B) {
			f, _ := s.Open(context.Background())
			defer f.Close()
			b.ReportAllocs()
			for b.Loop() {
				if res, err := f.Handle(context.Background(), m); err != nil || res.Action != engine.Replace {
					b.Fatal(res.Action, err)
				}
			}
		})
		_ = s.Close()
	}
}

// BenchmarkLoad measures Load of the standard-Go guest with a cold (empty)
// and a warm compilation cache.
func BenchmarkLoad(b *testing.B) {
	bin, err := os.ReadFile(fixture("goguest.wasm"))
	if err != nil {
		b.Fatal(err)
	}
	loadOnce := func(b *testing.B, dir string) {
		r, err := NewRuntime(context.Background(), RuntimeOptions{CacheDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		s, err := r.Load(context.Background(), PluginConfig{Name: "go", Module: bin})
		if err != nil {
			b.Fatal(err)
		}
		_ = s.Close()
		_ = r.Close(context.Background())
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			loadOnce(b, b.TempDir())
		}
	})
	b.Run("cached", func(b *testing.B) {
		dir := b.TempDir()
		loadOnce(b, dir)
		for b.Loop() {
			loadOnce(b, dir)
		}
	})
}

// BenchmarkInstance measures creating one instance and reports its guest
// memory and the Go heap it costs.
func BenchmarkInstance(b *testing.B) {
	r, err := NewRuntime(context.Background(), RuntimeOptions{CacheDir: sharedCacheDir(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(context.Background())
	for _, g := range benchGuests {
		s, err := r.Load(context.Background(), PluginConfig{Name: g.name, Path: fixture(g.fixture)})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(g.name, func(b *testing.B) {
			var guest uint64
			var ms0, ms1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			var insts []instance
			for b.Loop() {
				i, err := s.backend.newInstance(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				guest = i.memSize()
				insts = append(insts, i)
			}
			runtime.GC()
			runtime.ReadMemStats(&ms1)
			b.ReportMetric(float64(guest), "guest-bytes")
			b.ReportMetric(float64(ms1.HeapInuse-ms0.HeapInuse)/float64(len(insts)), "heap-bytes/instance")
			for _, i := range insts {
				i.close(context.Background())
			}
		})
		_ = s.Close()
	}
}
