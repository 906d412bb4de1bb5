package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sluicemcp/sluice/host"
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
	v, err := resolveRef(string(s), src)
	if err != nil {
		return "", cfgErr(key, "%v", err)
	}
	return v, nil
}

// resolveRef returns the value of a well-formed reference, env:NAME or
// file:/path. Its errors name the reference, never a value.
func resolveRef(ref string, src envSource) (string, error) {
	if name, ok := strings.CutPrefix(ref, "env:"); ok {
		v, found := src.lookup(name)
		if !found || v == "" {
			return "", fmt.Errorf("environment variable %s (from %s) is not set", name, ref)
		}
		return v, nil
	}
	path := strings.TrimPrefix(ref, "file:")
	b, err := readFileLimited(path, maxSecretFileBytes)
	if err != nil {
		return "", fmt.Errorf("read secret file %s: %v", path, unwrapPathErr(err))
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return v, nil
}

// pluginSecrets is the host's resolver for the secret references in plugin
// config (docs/plugins.md, "Secrets in plugin config").
func pluginSecrets(src envSource) host.SecretResolver {
	return func(ref string) (string, error) {
		switch {
		case ref == "env:":
			return "", errors.New("env: reference without a variable name")
		case ref == "file:":
			return "", errors.New("file: reference without a path")
		}
		return resolveRef(ref, src)
	}
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
