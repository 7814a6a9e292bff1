package mqttc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Config configures a Client. Brokers and ClientID are required.
type Config struct {
	// Brokers are broker URLs: tcp://host:port, or ssl://, tls://, mqtts:// with TLS.
	// Paho tries them in order on every (re)connect.
	Brokers []string
	// TLS is used for TLS broker URLs (root CAs, and Certificates for a client certificate).
	TLS *tls.Config
	// ClientID is the MQTT client id (for a kiosk: its kiosk id).
	ClientID string
	// Username and Password authenticate to the broker; Password is never logged.
	Username string
	Password string
	// KeepAlive is the MQTT keepalive (default 30 s).
	KeepAlive time.Duration
	// ConnectTimeout bounds each connection attempt (default 10 s).
	ConnectTimeout time.Duration
	// MaxReconnectInterval caps the reconnect backoff (default 30 s).
	MaxReconnectInterval time.Duration
	// WriteTimeout bounds a blocked network write (default 10 s).
	WriteTimeout time.Duration
	// Will, if set, is the Last Will the broker publishes when the connection dies without a
	// DISCONNECT.
	Will *Will
	// OnConnect runs after every successful (re)connect, on a goroutine the Client owns. With
	// a clean session the broker forgets subscriptions on disconnect, so this is where they
	// are made. It may call Subscribe and Publish.
	OnConnect func(c *Client)
	// OnConnectionLost runs when an established connection drops (not on Close).
	OnConnectionLost func(c *Client, err error)
	// Workers is the number of goroutines that run message handlers (default 1, which keeps
	// arrival order).
	Workers int
	// QueueDepth bounds the messages waiting for a worker (default 1024).
	QueueDepth int
	// Logger receives connection events; nil discards.
	Logger *slog.Logger

	// dial replaces the network dial; tests use it to cut a connection abruptly.
	dial func(uri *url.URL, tlsConf *tls.Config, timeout time.Duration) (net.Conn, error)
}

// Will is a Last Will message.
type Will struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

// Handler receives one message. It runs on a Client worker goroutine, never on paho's router;
// see the package documentation.
type Handler func(topic string, payload []byte)

// Errors.
var (
	// ErrConfig reports an unusable Config.
	ErrConfig = errors.New("mqttc: bad config")
	// ErrNotConnected is returned by Publish and Subscribe while there is no connection:
	// callers keep their own retry state, the client does not queue.
	ErrNotConnected = errors.New("mqttc: not connected")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("mqttc: client closed")
)

// Client is a connected (or reconnecting) MQTT client.
type Client struct {
	cfg   Config
	log   *slog.Logger
	paho  paho.Client
	queue chan message
	done  chan struct{} // closed by Close: stops workers and aborts every wait

	mu     sync.Mutex // guards closed and wg.Add against Close's wg.Wait
	closed bool
	wg     sync.WaitGroup // workers and OnConnect runs
	// connecting counts the connect loops: Close waits for them before it disconnects, so a
	// connection an attempt completes during Close is closed cleanly (no Last Will).
	connecting sync.WaitGroup

	dropped     atomic.Uint64
	connections atomic.Uint64
	lostInRow   atomic.Int64
}

type message struct {
	topic   string
	payload []byte
	handler Handler
}

