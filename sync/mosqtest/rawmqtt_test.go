package mosqtest

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// rawClient is a minimal MQTT 3.1.1 client that shows the broker's answers as they are
// (CONNACK codes, a dropped connection, the order of deliveries), which a full client library
// hides behind reconnects and retries. Deadlines only guard against a hung test.
type rawClient struct {
	t       testing.TB
	conn    net.Conn
	r       *bufio.Reader
	nextID  uint16
	pending []rawMsg // PUBLISHes read while waiting for an ack
}

type rawMsg struct {
	Topic   string
	Payload []byte
}

const rawDeadline = 10 * time.Second

var errRefused = errors.New("connection refused")

// rawConnect opens a TLS connection and sends CONNECT with clientID (clean session). It
// returns an error wrapping errRefused when the broker refuses (TLS alert, CONNACK code, or
// the connection closed).
func rawConnect(t testing.TB, addr string, conf *tls.Config, clientID string) (*rawClient, error) {
	t.Helper()
	d := &net.Dialer{Timeout: rawDeadline}
	conn, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		return nil, fmt.Errorf("%w: tls: %v", errRefused, err)
	}
	c := &rawClient{t: t, conn: conn, r: bufio.NewReader(conn), nextID: 1}
	var body []byte
	body = appendString(body, "MQTT")
	body = append(body, 4, 0x02, 0, 30) // level 4, clean session, keepalive 30 s
	body = appendString(body, clientID)
	if err := c.write(0x10, body); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: connect: %v", errRefused, err)
	}
	typ, b, err := c.read()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: connack: %v", errRefused, err)
	}
	if typ != 0x20 || len(b) != 2 || b[1] != 0 {
		conn.Close()
		return nil, fmt.Errorf("%w: connack %x %x", errRefused, typ, b)
	}
	t.Cleanup(func() { conn.Close() })
	return c, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func (c *rawClient) write(header byte, body []byte) error {
	pkt := []byte{header}
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		pkt = append(pkt, d)
		if n == 0 {
			break
		}
	}
	pkt = append(pkt, body...)
	c.conn.SetWriteDeadline(time.Now().Add(rawDeadline))
	_, err := c.conn.Write(pkt)
	return err
}

func (c *rawClient) read() (byte, []byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(rawDeadline))
	h, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	var n, mul int
	mul = 1
	for i := 0; ; i++ {
		d, err := c.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("bad remaining length")
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, nil, err
	}
	return h, body, nil
}

// readUntil reads packets, queueing PUBLISHes (and acking them), until one of type want.
func (c *rawClient) readUntil(want byte) ([]byte, error) {
	for {
		h, b, err := c.read()
		if err != nil {
			return nil, err
		}
		if h&0xf0 == 0x30 {
			if err := c.queue(h, b); err != nil {
				return nil, err
			}
			continue
		}
		if h&0xf0 == want {
			return b, nil
		}
	}
}

func (c *rawClient) queue(h byte, b []byte) error {
	if len(b) < 2 {
		return errors.New("short publish")
	}
	tl := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+tl {
		return errors.New("short publish topic")
	}
	m := rawMsg{Topic: string(b[2 : 2+tl])}
	rest := b[2+tl:]
	if qos := (h >> 1) & 3; qos > 0 {
		if len(rest) < 2 {
			return errors.New("short publish id")
		}
		if err := c.write(0x40, rest[:2]); err != nil {
			return err
		}
		rest = rest[2:]
	}
	m.Payload = rest
	c.pending = append(c.pending, m)
	return nil
}

// subscribe subscribes at QoS 1 and returns the granted code (0x80: refused).
func (c *rawClient) subscribe(filter string) byte {
	c.t.Helper()
	id := c.id()
	body := binary.BigEndian.AppendUint16(nil, id)
	body = appendString(body, filter)
	body = append(body, 1)
	if err := c.write(0x82, body); err != nil {
		c.t.Fatalf("subscribe %s: %v", filter, err)
	}
	b, err := c.readUntil(0x90)
	if err != nil || len(b) != 3 {
		c.t.Fatalf("suback %s: %x %v", filter, b, err)
	}
	return b[2]
}

func (c *rawClient) id() uint16 {
	id := c.nextID
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return id
}

// publish sends at QoS 1 and waits for the PUBACK, so that the broker has finished with the
// message (delivered or dropped it) when it returns. An error means the connection dropped.
func (c *rawClient) publish(topic string, payload []byte) error {
	body := appendString(nil, topic)
	body = binary.BigEndian.AppendUint16(body, c.id())
	body = append(body, payload...)
	if err := c.write(0x32, body); err != nil {
		return err
	}
	_, err := c.readUntil(0x40)
	return err
}

// publish0 sends at QoS 0 (no answer to wait for).
func (c *rawClient) publish0(topic string, payload []byte) error {
	return c.write(0x30, append(appendString(nil, topic), payload...))
}

// ping reports whether the connection is still open (PINGREQ answered).
func (c *rawClient) ping() error {
	if err := c.write(0xc0, nil); err != nil {
		return err
	}
	_, err := c.readUntil(0xd0)
	return err
}

// next returns the next message delivered.
func (c *rawClient) next() rawMsg {
	c.t.Helper()
	for len(c.pending) == 0 {
		h, b, err := c.read()
		if err != nil {
			c.t.Fatalf("waiting for a message: %v", err)
		}
		if h&0xf0 == 0x30 {
			if err := c.queue(h, b); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	m := c.pending[0]
	c.pending = c.pending[1:]
	return m
}
