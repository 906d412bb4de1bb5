package main

import (
	"fmt"
	"math"
	"net"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/sluicemcp/sluice/engine/agent"
	"github.com/sluicemcp/sluice/engine/relay"
	"github.com/sluicemcp/sluice/host"
)

// numRange is the range a numeric config key accepts (a duration's in
// nanoseconds). Zero, when zero is true, is accepted too: "the default".
type numRange struct {
	min, max int64
	zero     bool
}

// Bounds of the config's own numeric keys (the plugin limits are the host's:
// host.MaxMemoryPages and the like).
const (
	maxPollTimeout         = agent.MaxPollTimeout
	maxWaitTimeout         = time.Hour      // mcp.startup-wait-timeout, drain-timeout
	maxResponseTimeout     = 24 * time.Hour // relay.response-timeout and per tunnel
	maxRelayBodyBytes      = relay.MaxBodyLimit
	minRelayBodyBytes      = 1024
	maxNATSReplicas        = 5       // relay.nats.replicas: JetStream's most
	maxBodyBudget          = 1 << 40 // relay.max-body-bytes-in-flight(-per-key)
	maxConcurrentPerClient = 1000000 // relay.max-concurrent-per-key and -per-address
	maxConcurrentCalls     = agent.MaxMaxConcurrent
	wasmPage               = 64 << 10
	minDurationInConfig    = time.Millisecond
)

func ints(lo, hi int64) numRange { return numRange{min: lo, max: hi} }

func durs(lo, hi time.Duration) numRange { return numRange{min: int64(lo), max: int64(hi)} }

// orZero accepts 0 too (the default) besides r.
func orZero(r numRange) numRange { r.zero = true; return r }

// numRanges maps every numeric key of Config, list indexes written [], to
// the range it accepts. TestEveryNumericKeyHasARange keeps it complete:
// no value outside it reaches the engine, the host or a library.
var numRanges = func() map[string]numRange {
	m := map[string]numRange{
		"control-plane.max-inflight":             ints(1, maxMaxInflight),
		"control-plane.poll-timeout":             durs(minDurationInConfig, maxPollTimeout),
		"mcp.max-concurrent-requests":            ints(1, maxConcurrentCalls),
		"mcp.startup-wait-timeout":               durs(0, maxWaitTimeout),
		"mcp.max-streams":                        ints(1, maxMaxStreams),
		"drain-timeout":                          durs(0, maxWaitTimeout),
		"log.repeat-window":                      orZero(durs(time.Second, maxRepeatWindow)),
		"relay.max-body-bytes":                   ints(minRelayBodyBytes, maxRelayBodyBytes),
		"relay.max-response-bytes":               ints(minRelayBodyBytes, maxRelayBodyBytes),
		"relay.response-timeout":                 durs(minDurationInConfig, maxResponseTimeout),
		"relay.body-read-timeout":                durs(minDurationInConfig, maxWaitTimeout),
		"relay.max-body-bytes-in-flight":         orZero(ints(minRelayBodyBytes, maxBodyBudget)),
		"relay.max-body-bytes-in-flight-per-key": orZero(ints(minRelayBodyBytes, maxBodyBudget)),
		"relay.max-concurrent-per-key":           orZero(ints(1, maxConcurrentPerClient)),
		"relay.max-concurrent-per-address":       orZero(ints(1, maxConcurrentPerClient)),
		"relay.nats.replicas":                    orZero(ints(1, maxNATSReplicas)),
		"relay.tunnels[].response-timeout":       orZero(durs(minDurationInConfig, maxResponseTimeout)),
	}
	pluginLimits := map[string]numRange{
		"limits.memory-pages":     orZero(ints(1, host.MaxMemoryPages)),
		"limits.call-timeout":     orZero(durs(minDurationInConfig, host.MaxTimeLimit)),
		"limits.max-message-size": orZero(ints(1, host.MaxSizeLimit)),
		"limits.max-memory":       orZero(ints(wasmPage, host.MaxMemoryBudget)),
		"limits.pool-size":        orZero(ints(1, host.MaxPoolSize)),
		"breaker.failures":        orZero(ints(1, host.MaxBreakerFailures)),
		"breaker.backoff":         orZero(durs(minDurationInConfig, host.MaxTimeLimit)),
		"breaker.max-backoff":     orZero(durs(minDurationInConfig, host.MaxTimeLimit)),
	}
	for _, p := range []string{"pipeline[]", "relay.pipeline[]", "mcp.bindings[].wasm"} {
		for k, r := range pluginLimits {
			m[p+"."+k] = r
		}
	}
	w := "mcp.bindings[].wasm."
	m[w+"http.timeout"] = orZero(durs(minDurationInConfig, host.MaxTimeLimit))
	m[w+"http.max-response-bytes"] = orZero(ints(1, host.MaxSizeLimit))
	m[w+"commands[].timeout"] = orZero(durs(minDurationInConfig, host.MaxTimeLimit))
	m[w+"commands[].max-output-bytes"] = orZero(ints(1, host.MaxSizeLimit))
	return m
}()

