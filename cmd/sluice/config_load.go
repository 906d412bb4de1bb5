package main

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// envVar maps one environment variable to a config key.
type envVar struct {
	name   string
	key    string
	list   bool // newline-separated list
	secret bool // the value is the literal secret: becomes env:NAME
}

// envTable is the explicit environment mapping (CONVENTIONS.md); names differ
// from keys, so there is no generic transform.
var envTable = []envVar{
	{name: "CONTROL_PLANE_BASE_URL", key: "control-plane.base-url"},
	{name: "CONTROL_PLANE_URL_PATH", key: "control-plane.url-path"},
	{name: "CONTROL_PLANE_TUNNEL_ID", key: "control-plane.tunnel-id"},
	{name: "CONTROL_PLANE_API_KEY", key: "control-plane.api-key", secret: true},
	{name: "OPENAI_API_KEY", key: "control-plane.api-key", secret: true}, // fallback
	{name: "CONTROL_PLANE_ORGANIZATION_ID", key: "control-plane.organization-id"},
	{name: "CONTROL_PLANE_MAX_INFLIGHT_REQUESTS", key: "control-plane.max-inflight"},
	{name: "CONTROL_PLANE_POLL_TIMEOUT", key: "control-plane.poll-timeout"},
	{name: "CONTROL_PLANE_EXTRA_HEADERS", key: "control-plane.extra-headers", list: true},
	{name: "CONTROL_PLANE_RESPONSE_BATCH", key: "control-plane.response-batch"},
	{name: "CONTROL_PLANE_GET_STREAM", key: "control-plane.get-stream"},
	{name: "MCP_SERVER_URL", key: "mcp.server-url", list: true},
	{name: "MCP_COMMAND", key: "mcp.command", list: true},
	{name: "MCP_MAX_CONCURRENT_REQUESTS", key: "mcp.max-concurrent-requests"},
	{name: "MCP_EXTRA_HEADERS", key: "mcp.extra-headers", list: true},
	{name: "MCP_STARTUP_WAIT_TIMEOUT", key: "mcp.startup-wait-timeout"},
	{name: "MCP_MAX_STREAMS", key: "mcp.max-streams"},
	{name: "HEALTH_LISTEN_ADDR", key: "health.listen-addr"},
	{name: "HEALTH_URL_FILE", key: "health.url-file"},
	{name: "LOG_LEVEL", key: "log.level"},
	{name: "LOG_FORMAT", key: "log.format"},
	{name: "LOG_HTTP_RAW_UNSAFE", key: "log.http-raw-unsafe"},
	{name: "LOG_AUDIT", key: "log.audit"},
	{name: "LOG_REPEAT_WINDOW", key: "log.repeat-window"},
	{name: "CA_BUNDLE", key: "ca-bundle"},
	{name: "HTTPS_PROXY", key: "http-proxy"},
	{name: "HTTP_PROXY", key: "http-proxy"}, // fallback
	{name: "PID_FILE", key: "pid.file"},
	{name: "SLUICE_DRAIN_TIMEOUT", key: "drain-timeout"},
	{name: "RELAY_LISTEN_ADDR", key: "relay.listen-addr"},
	{name: "RELAY_PUBLIC_URL", key: "relay.public-url"},
	{name: "RELAY_ADMIN_LISTEN_ADDR", key: "relay.admin-listen-addr"},
	{name: "RELAY_TLS_CERT", key: "relay.tls-cert"},
	{name: "RELAY_TLS_KEY", key: "relay.tls-key"},
	{name: "RELAY_MAX_BODY_BYTES", key: "relay.max-body-bytes"},
	{name: "RELAY_MAX_RESPONSE_BYTES", key: "relay.max-response-bytes"},
	{name: "RELAY_RESPONSE_TIMEOUT", key: "relay.response-timeout"},
	{name: "RELAY_BODY_READ_TIMEOUT", key: "relay.body-read-timeout"},
	{name: "RELAY_MAX_BODY_BYTES_IN_FLIGHT", key: "relay.max-body-bytes-in-flight"},
	{name: "RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_KEY", key: "relay.max-body-bytes-in-flight-per-key"},
	{name: "RELAY_MAX_CONCURRENT_PER_KEY", key: "relay.max-concurrent-per-key"},
	{name: "RELAY_MAX_CONCURRENT_PER_ADDRESS", key: "relay.max-concurrent-per-address"},
	{name: "RELAY_NATS_URL", key: "relay.nats.url"},
	{name: "RELAY_NATS_TOKEN", key: "relay.nats.token", secret: true},
	{name: "RELAY_DATA_DIR", key: "relay.data-dir"},
	{name: "RELAY_ADMIN_KEY", key: "relay.admin-key", secret: true},
}

