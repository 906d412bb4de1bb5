package host

import (
	"context"
	"os"
	"testing"
)

func TestInspect(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	read := func(name string) []byte {
		b, err := os.ReadFile(fixture(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Run("native", func(t *testing.T) {
		info, err := r.Inspect(context.Background(), "c", read("cguest.wasm"), nil)
		if err != nil || info.LoadError != nil {
			t.Fatal(err, info.LoadError)
		}
		if info.ABI != "native" || info.ABIVersion != 1 || info.Description == nil || info.Description.Name != "c-echo" ||
			len(info.Description.Hooks) != 2 || info.InstanceMemory == 0 || len(info.SHA256) != 64 {
			t.Fatalf("%+v %+v", info, info.Description)
		}
		for _, im := range info.Imports {
			if im.Module != ModuleSluice || im.Refused != "" {
				t.Fatalf("import %+v", im)
			}
		}
		var names []string
		for _, e := range info.Exports {
			names = append(names, e.Name+" "+e.Signature)
		}
		want := []string{"memory 2.. pages", "sluice_abi_version () -> (i32)", "sluice_alloc (i32) -> (i32)", "sluice_describe () -> (i64)",
			"sluice_on_request (i32, i32) -> (i64)", "sluice_on_response (i32, i32) -> (i64)"}
		if len(names) != len(want) {
			t.Fatalf("exports %q, want %q", names, want)
		}
		for i := range want {
			if names[i] != want[i] {
				t.Fatalf("exports %q, want %q", names, want)
			}
		}
	})
	t.Run("extism", func(t *testing.T) {
		info, err := r.Inspect(context.Background(), "x", read("extism-c.wasm"), nil)
		if err != nil || info.LoadError != nil || info.ABI != "extism" || info.ABIVersion != 0 || len(info.Imports) < 10 {
			t.Fatalf("%+v %v", info, err)
		}
	})
	t.Run("forbidden import", func(t *testing.T) {
		info, err := r.Inspect(context.Background(), "bad", read("forbidden.wasm"), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := "forbidden import env.abort (a plugin may import only sluice and wasi_snapshot_preview1)"
		if len(info.Imports) != 1 || info.Imports[0].Refused != want {
			t.Fatalf("imports %+v", info.Imports)
		}
		if info.LoadError == nil || info.LoadError.Error() != `host: load plugin "bad": `+want {
			t.Fatalf("load error %v", info.LoadError)
		}
	})
	t.Run("not wasm", func(t *testing.T) {
		if _, err := r.Inspect(context.Background(), "junk", []byte("not wasm"), nil); err == nil {
			t.Fatal("inspected junk")
		}
	})
}