var durationType = reflect.TypeFor[time.Duration]()

// checkRanges returns the first numeric value of c outside its range, as a
// ConfigError naming the key and the range
// (`pipeline[0].limits.memory-pages: 70000 is out of range 1..65536`).
func checkRanges(c *Config) error { return checkRangesAt(c, "", "") }

// checkRangesAt is checkRanges for a part of the config (a pointer to a
// struct) at key, whose pattern is pattern: a pipeline entry at
// "relay.pipeline[1]", "relay.pipeline[]".
func checkRangesAt(part any, key, pattern string) error {
	return walkNumbers(reflect.ValueOf(part).Elem(), key, pattern, func(key, pattern string, v reflect.Value) error {
		r, ok := numRanges[pattern]
		if !ok {
			return nil // kept complete by TestEveryNumericKeyHasARange
		}
		return r.check(key, v)
	})
}

// walkNumbers calls f for every numeric field under v (a struct), with its
// key (pipeline[0].limits.memory-pages) and its pattern
// (pipeline[].limits.memory-pages).
func walkNumbers(v reflect.Value, key, pattern string, f func(key, pattern string, v reflect.Value) error) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("koanf")
		if tag == "" {
			continue
		}
		fk, fp := tag, tag
		if key != "" {
			fk, fp = key+"."+tag, pattern+"."+tag
		}
		fv := v.Field(i)
		switch {
		case isNumeric(fv.Type()):
			if err := f(fk, fp, fv); err != nil {
				return err
			}
		case fv.Kind() == reflect.Struct:
			if err := walkNumbers(fv, fk, fp, f); err != nil {
				return err
			}
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			for j := 0; j < fv.Len(); j++ {
				if err := walkNumbers(fv.Index(j), fmt.Sprintf("%s[%d]", fk, j), fp+"[]", f); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func isNumeric(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

func (r numRange) check(key string, v reflect.Value) error {
	var n int64
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n = v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if v.Uint() > math.MaxInt64 {
			return r.outOfRange(key, v)
		}
		n = int64(v.Uint())
	default:
		return r.outOfRange(key, v) // no float key exists; refuse rather than guess
	}
	if (n == 0 && r.zero) || (n >= r.min && n <= r.max) {
		return nil
	}
	return r.outOfRange(key, v)
}

func (r numRange) outOfRange(key string, v reflect.Value) error {
	if v.Type() == durationType {
		return cfgErr(key, "%s is out of range %s..%s", fmtDuration(time.Duration(v.Int())),
			fmtDuration(time.Duration(r.min)), fmtDuration(time.Duration(r.max)))
	}
	return cfgErr(key, "%v is out of range %d..%d", v.Interface(), r.min, r.max)
}

// describe is the range as the docs write it: 1..65536, 1ms..1h, with
// "(0 = default)" when zero is accepted too.
func (r numRange) describe(isDuration bool) string {
	s := fmt.Sprintf("%d..%d", r.min, r.max)
	if isDuration {
		s = fmtDuration(time.Duration(r.min)) + ".." + fmtDuration(time.Duration(r.max))
	}
	if r.zero {
		s += " (0 = default)"
	}
	return s
}

// fmtDuration writes d without trailing zero units: 1h, 10m, 1m30s, 1ms.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// checkListenAddr checks a host:port listen address, its port a number in
// 0..65535 (0 = any free port).
func checkListenAddr(key, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return cfgErr(key, "want host:port")
	}
	n, err := strconv.ParseUint(port, 10, 64)
	if err != nil {
		return cfgErr(key, "port %q: want a number", port)
	}
	if n > math.MaxUint16 {
		return cfgErr(key, "port %d is out of range 0..65535", n)
	}
	return nil
}