// envSource resolves environment variables; tests inject their own.
type envSource func() []string

func (e envSource) lookup(name string) (string, bool) {
	var environ []string
	if e == nil {
		environ = os.Environ()
	} else {
		environ = e()
	}
	// The last assignment wins, as with os.Getenv.
	val, ok := "", false
	for _, kv := range environ {
		if k, v, found := strings.Cut(kv, "="); found && k == name {
			val, ok = v, true
		}
	}
	return val, ok
}

// envProvider builds the koanf env provider over the explicit table. A name
// listed twice for one key (a fallback) is used only when the first is unset.
func envProvider(src envSource) *env.Env {
	present := map[string]bool{}
	for _, ev := range envTable {
		if v, ok := src.lookup(ev.name); ok && v != "" {
			present[ev.name] = true
		}
	}
	byName := map[string]envVar{}
	winner := map[string]string{} // key -> env name that supplies it
	for _, ev := range envTable {
		byName[ev.name] = ev
		if _, done := winner[ev.key]; !done && present[ev.name] {
			winner[ev.key] = ev.name
		}
	}
	environ := func() []string {
		if src == nil {
			return os.Environ()
		}
		return src()
	}
	return env.Provider(".", env.Opt{
		EnvironFunc: environ,
		TransformFunc: func(k, v string) (string, any) {
			ev, ok := byName[k]
			if !ok || v == "" || winner[ev.key] != k {
				return "", nil
			}
			switch {
			case ev.secret:
				// The environment holds the literal secret; keep only a
				// reference to it in the merged config.
				return ev.key, "env:" + ev.name
			case ev.list:
				return ev.key, splitLines(v)
			}
			return ev.key, v
		},
	})
}

