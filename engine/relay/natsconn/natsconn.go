package natsconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// DefaultConnectTimeout bounds the first connection (Config.ConnectTimeout).
const DefaultConnectTimeout = 10 * time.Second

// Config says how to reach a NATS cluster. The zero value of each optional
// field is its default.
type Config struct {
	// URL is one or more server URLs, comma-separated
	// ("nats://n1:4222,nats://n2:4222"); schemes nats, tls, ws, wss. The
	// client learns the rest of the cluster from the server it reaches.
	URL string
	// Name is the connection name the servers show (default "sluice").
	Name string
	// Credentials is the content of a NATS credentials file (a user JWT and
	// its nkey seed, as `nsc` writes it), already resolved from its
	// reference. Empty: no JWT authentication.
	Credentials string
	// Token is an authentication token, already resolved. It cannot be
	// combined with Credentials.
	Token string
	// TLS configures TLS to the servers (a tls:// URL, or a server that
	// requires it).
	TLS TLS
	// ConnectTimeout bounds the first connection to the cluster (default
	// DefaultConnectTimeout); after it the client reconnects forever.
	ConnectTimeout time.Duration
}

// TLS configures the client side of TLS to NATS. Any field set turns TLS on.
type TLS struct {
	// CAFile is a PEM bundle of the roots that sign the servers'
	// certificates (default: the system roots).
	CAFile string
	// CertFile and KeyFile are a client certificate and key (mutual TLS).
	CertFile string
	KeyFile  string
	// ServerName overrides the name checked in the servers' certificates.
	ServerName string
}

func (t TLS) enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// Validate checks c without connecting. Its errors name the field.
func (c Config) Validate() error {
	if strings.TrimSpace(c.URL) == "" {
		return errors.New("nats: url: required")
	}
	for _, u := range strings.Split(c.URL, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil {
			return fmt.Errorf("nats: url %q: %v", Redact(u), errors.Unwrap(err))
		}
		switch pu.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("nats: url %q: scheme must be nats, tls, ws or wss", Redact(u))
		}
		if pu.Host == "" {
			return fmt.Errorf("nats: url %q: no host", Redact(u))
		}
	}
	if c.Credentials != "" && c.Token != "" {
		return errors.New("nats: credentials and token: set one, not both")
	}
	if c.Credentials != "" {
		if _, err := nkeys.ParseDecoratedJWT([]byte(c.Credentials)); err != nil {
			return fmt.Errorf("nats: credentials: no user JWT: %v", err)
		}
		if _, err := nkeys.ParseDecoratedNKey([]byte(c.Credentials)); err != nil {
			return fmt.Errorf("nats: credentials: no nkey seed: %v", err)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("nats: tls.cert-file and tls.key-file: set both or neither")
	}
	if c.ConnectTimeout < 0 {
		return errors.New("nats: connect-timeout: must not be negative")
	}
	return nil
}

// Redact returns a server URL without its user information, for logs and
// errors.
func Redact(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.User == nil {
		if i := strings.LastIndex(raw, "@"); i >= 0 {
			return "…@" + raw[i+1:]
		}
		return raw
	}
	u.User = nil
	return u.String()
}

// Connect connects to the cluster c names and returns once connected (or
// ctx or c.ConnectTimeout ends). The connection reconnects forever, and
// logs disconnections and reconnections to log (nil: discard) with the
// server's address, never a credential.
func Connect(ctx context.Context, c Config, log *slog.Logger) (*nats.Conn, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts, err := c.options(log)
	if err != nil {
		return nil, err
	}
	return dial(ctx, c.URL, c.ConnectTimeout, opts)
}

// options are the nats.Options of c, without the URL.
func (c Config) options(log *slog.Logger) ([]nats.Option, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := c.Name
	if name == "" {
		name = "sluice"
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.Timeout(5 * time.Second),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats: disconnected", "server", Redact(nc.ConnectedUrl()), "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats: reconnected", "server", Redact(nc.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("nats: asynchronous error", "subject", subject, "err", err)
		}),
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.Credentials != "" {
		creds := []byte(c.Credentials)
		opts = append(opts, nats.UserJWT(
			func() (string, error) { return nkeys.ParseDecoratedJWT(creds) },
			func(nonce []byte) ([]byte, error) {
				kp, err := nkeys.ParseDecoratedNKey(creds)
				if err != nil {
					return nil, err
				}
				defer kp.Wipe()
				return kp.Sign(nonce)
			}))
	}
	if c.TLS.enabled() {
		tc, err := c.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// config builds the client's tls.Config.
func (t TLS) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("nats: tls.ca-file: %v", unwrapPath(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nats: tls.ca-file %s: no PEM certificate in it", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats: tls.cert-file: load certificate and key: %v", unwrapPath(err))
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// dial connects with opts, bounded by timeout and ctx.
func dial(ctx context.Context, urls string, timeout time.Duration, opts []nats.Option) (*nats.Conn, error) {
	if timeout == 0 {
		timeout = DefaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		nc, err := nats.Connect(urls, opts...)
		if err == nil {
			return nc, nil
		}
		last = err
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || isTLSError(err) {
			break // retrying will not help
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("nats: connect to %s: %w", redactList(urls), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("nats: connect to %s: %w", redactList(urls), last)
}

func isTLSError(err error) bool {
	var ce *tls.CertificateVerificationError
	return errors.As(err, &ce) || errors.Is(err, nats.ErrSecureConnRequired) || errors.Is(err, nats.ErrSecureConnWanted)
}

func redactList(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		parts[i] = Redact(p)
	}
	return strings.Join(parts, ",")
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