// Dial validates cfg and starts connecting in the background; it does not wait for the
// connection (see WaitConnected). The Client retries until Close.
func Dial(cfg Config) (*Client, error) {
	if len(cfg.Brokers) == 0 {
		return nil, fmt.Errorf("%w: no broker URL", ErrConfig)
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("%w: no client id", ErrConfig)
	}
	if cfg.Will != nil && (cfg.Will.Topic == "" || cfg.Will.QoS > 2) {
		return nil, fmt.Errorf("%w: will needs a topic and QoS 0-2", ErrConfig)
	}
	for _, b := range cfg.Brokers {
		u, err := url.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("%w: broker URL %q: %v", ErrConfig, b, err)
		}
		switch u.Scheme {
		case "tcp", "mqtt":
		case "ssl", "tls", "mqtts", "tcps":
		default:
			return nil, fmt.Errorf("%w: broker URL %q: scheme must be tcp, ssl, tls or mqtts", ErrConfig, b)
		}
		if u.Host == "" {
			return nil, fmt.Errorf("%w: broker URL %q: no host", ErrConfig, b)
		}
	}
	setDefault(&cfg.KeepAlive, 30*time.Second)
	setDefault(&cfg.ConnectTimeout, 10*time.Second)
	setDefault(&cfg.MaxReconnectInterval, 30*time.Second)
	setDefault(&cfg.WriteTimeout, 10*time.Second)
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.QueueDepth <= 0 {
		cfg.QueueDepth = 1024
	}
	routePahoLogs(cfg.Logger, false)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		cfg:   cfg,
		log:   logger.With("component", "mqttc", "client_id", cfg.ClientID),
		queue: make(chan message, cfg.QueueDepth),
		done:  make(chan struct{}),
	}

	opts := paho.NewClientOptions()
	for _, b := range cfg.Brokers {
		opts.AddBroker(b)
	}
	opts.SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetStore(paho.NewMemoryStore()).
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(cfg.ConnectTimeout).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(cfg.WriteTimeout).
		// Reconnection is ours (onLost), not paho's: paho's automatic reconnect resumes the
		// publishes in its store on the new connection while that connection's writer is
		// already sending them, a data race (eclipse-paho/paho.mqtt.golang#703) that also
		// sends them twice. A fresh Connect with a clean session starts from an empty store;
		// the publishes it dropped fail their tokens and their senders retry (the kiosk's
		// outbox never relies on the client's store).
		SetAutoReconnect(false).
		// Connection retries are ours too (connectLoop): paho's retry is a fixed interval,
		// so a fleet that lost its broker at once came back in lockstep.
		SetConnectRetry(false).
		SetMaxReconnectInterval(cfg.MaxReconnectInterval).
		SetResumeSubs(false).
		SetOrderMatters(true). // safe: our callback never blocks (package documentation)
		SetOnConnectHandler(func(paho.Client) { c.onConnect() }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.onLost(err) })
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	if cfg.Will != nil {
		opts.SetBinaryWill(cfg.Will.Topic, cfg.Will.Payload, cfg.Will.QoS, cfg.Will.Retain)
	}
	if cfg.dial != nil {
		dial := cfg.dial
		opts.SetCustomOpenConnectionFn(func(u *url.URL, o paho.ClientOptions) (net.Conn, error) {
			return dial(u, o.TLSConfig, o.ConnectTimeout)
		})
	}
	c.paho = paho.NewClient(opts)

	c.wg.Add(cfg.Workers)
	for range cfg.Workers {
		go c.work()
	}
	// The first attempt is at once; OnConnect reports success and Close ends the attempts.
	c.goConnect(false)
	c.log.Debug("mqttc: connecting", "brokers", cfg.Brokers)
	return c, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Connected reports whether the connection is up right now.
func (c *Client) Connected() bool { return c.paho.IsConnectionOpen() }

// Connections returns how many times the client has connected (1 after the first connect).
func (c *Client) Connections() uint64 { return c.connections.Load() }

// Dropped returns how many received messages were dropped because the handler queue was full.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// WaitConnected waits until the connection is up, ctx ends or the client is closed.
func (c *Client) WaitConnected(ctx context.Context) error {
	if c.Connected() {
		return nil
	}
	// Paho has no "connected" channel; poll at a short fixed interval, bounded by ctx.
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("mqttc: wait for connection: %w", ctx.Err())
		case <-c.done:
			return ErrClosed
		case <-t.C:
			if c.Connected() {
				return nil
			}
		}
	}
}

