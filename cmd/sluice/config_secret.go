package main

import (
	"errors"
	"os"
	"strings"
)

// Secret is a configured secret: in the merged config always a reference,
// "env:NAME" or "file:/path" (a value from the environment is turned into a
// reference to its own variable when loaded).
type Secret string

// IsSet reports whether a reference is configured.
func (s Secret) IsSet() bool { return s != "" }

// check rejects a literal.
func (s Secret) check(key string) error {
	if s == "" {
		return nil
	}
	ref := string(s)
	switch {
	case strings.HasPrefix(ref, "env:"):
		if strings.TrimPrefix(ref, "env:") == "" {
			return cfgErr(key, "env: reference without a variable name")
		}
	case strings.HasPrefix(ref, "file:"):
		if strings.TrimPrefix(ref, "file:") == "" {
			return cfgErr(key, "file: reference without a path")
		}
	default:
		return cfgErr(key, "%s", secretHint)
	}
	return nil
}

// resolve returns the secret's value. Errors name the key and the reference,
// never the value.
func (s Secret) resolve(key string, src envSource) (string, error) {
	if err := s.check(key); err != nil || s == "" {
		return "", err
	}
	ref := string(s)
	if name, ok := strings.CutPrefix(ref, "env:"); ok {
		v, found := src.lookup(name)
		if !found || v == "" {
			return "", cfgErr(key, "environment variable %s (from %s) is not set", name, ref)
		}
		return v, nil
	}
	path := strings.TrimPrefix(ref, "file:")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", cfgErr(key, "read secret file %s: %v", path, unwrapPathErr(err))
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", cfgErr(key, "secret file %s is empty", path)
	}
	return v, nil
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
