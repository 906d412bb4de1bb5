package host

import (
	"context"
	"os"
	"testing"
)

func BenchmarkExp(b *testing.B) {
	r, err := NewRuntime(context.Background(), RuntimeOptions{CacheDir: sharedCacheDir(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(context.Background())
	path := os.Getenv("EXP_WASM")
	s, err := r.Load(context.Background(), PluginConfig{Name: "exp", Path: path, CallTimeout: 10e9, Trusted: os.Getenv("EXP_TRUSTED") != ""})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, size := range []int{1 << 10} {
		m := benchMessage(size, "tools/call")
		b.Run(string(rune('0'+size>>10%10)), func(b *testing.B) {
			f, _ := s.Open(context.Background())
			for b.Loop() {
				if _, err := f.Handle(context.Background(), m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