func splitLines(v string) []string {
	var out []string
	for _, s := range strings.Split(v, "\n") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// loader loads the configuration from its three sources. It is kept so that
// a reload reads the same flags, environment and file again.
type loader struct {
	flags *pflag.FlagSet // parsed; nil = no flags
	env   envSource      // nil = the process environment
	path  string         // config file; "" = none
}

// configPath returns the file named by --config or SLUICE_CONFIG.
func configPath(fs *pflag.FlagSet, src envSource) string {
	if fs != nil {
		if f := fs.Lookup("config"); f != nil && f.Changed {
			return f.Value.String()
		}
	}
	v, _ := src.lookup(envConfig)
	return v
}

// nonConfigFlags are flags that are not config keys.
var nonConfigFlags = map[string]bool{"config": true, "help": true, "public": true}

// load merges file, env and flags (in rising precedence) over the defaults,
// rejects unknown file keys, and decodes into a Config. The returned Koanf
// holds only what was configured (no defaults), for reload diffs.
func (l *loader) load() (*Config, *koanf.Koanf, error) {
	k := koanf.New(".")
	if l.path != "" {
		kf := koanf.New(".")
		if err := kf.Load(file.Provider(l.path), yaml.Parser()); err != nil {
			return nil, nil, &ConfigError{Msg: fmt.Sprintf("read %s: %v", l.path, oneLine(err))}
		}
		if key, known := unknownKey(kf.Raw(), reflect.TypeFor[Config](), ""); key != "" {
			return nil, nil, cfgErr(key, "%s", withHint("unknown key in "+l.path, keyHint(key, known)))
		}
		if err := k.Merge(kf); err != nil {
			return nil, nil, &ConfigError{Msg: fmt.Sprintf("merge %s: %v", l.path, err)}
		}
	}
	for name, key := range removedEnv {
		if v, ok := l.env.lookup(name); ok && v != "" {
			return nil, nil, cfgErr(key, "set by %s in the environment: %s", name, removedKeys[key])
		}
	}
	if err := k.Load(envProvider(l.env), nil); err != nil {
		return nil, nil, &ConfigError{Msg: fmt.Sprintf("environment: %v", err)}
	}
	if l.flags != nil {
		fs := l.flags
		p := posflag.ProviderWithFlag(fs, ".", k, func(f *pflag.Flag) (string, any) {
			if !f.Changed || nonConfigFlags[f.Name] {
				return "", nil
			}
			return f.Name, posflag.FlagVal(fs, f)
		})
		if err := k.Load(p, nil); err != nil {
			return nil, nil, &ConfigError{Msg: fmt.Sprintf("flags: %v", err)}
		}
	}
	if k.Exists("pipeline") && k.Get("pipeline") == nil {
		// `pipeline:` with nothing under it (every entry commented out, say):
		// neither the default chain nor none is clearly meant.
		return nil, nil, cfgErr("pipeline", "empty value: write `pipeline: []` to run no plugins, or remove the key for the default chain")
	}
	cfg := defaults()
	if err := decode(k, &cfg); err != nil {
		return nil, nil, err
	}
	return &cfg, k, nil
}

func decode(k *koanf.Koanf, cfg *Config) error {
	err := k.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				mapstructure.StringToTimeDurationHookFunc(),
				stringToSingletonSlice,
			),
			WeaklyTypedInput: true,
			ErrorUnused:      true,
		},
	})
	if err == nil {
		return nil
	}
	var de *mapstructure.DecodeError
	if errors.As(err, &de) {
		return cfgErr(de.Name(), "%s", describeDecodeError(de))
	}
	return &ConfigError{Msg: oneLine(err)}
}

// stringToSingletonSlice turns a scalar string into a one-element list, so a
// single `mcp.server-url: http://…` works and commas inside an entry are kept
// (mapstructure's weak decoding would otherwise split or refuse it).
func stringToSingletonSlice(from, to reflect.Type, data any) (any, error) {
	if from.Kind() == reflect.String && to.Kind() == reflect.Slice && to.Elem().Kind() == reflect.String {
		if s := data.(string); s != "" {
			return []string{s}, nil
		}
		return []string{}, nil
	}
	return data, nil
}

func describeDecodeError(de *mapstructure.DecodeError) string {
	inner := de.Unwrap()
	var pe *mapstructure.ParseError
	var ue *mapstructure.UnconvertibleTypeError
	switch {
	case errors.As(inner, &pe):
		return "want " + kindName(pe.Expected.Type())
	case errors.As(inner, &ue):
		return "want " + kindName(ue.Expected.Type())
	}
	return oneLine(inner)
}

func kindName(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "a duration such as 30s or 2m"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Uint32, reflect.Uint64, reflect.Uint:
		return "a non-negative integer"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// unknownKey returns the first key of m (in sorted order, as a dotted path)
// that t has no field for, or "", with the keys valid where it was found
// (for suggestions).
func unknownKey(m map[string]any, t reflect.Type, prefix string) (string, []string) {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := f.Tag.Get("koanf"); tag != "" {
			fields[tag] = f.Type
		}
	}
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		path := prefix + key
		ft, ok := fields[key]
		if !ok {
			return path, leafKeys(t, prefix)
		}
		switch ft.Kind() {
		case reflect.Struct:
			if sub, ok := m[key].(map[string]any); ok && ft != reflect.TypeFor[time.Duration]() {
				if u, known := unknownKey(sub, ft, path+"."); u != "" {
					return u, known
				}
			}
		case reflect.Slice:
			if ft.Elem().Kind() != reflect.Struct {
				continue
			}
			list, _ := m[key].([]any)
			for i, e := range list {
				if sub, ok := e.(map[string]any); ok {
					if u, known := unknownKey(sub, ft.Elem(), fmt.Sprintf("%s[%d].", path, i)); u != "" {
						return u, known
					}
				}
			}
		}
	}
	return "", nil
}
