package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerOptions configure a NATS server started inside the process.
type ServerOptions struct {
	// StoreDir is where JetStream keeps its data (required: JetStream is
	// always on).
	StoreDir string
	// Listen is the client address ("127.0.0.1:4222"; port 0 picks one).
	// Empty: no listener at all, only connections from this process
	// (Server.Connect).
	Listen string
	// Name is the server's name (default: generated).
	Name string
	// Logger receives the server's notices and errors (nil: discard).
	Logger *slog.Logger
}

// Server is a NATS server with JetStream running inside the process.
type Server struct {
	s *server.Server
}

// StartServer starts a server and returns once it accepts connections.
func StartServer(o ServerOptions) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("nats: embedded server: store directory required")
	}
	opts := &server.Options{
		ServerName: o.Name,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      o.Logger == nil,
		MaxPayload: 8 << 20,
	}
	if o.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats: embedded server: listen %q: %w", o.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("nats: embedded server: listen %q: bad port", o.Listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, p
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: embedded server: %w", err)
	}
	if o.Logger != nil {
		s.SetLoggerV2(&serverLog{l: o.Logger}, false, false, false)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats: embedded server: not ready within 10s")
	}
	return &Server{s: s}, nil
}

// ClientURL is the URL clients connect to ("" without a listener).
func (s *Server) ClientURL() string {
	if s.s.Addr() == nil {
		return ""
	}
	return s.s.ClientURL()
}

// Connect opens a connection to the server from inside the process
// (without a socket), with the options Connect would use for c (its URL,
// credentials and TLS are ignored).
func (s *Server) Connect(ctx context.Context, name string, log *slog.Logger) (*nats.Conn, error) {
	opts, err := Config{Name: name}.options(log)
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.InProcessServer(s.s))
	return dial(ctx, "", 0, opts)
}

// NumClients is the number of client connections the server holds now.
func (s *Server) NumClients() int { return s.s.NumClients() }

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	s.s.Shutdown()
	s.s.WaitForShutdown()
}

// serverLog adapts the server's logger to slog.
type serverLog struct{ l *slog.Logger }

func (s *serverLog) Noticef(format string, v ...any) {
	s.l.Debug("nats server: " + fmt.Sprintf(format, v...))
}
func (s *serverLog) Warnf(format string, v ...any) {
	s.l.Warn("nats server: " + fmt.Sprintf(format, v...))
}
func (s *serverLog) Fatalf(format string, v ...any) {
	s.l.Error("nats server: " + fmt.Sprintf(format, v...))
}
func (s *serverLog) Errorf(format string, v ...any) {
	s.l.Error("nats server: " + fmt.Sprintf(format, v...))
}
func (s *serverLog) Debugf(format string, v ...any) {}
func (s *serverLog) Tracef(format string, v ...any) {}
