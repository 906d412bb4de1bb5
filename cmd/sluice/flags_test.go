package main

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// configField returns the field of cfg at a dotted koanf key.
func configField(cfg *Config, key string) (reflect.Value, bool) {
	v := reflect.ValueOf(cfg).Elem()
	for _, part := range strings.Split(key, ".") {
		found := false
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).Tag.Get("koanf") == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return reflect.Value{}, false
		}
	}
	return v, true
}

// flagText formats a config value the way pflag shows a flag's default.
func flagText(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String()
	case []string:
		return "[" + strings.Join(x, ",") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// TestFlagDefaults: every flag's help shows the value the subcommand really
// runs with when nothing is configured (`sluice dev --help` shows dev's own
// health and admin addresses and concurrency, not run's).
func TestFlagDefaults(t *testing.T) {
	for _, mode := range []Mode{ModeRun, ModeRelay, ModeDev} {
		t.Run(string(mode), func(t *testing.T) {
			l := &loader{env: envOf(nil)}
			cfg, k, err := l.load()
			if err != nil {
				t.Fatal(err)
			}
			applyModeDefaults(cfg, mode, k)
			n := 0
			newFlagSet(mode, io.Discard).VisitAll(func(f *pflag.Flag) {
				if nonConfigFlags[f.Name] {
					return
				}
				v, ok := configField(cfg, f.Name)
				if !ok {
					t.Errorf("--%s is not a config key", f.Name)
					return
				}
				n++
				if got := flagText(v); got != f.DefValue {
					t.Errorf("--%s: help shows %q, sluice %s runs with %q", f.Name, f.DefValue, mode, got)
				}
			})
			if n < 10 {
				t.Fatalf("only %d flags checked", n)
			}
		})
	}
}