// Publish sends payload to topic and, for QoS 1 and 2, waits for the broker's
// acknowledgement, bounded by ctx. It fails at once with ErrNotConnected when offline.
func (c *Client) Publish(ctx context.Context, topic string, qos byte, retain bool, payload []byte) error {
	if qos > 2 {
		return fmt.Errorf("mqttc: publish %s: qos %d", topic, qos)
	}
	if err := c.ready(); err != nil {
		return fmt.Errorf("mqttc: publish %s: %w", topic, err)
	}
	tok := c.paho.Publish(topic, qos, retain, payload)
	if err := c.wait(ctx, tok); err != nil {
		return fmt.Errorf("mqttc: publish %s: %w", topic, err)
	}
	return nil
}

// Subscribe subscribes to filter and waits for the SUBACK, bounded by ctx. Handler runs on a
// worker goroutine for every matching message. A refused subscription (SUBACK failure code,
// e.g. by a broker ACL) is an error.
//
// Paho routes each received message to the handler of every subscription of this client
// whose filter matches it, and it matches a shared subscription ($share/<group>/<filter>) by
// <filter>: avoid overlapping filters on one client, or a message reaches two handlers.
func (c *Client) Subscribe(ctx context.Context, filter string, qos byte, handler Handler) error {
	if handler == nil || filter == "" || qos > 2 {
		return fmt.Errorf("mqttc: subscribe %q: %w: needs a filter, a handler and QoS 0-2", filter, ErrConfig)
	}
	if err := c.ready(); err != nil {
		return fmt.Errorf("mqttc: subscribe %s: %w", filter, err)
	}
	tok := c.paho.Subscribe(filter, qos, func(_ paho.Client, m paho.Message) { c.enqueue(m, handler) })
	if err := c.wait(ctx, tok); err != nil {
		return fmt.Errorf("mqttc: subscribe %s: %w", filter, err)
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		for f, code := range st.Result() {
			if code == 0x80 {
				return fmt.Errorf("mqttc: subscribe %s: refused by the broker", f)
			}
		}
	}
	return nil
}

// Unsubscribe removes subscriptions, bounded by ctx.
func (c *Client) Unsubscribe(ctx context.Context, filters ...string) error {
	if err := c.ready(); err != nil {
		return fmt.Errorf("mqttc: unsubscribe: %w", err)
	}
	if err := c.wait(ctx, c.paho.Unsubscribe(filters...)); err != nil {
		return fmt.Errorf("mqttc: unsubscribe: %w", err)
	}
	return nil
}

// Close disconnects (sending DISCONNECT, so no Last Will, when connected), giving in-flight
// work up to quiesce to finish, stops the workers and waits for them and any running
// OnConnect. Messages still queued are dropped. It is safe to call more than once.
func (c *Client) Close(quiesce time.Duration) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	c.connecting.Wait()
	c.paho.Disconnect(uint(quiesce / time.Millisecond))
	c.wg.Wait()
	c.log.Debug("mqttc: closed")
}

func (c *Client) ready() error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	if !c.paho.IsConnectionOpen() {
		return ErrNotConnected
	}
	return nil
}

func (c *Client) wait(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrClosed
	}
}

// enqueue runs on paho's router goroutine and must never block it.
func (c *Client) enqueue(m paho.Message, h Handler) {
	msg := message{topic: m.Topic(), payload: m.Payload(), handler: h}
	select {
	case c.queue <- msg:
	case <-c.done:
	default:
		n := c.dropped.Add(1)
		c.log.Warn("mqttc: handler queue full, message dropped", "topic", msg.topic, "dropped_total", n)
	}
}

func (c *Client) work() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case m := <-c.queue:
			c.run(m)
		}
	}
}

// run isolates the worker from a panicking handler: one bad message must not take the
// client (and with it every other subscription) down.
func (c *Client) run(m message) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("mqttc: handler panicked", "topic", m.topic, "panic", fmt.Sprint(r))
		}
	}()
	m.handler(m.topic, m.payload)
}

// goOwned starts f on a goroutine that Close waits for, unless the client is closed.
func (c *Client) goOwned(f func()) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		f()
	}()
}

