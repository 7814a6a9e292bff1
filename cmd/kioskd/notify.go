package main

import "net"

type syscallUnixAddr struct{ name string }

// send writes one datagram to the systemd notification socket.
func (a *syscallUnixAddr) send(msg string) error {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: a.name, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_, err = c.Write([]byte(msg))
	return err
}
