package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// liveKey is a config key that reloads without a restart, with the function
// that applies a new value. apply must leave the running state untouched when
// it fails.
type liveKey struct {
	key   string
	apply func(ctx context.Context, cfg *Config) error
	// value is the key's effective value in a loaded config (after mode
	// defaults: an absent `pipeline` is the default chain, `pipeline: []`
	// none); a reload applies the key when it changed.
	value func(*Config) any
	// always, when it reports true, applies the key on every reload even
	// when its value is unchanged (a file: secret may have been rotated).
	always func(*Config) bool
}

// reloadLoop waits for SIGHUP, a change of the config file or a test trigger,
// then reloads: live keys whose value changed are applied, every other
// changed key logs "restart required: <key>". It returns when ctx ends.
// reloaded, when non-nil, is called after each reload attempt (tests).
func (s *session) reloadLoop(ctx context.Context, live []liveKey, reloaded func(error)) {
	trigger := make(chan struct{}, 1)
	poke := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	if s.cli.signals {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
					s.log.Info("reload requested", "phase", "reload", "by", "SIGHUP")
					poke()
				}
			}
		}()
	}
	if s.loader.path != "" {
		// Editors and config managers write in several steps (truncate,
		// write, rename): reload once the file has been quiet for a moment,
		// never on a half-written file.
		changed := make(chan struct{}, 1)
		go debounce(ctx, changed, fileQuiet, poke)
		f := file.Provider(s.loader.path)
		if err := f.Watch(func(_ any, err error) {
			if err != nil {
				s.log.Warn("config file watch failed; reload with SIGHUP", "err", err)
				return
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}); err != nil {
			s.log.Warn("cannot watch the config file; reload with SIGHUP", "err", err)
		} else {
			defer func() { _ = f.Unwatch() }()
		}
	}
	test := s.cli.reload
	// applied holds, per live key, the value last applied successfully.
	applied := map[string]any{}
	for _, lk := range live {
		applied[lk.key] = lk.value(s.cfg)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-trigger:
		case _, ok := <-test:
			if !ok {
				test = nil
				continue
			}
		}
		err := s.reloadOnce(ctx, live, applied)
		if reloaded != nil {
			reloaded(err)
		}
	}
}

// reloadOnce reloads the configuration once. It logs "reload started",
// then one closing line with the time it took and the active chains:
// "reload finished", or "reload failed: kept the old …" naming what stayed.
func (s *session) reloadOnce(ctx context.Context, live []liveKey, applied map[string]any) error {
	start := time.Now()
	s.log.Info("reload started", "phase", "reload")
	s.reopenAudit()
	var failed []string
	err := s.reloadKeys(ctx, live, applied, &failed)
	attrs := append([]any{"phase", "reload", "took_ms", float64(time.Since(start).Microseconds()) / 1000}, s.chainAttrs()...)
	if err != nil {
		s.log.Error("reload failed: kept the old "+strings.Join(failed, " and "), append(attrs, "err", err)...)
		return err
	}
	s.log.Info("reload finished", attrs...)
	return nil
}

// reloadKeys loads the configuration again and applies the live keys that
// changed. failed receives what was kept because it could not be applied
// ("configuration" when nothing could be); the error holds every reason.
func (s *session) reloadKeys(ctx context.Context, live []liveKey, applied map[string]any, failed *[]string) error {
	if s.loader.path != "" {
		// A file caught between truncate and write reads as empty: never
		// take that for "remove every key".
		if b, err := os.ReadFile(s.loader.path); err == nil && len(strings.TrimSpace(string(b))) == 0 {
			*failed = append(*failed, "configuration")
			return &ConfigError{Msg: s.loader.path + " is empty"}
		}
	}
	var cfg *Config
	var k *koanf.Koanf
	err := recovered(s.log, "loading the configuration", func() (err error) {
		cfg, k, err = s.loader.load()
		if err == nil {
			applyModeDefaults(cfg, s.mode, k)
			err = cfg.validate(s.mode)
		}
		return err
	})
	if err != nil {
		// Nothing is applied. A key under a live key (pipeline[0].limits.…)
		// names what was kept: the running one of that key.
		*failed = append(*failed, keptFor(err, live))
		return err
	}
	// Keys that need a restart: compared with what the process started with.
	liveNames := make([]string, 0, len(live))
	for _, lk := range live {
		liveNames = append(liveNames, lk.key)
	}
	for _, key := range changedKeys(s.known.All(), k.All()) {
		if !underAny(key, liveNames) {
			s.log.Warn("restart required: "+key, "phase", "reload")
		}
	}
	var errs []error
	for _, lk := range live {
		next := lk.value(cfg)
		if !lk.always(cfg) && reflect.DeepEqual(normalize(applied[lk.key]), normalize(next)) {
			continue
		}
		if err := recovered(s.log, "reloading "+lk.key, func() error { return lk.apply(ctx, cfg) }); err != nil {
			*failed = append(*failed, lk.key)
			errs = append(errs, err)
			continue
		}
		applied[lk.key] = next
		s.log.Info("reloaded "+lk.key, "phase", "reload")
	}
	return joinErrors(errs)
}

// keptFor names what a reload whose configuration is invalid kept: the live
// key the invalid key is part of, or "configuration".
func keptFor(err error, live []liveKey) string {
	var ce *ConfigError
	if errors.As(err, &ce) && ce.Key != "" {
		for _, lk := range live {
			if ce.Key == lk.key || strings.HasPrefix(ce.Key, lk.key+".") || strings.HasPrefix(ce.Key, lk.key+"[") {
				return lk.key
			}
		}
	}
	return "configuration"
}

// joinErrors joins errs into one error with a one-line message (nil for
// none); errors.Is and errors.As see each of them.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return &joinedError{msg: strings.Join(msgs, "; "), errs: errs}
}

type joinedError struct {
	msg  string
	errs []error
}

func (e *joinedError) Error() string   { return e.msg }
func (e *joinedError) Unwrap() []error { return e.errs }

// fileQuiet is how long the config file must stay unchanged before a reload.
const fileQuiet = 300 * time.Millisecond

// debounce calls fire once in stays quiet for d after the last event.
func debounce(ctx context.Context, in <-chan struct{}, d time.Duration, fire func()) {
	t := time.NewTimer(d)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-in:
			t.Reset(d)
		case <-t.C:
			fire()
		}
	}
}

// changedKeys lists the flattened keys whose values differ, sorted.
func changedKeys(old, cur map[string]any) []string {
	var out []string
	for k, v := range cur {
		if ov, ok := old[k]; !ok || !reflect.DeepEqual(normalize(ov), normalize(v)) {
			out = append(out, k)
		}
	}
	for k := range old {
		if _, ok := cur[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func underAny(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if key == p || strings.HasPrefix(key, p+".") {
			return true
		}
	}
	return false
}

// normalize makes an empty list and an absent value compare equal.
func normalize(v any) any {
	if v == nil {
		return nil
	}
	rv := reflect.ValueOf(v)
	if (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Map) && rv.Len() == 0 {
		return nil
	}
	return v
}
