package host

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/enginetest"
)

func stateRuntime(t *testing.T, dir string, log *slog.Logger) *Runtime {
	t.Helper()
	r, err := NewRuntime(context.Background(), RuntimeOptions{CacheDir: filepath.Join(dir, "cache"), StateDir: filepath.Join(dir, "state"), Logger: log, StateFlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestKVStateAcrossRestarts: with a state directory a plugin's store
// survives the runtime (a restart of sluice), written by the guest through
// sluice.kv_set.
func TestKVStateAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	r := stateRuntime(t, dir, nil)
	s := load(t, r, PluginConfig{Name: "kvp", Path: fixture("good.wasm")})
	for range 2 {
		if _, err := handle(t, s, request("kv")); err != nil {
			t.Fatal(err)
		}
	}
	// A second process on the same directory is refused.
	if _, err := NewRuntime(context.Background(), RuntimeOptions{CacheDir: t.TempDir(), StateDir: filepath.Join(dir, "state")}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second runtime on the same state dir: %v", err)
	}
	// The flush loop writes it without waiting for Close.
	file := kvFileName(filepath.Join(dir, "state"), "kvp")
	enginetest.WaitFor(t, "store written", func() bool { _, err := os.Stat(file); return err == nil })
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "state"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v %v", fi.Mode(), err)
	}

	r2 := stateRuntime(t, dir, nil)
	defer r2.Close(context.Background())
	if v, ok := r2.kvFor("kvp").get([]byte("hits")); !ok || !bytes.Equal(v, []byte{2}) {
		t.Fatalf("hits after a restart = %v %v, want [2]", v, ok)
	}
	s2 := load(t, r2, PluginConfig{Name: "kvp", Path: fixture("good.wasm")})
	if _, err := handle(t, s2, request("kv")); err != nil {
		t.Fatal(err)
	}
	if v, _ := r2.kvFor("kvp").get([]byte("hits")); !bytes.Equal(v, []byte{3}) {
		t.Fatalf("hits = %v, want [3]", v)
	}
}

func TestKVStateFiles(t *testing.T) {
	dir := t.TempDir()
	var logs enginetest.SyncBuffer
	r := stateRuntime(t, dir, slog.New(slog.NewJSONHandler(&logs, nil)))
	// Any stage name is one file inside the directory.
	odd := "../../etc/passwd"
	st := r.kvFor(odd)
	if err := st.set([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	st.delete([]byte("gone"))
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "state"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "kv-..%2F..%2Fetc%2Fpasswd.bin lock" {
		t.Fatalf("state dir holds %v", names)
	}

	// A damaged file is moved aside and the plugin starts empty, with a
	// warning naming it.
	path := kvFileName(filepath.Join(dir, "state"), odd)
	b, _ := os.ReadFile(path)
	b[len(b)-6] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r2 := stateRuntime(t, dir, slog.New(slog.NewJSONHandler(&logs, nil)))
	defer r2.Close(context.Background())
	if _, ok := r2.kvFor(odd).get([]byte("k")); ok {
		t.Fatal("a damaged store was loaded")
	}
	if !strings.Contains(logs.String(), "cannot load the key/value store: starting empty") || !strings.Contains(logs.String(), `"plugin":"../../etc/passwd"`) {
		t.Fatalf("logs: %s", logs.String())
	}
	if _, err := os.Stat(path + ".damaged"); err != nil {
		t.Fatalf("damaged file not kept: %v", err)
	}
	// A file past the bound is not read.
	big := kvFileName(filepath.Join(dir, "state"), "big")
	if err := os.WriteFile(big, make([]byte, maxKVFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if st := r2.kvFor("big"); len(st.m) != 0 || !strings.Contains(logs.String(), "not a regular file of at most") {
		t.Fatalf("a file over the bound: %d entries, logs %s", len(st.m), logs.String())
	}
}

func TestKVEncoding(t *testing.T) {
	m := map[string][]byte{"b": {1, 2}, "a": nil, strings.Repeat("k", 300): bytes.Repeat([]byte{7}, 200)}
	b := encodeKV(m)
	back, total, err := decodeKV(b)
	if err != nil || len(back) != 3 || !bytes.Equal(back["b"], []byte{1, 2}) || total != 1+2+1+300+200 {
		t.Fatalf("round trip: %v %d %v", back, total, err)
	}
	if !bytes.Equal(encodeKV(back), b) {
		t.Fatal("encoding is not deterministic")
	}
	for _, bad := range [][]byte{nil, []byte("SLUICEKV1\n"), b[:len(b)-1], append([]byte("XLUICEKV1\n"), b[10:]...)} {
		if _, _, err := decodeKV(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzDecodeKV(f *testing.F) {
	f.Add(encodeKV(map[string][]byte{"a": {1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, _, err := decodeKV(b); err == nil {
			if !bytes.Equal(encodeKV(m), b) {
				// Same content, maybe another order: it must decode the same.
				m2, _, err := decodeKV(encodeKV(m))
				if err != nil || len(m2) != len(m) {
					t.Fatalf("re-encoding changed the store")
				}
			}
		}
	})
}
