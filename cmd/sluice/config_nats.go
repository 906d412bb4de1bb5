package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicemcp/sluice/engine/relay/natsconn"
	"github.com/sluicemcp/sluice/engine/relay/store"
	"github.com/sluicemcp/sluice/engine/relay/store/filestore"
	"github.com/sluicemcp/sluice/engine/relay/store/natskv"
)

// connConfig is natsconn's configuration with resolved secrets.
func (n RelayNATS) connConfig(creds, token string) natsconn.Config {
	return natsconn.Config{URL: n.URL, Name: "sluice relay", Credentials: creds, Token: token,
		TLS: natsconn.TLS{CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile, ServerName: n.TLS.ServerName}}
}

// natsCfgErr turns natsconn's "nats: field: problem" into a config error
// naming the relay.nats key.
func natsCfgErr(err error) error {
	msg := strings.TrimPrefix(err.Error(), "nats: ")
	key, rest, ok := strings.Cut(msg, ": ")
	if !ok {
		return cfgErr("relay.nats", "%s", msg)
	}
	field, _, _ := strings.Cut(key, " ")
	return cfgErr("relay.nats."+field, "%s", strings.TrimPrefix(rest, field+": "))
}

// resolveNATS resolves relay.nats's secrets.
func (s *session) resolveNATS() (natsconn.Config, error) {
	n := s.cfg.Relay.NATS
	creds, err := n.Credentials.resolve("relay.nats.credentials", s.cli.env)
	if err != nil {
		return natsconn.Config{}, err
	}
	token, err := n.Token.resolve("relay.nats.token", s.cli.env)
	if err != nil {
		return natsconn.Config{}, err
	}
	// natsconn reads these files whole: check first that each is a regular
	// file of a sane size (/dev/zero would never end, a FIFO would block).
	for key, path := range map[string]string{"relay.nats.tls.ca-file": n.TLS.CAFile,
		"relay.nats.tls.cert-file": n.TLS.CertFile, "relay.nats.tls.key-file": n.TLS.KeyFile} {
		if path == "" {
			continue
		}
		if _, err := readFileLimited(path, maxPEMFileBytes); err != nil {
			return natsconn.Config{}, cfgErr(key, "%v", unwrapPathErr(err))
		}
	}
	c := n.connConfig(creds, token)
	if err := c.Validate(); err != nil {
		return natsconn.Config{}, natsCfgErr(err)
	}
	return c, nil
}

// relayDataDir is relay.data-dir, or the default under the user's state
// directory.
func (s *session) relayDataDir() (string, error) {
	if d := s.cfg.Relay.DataDir; d != "" {
		return d, nil
	}
	if x, ok := s.cli.env.lookup("XDG_STATE_HOME"); ok && filepath.IsAbs(x) {
		return filepath.Join(x, "sluice", "relay"), nil
	}
	if h, ok := s.cli.env.lookup("HOME"); ok && filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "sluice", "relay"), nil
	}
	return "", cfgErr("relay.data-dir", "no default: neither XDG_STATE_HOME nor HOME is set; set relay.data-dir (RELAY_DATA_DIR)")
}

// relayStore is where `sluice relay` keeps its managed tunnels and keys.
type relayStore struct {
	store.Store
	where string // for the start line: the data-dir, or the NATS bucket
}

func (r *relayStore) close() { _ = r.Close() }

// connectNATS connects to the cluster relay.nats names, resolving its
// secret references: the relay's one connection, for its tunnel store and
// its replicas' work queue alike. It returns nil without relay.nats.url.
func (s *session) connectNATS(ctx context.Context) (*nats.Conn, error) {
	if s.cfg.Relay.NATS.URL == "" {
		return nil, nil
	}
	c, err := s.resolveNATS()
	if err != nil {
		return nil, err
	}
	nc, err := natsconn.Connect(ctx, c, s.log)
	if err != nil {
		return nil, fmt.Errorf("relay.nats.url: %w", err)
	}
	return nc, nil
}

// openRelayStore opens the store: a JetStream bucket on nc, the data
// directory without NATS (nc nil). nc stays the caller's.
func (s *session) openRelayStore(ctx context.Context, nc *nats.Conn) (*relayStore, error) {
	if nc == nil {
		dir, err := s.relayDataDir()
		if err != nil {
			return nil, err
		}
		st, err := filestore.Open(dir, filestore.Options{Logger: s.log})
		if err != nil {
			return nil, cfgErr("relay.data-dir", "%v", strings.TrimPrefix(err.Error(), "filestore: "))
		}
		return &relayStore{Store: st, where: dir}, nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	n := s.cfg.Relay.NATS
	replicas := n.Replicas
	if replicas == 0 {
		replicas = 1
		if len(nc.Servers()) >= 3 {
			replicas = 3
		}
	}
	bucket := kvBucket(n.Prefix)
	st, err := natskv.Open(ctx, js, natskv.Options{Bucket: bucket, Replicas: replicas, Logger: s.log})
	if err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, cfgErr("relay.nats.url", "the NATS server has no JetStream (start it with -js)")
		}
		return nil, err
	}
	return &relayStore{Store: st, where: "nats bucket " + bucket}, nil
}

// kvBucket is the key-value bucket of a relay.nats.prefix: the default
// bucket for none, else the prefix (made a valid bucket name) + "_relay".
func kvBucket(prefix string) string {
	if prefix == "" {
		return natskv.DefaultBucket
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, prefix) + "_relay"
}