func (c *Client) onConnect() {
	c.lostInRow.Store(0)
	n := c.connections.Add(1)
	c.log.Info("mqttc: connected", "connection", n)
	if c.cfg.OnConnect != nil {
		c.goOwned(func() { c.cfg.OnConnect(c) })
	}
}

func (c *Client) onLost(err error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return // our own Close; nothing was lost
	}
	c.log.Warn("mqttc: connection lost", "err", err)
	if c.cfg.OnConnectionLost != nil {
		c.goOwned(func() { c.cfg.OnConnectionLost(c, err) })
	}
	c.goConnect(true)
}

// goConnect starts a connect loop unless the client is closed.
func (c *Client) goConnect(lost bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.connecting.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.connecting.Done()
		c.connectLoop(lost)
	}()
}

// reconnectBase is the first reconnect window: see backoff.
const reconnectBase = 500 * time.Millisecond

// backoff returns the wait before connection attempt n (0-based) after a loss: "full
// jitter", uniform in [0, min(MaxReconnectInterval, reconnectBase·2^n)). Full jitter from the
// first attempt spreads a fleet that lost its broker at the same instant over the whole
// window, so the broker does not take a thousand TLS handshakes at once, and the window grows
// while the broker stays away.
func (c *Client) backoff(n int) time.Duration {
	w := reconnectBase << min(n, 16)
	w = min(w, c.cfg.MaxReconnectInterval)
	return time.Duration(rand.Int64N(int64(w) + 1))
}

// connectLoop connects until it succeeds or Close; after a loss (lost) even the first
// attempt waits its backoff, the first connection of Dial tries at once.
func (c *Client) connectLoop(lost bool) {
	for n := 0; ; n++ {
		if lost || n > 0 {
			t := time.NewTimer(c.backoff(n))
			select {
			case <-c.done:
				t.Stop()
				return
			case <-t.C:
			}
		}
		select {
		case <-c.done:
			return
		default:
		}
		tok := c.paho.Connect()
		select {
		case <-tok.Done():
		case <-c.done:
			// Close raced an attempt that is still running: wait for its outcome (bounded
			// by ConnectTimeout in paho); Close disconnects after this loop has returned,
			// so a connection made meanwhile is closed cleanly, not left behind.
			select {
			case <-tok.Done():
			case <-time.After(c.cfg.ConnectTimeout + time.Second):
			}
			return
		}
		err := tok.Error()
		if err == nil {
			return
		}
		c.log.Debug("mqttc: connect failed", "attempt", n+1, "err", err)
	}
}

// Paho's loggers are package globals. They are set at package initialisation, before any
// goroutine of any paho client can exist (raw paho clients in tests included), to adapters
// that read this pointer; later loggers only swap the pointer.
var pahoLog atomic.Pointer[slog.Logger]

func init() {
	paho.ERROR = pahoLogger{"error"}
	paho.CRITICAL = pahoLogger{"critical"}
	paho.WARN = pahoLogger{"warn"}
	paho.DEBUG = pahoLogger{"debug"}
}

// SetPahoLogger routes paho's internal log lines (all at debug level) to l for the whole
// process. Without it, the first Config.Logger given to Dial is used.
func SetPahoLogger(l *slog.Logger) { routePahoLogs(l, true) }

func routePahoLogs(l *slog.Logger, override bool) {
	if l == nil {
		return
	}
	l = l.With("component", "paho")
	if override {
		pahoLog.Store(l)
	} else {
		pahoLog.CompareAndSwap(nil, l)
	}
}

type pahoLogger struct{ level string }

func (p pahoLogger) Println(v ...any) {
	if l := pahoLog.Load(); l != nil && l.Enabled(context.Background(), slog.LevelDebug) {
		l.Debug(strings.TrimSuffix(fmt.Sprintln(v...), "\n"), "paho_level", p.level)
	}
}

func (p pahoLogger) Printf(format string, v ...any) {
	if l := pahoLog.Load(); l != nil && l.Enabled(context.Background(), slog.LevelDebug) {
		l.Debug(fmt.Sprintf(format, v...), "paho_level", p.level)
	}
}
