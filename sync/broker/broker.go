package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Config configures an in-process broker.
type Config struct {
	// Addr is the TCP address to listen on, such as "127.0.0.1:1883"; a port of 0 picks a
	// free port (see Broker.Addr). Empty means "127.0.0.1:0": loopback by default.
	Addr string
	// TLS, if set, makes the listener speak TLS (set ClientAuth for client certificates).
	TLS *tls.Config
	// Users maps usernames to passwords. Nil allows every client, with or without
	// credentials; non-nil requires a matching pair.
	Users map[string]string
	// ACL enforces the per-client topic rule described in the package documentation. It
	// trusts the username a client claims, so it means something only together with Users
	// (or, in production, client certificates).
	ACL bool
	// LedgerUsers are the usernames with ledger rights when ACL is on.
	LedgerUsers []string
	// Logger receives the broker's events; mochi's own lines arrive at debug level.
	// Nil discards.
	Logger *slog.Logger
}

// Broker is a running in-process broker.
type Broker struct {
	srv  *mqtt.Server
	ln   *listener
	log  *slog.Logger
	tls  bool
	stop chan struct{} // closed by Close; ends the ctx watcher
	wg   sync.WaitGroup

	mu      sync.Mutex // serialises shutdown between Close and the ctx watcher
	stopped bool

	closeOnce sync.Once
	closeErr  error
}

// closeTimeout bounds mochi's own shutdown in Close.
const closeTimeout = 3 * time.Second

// Errors.
var (
	// ErrConfig reports an unusable Config.
	ErrConfig = errors.New("broker: bad config")
)

// Start listens on cfg.Addr and serves MQTT until Close is called or ctx ends, whichever
// comes first. It returns once the listener is bound, so Addr is valid and clients may
// connect at once.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("broker: start: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ledgers := make(map[string]bool, len(cfg.LedgerUsers))
	for _, u := range cfg.LedgerUsers {
		if u == "" {
			return nil, fmt.Errorf("%w: empty ledger username", ErrConfig)
		}
		ledgers[u] = true
	}

	mochiLog := slog.New(debugHandler{logger.Handler().WithAttrs([]slog.Attr{slog.String("component", "mochi")})})
	srv := mqtt.New(&mqtt.Options{
		Logger: mochiLog,
		// $SYS topics would be noise in tests and a leak of broker internals to kiosks.
		SysTopicResendInterval: 1 << 30,
	})
	h := &accessHook{users: cfg.Users, acl: cfg.ACL, ledgers: ledgers, log: logger}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("broker: add hook: %w", err)
	}
	ln := &listener{id: "tcp", addr: addr, tlsConf: cfg.TLS}
	if err := srv.AddHook(&takeoverHook{srv: srv, ln: ln, log: logger}, nil); err != nil {
		return nil, fmt.Errorf("broker: add hook: %w", err)
	}
	if err := srv.AddListener(ln); err != nil {
		return nil, fmt.Errorf("broker: listen %s: %w", addr, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("broker: serve: %w", err)
	}
	b := &Broker{srv: srv, ln: ln, log: logger, tls: cfg.TLS != nil, stop: make(chan struct{})}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		select {
		case <-ctx.Done():
			b.shutdown()
		case <-b.stop:
		}
	}()
	logger.Info("broker: listening", "addr", ln.Address(), "tls", b.tls, "acl", cfg.ACL)
	return b, nil
}

// Addr returns the address the broker listens on (host:port), with the real port when the
// configured port was 0.
func (b *Broker) Addr() string { return b.ln.Address() }

// URL returns a client URL for the broker: tcp://host:port, or ssl://host:port with TLS.
func (b *Broker) URL() string {
	if b.tls {
		return "ssl://" + b.Addr()
	}
	return "tcp://" + b.Addr()
}

// Close stops the broker: it closes the listener and every client connection and returns
// once they are gone, so the address can be bound again at once. It is safe to call more
// than once.
func (b *Broker) Close() error {
	b.shutdown()
	b.closeOnce.Do(func() { close(b.stop) })
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closeErr
}

func (b *Broker) shutdown() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.stopped = true
	// Cut every socket first: a connection goroutine blocked in I/O while holding one of
	// mochi's locks would otherwise stall mochi's own shutdown, which takes those locks
	// (seen as a rare hang of Close in the end-to-end tests). With the sockets gone every
	// such goroutine fails out and releases what it holds.
	b.ln.cutAll()
	// mochi's Close closes the listeners (ours waits for its connections) and stops hooks.
	// Rarely, under load with clients reconnecting, it never returns: its shutdown waits on
	// a lock inside mochi that a connection being attached also wants (seen about once in a
	// few hundred closes; TestCloseUnderLoad; not pinned down further). This broker is for
	// the demo and tests, so Close is bounded: after closeTimeout every socket is already
	// closed, and the stuck goroutine is left to mochi and logged.
	done := make(chan error, 1)
	go func() { done <- b.srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			b.closeErr = fmt.Errorf("broker: close: %w", err)
		}
	case <-time.After(closeTimeout):
		b.log.Error("broker: mochi shutdown did not finish; abandoning it", "after", closeTimeout)
	}
	b.log.Info("broker: stopped", "addr", b.ln.Address())
}

// listener is a mochi listener that owns its connections: mochi's own TCP listener leaves
// the per-connection goroutines running after Close, which would make Close return before
// the clients are really gone and race with a restart on the same port.
type listener struct {
	id      string
	addr    string
	tlsConf *tls.Config

	mu     sync.Mutex
	ln     net.Listener
	bound  string
	conns  map[net.Conn]chan struct{} // closed when mochi is done with the connection
	closed bool
	wg     sync.WaitGroup // the accept loop and every establish call
}

var _ listeners.Listener = (*listener)(nil)

func (l *listener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	if l.tlsConf != nil {
		ln = tls.NewListener(ln, l.tlsConf)
	}
	l.mu.Lock()
	l.ln, l.bound, l.conns = ln, ln.Addr().String(), make(map[net.Conn]chan struct{})
	l.mu.Unlock()
	return nil
}

func (l *listener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.wg.Add(1)
	l.mu.Unlock()
	defer l.wg.Done()
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return // closed; a real accept error on loopback is not recoverable either
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			conn.Close()
			return
		}
		done := make(chan struct{})
		l.conns[conn] = done
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			defer func() {
				l.mu.Lock()
				delete(l.conns, conn)
				l.mu.Unlock()
				conn.Close()
				close(done)
			}()
			_ = establish(l.id, conn) // mochi logs the reason at debug
		}()
	}
}

// finished returns a channel closed once mochi is done with conn (its establish call
// returned, every clean-up it does for the connection's client included); nil when the
// connection is not one of this listener's.
func (l *listener) finished(conn net.Conn) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[conn]
}

func (l *listener) ID() string       { return l.id }
func (l *listener) Protocol() string { return "tcp" }

func (l *listener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bound != "" {
		return l.bound
	}
	return l.addr
}

// cutAll closes the listening socket and every connection, without waiting.
func (l *listener) cutAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		l.ln.Close()
	}
	for c := range l.conns {
		c.Close()
	}
}

func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	ln := l.ln
	l.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	closeClients(l.id)
	// Connections still in the CONNECT handshake are not yet known to mochi as clients.
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// debugHandler forwards every record at debug level: mochi logs routine client churn at
// info/warn, which is noise for a demo broker.
type debugHandler struct{ h slog.Handler }

func (d debugHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	return d.h.Enabled(ctx, slog.LevelDebug)
}

func (d debugHandler) Handle(ctx context.Context, r slog.Record) error {
	r2 := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool { r2.AddAttrs(a); return true })
	return d.h.Handle(ctx, r2)
}

func (d debugHandler) WithAttrs(as []slog.Attr) slog.Handler { return debugHandler{d.h.WithAttrs(as)} }
func (d debugHandler) WithGroup(name string) slog.Handler    { return debugHandler{d.h.WithGroup(name)} }
