package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
)

// ErrNotRunning is the error of a client whose kioskd does not answer on its socket.
var ErrNotRunning = errors.New("kioskd is not running")

// Client talks to kioskd's control socket.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client of the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}, DisableKeepAlives: true}
	return &Client{Socket: path, hc: &http.Client{Transport: tr}}
}

// Running reports whether a kioskd listens on the socket, whatever it would let us do: a
// socket this user may not open counts as running, so that the caller reports the refusal
// instead of falling back to the journal file kioskd holds.
func (c *Client) Running() bool {
	conn, err := net.Dial("unix", c.Socket)
	if err != nil {
		return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
	}
	conn.Close()
	return true
}

// notRunning turns a dial error into a sentence a technician understands.
func (c *Client) notRunning(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("%w (no socket at %s)", ErrNotRunning, c.Socket)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (nothing listens on %s)", ErrNotRunning, c.Socket)
	case errors.Is(err, syscall.EACCES), errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w: cannot open %s: %v (use a user in kioskd's group, or sudo)", ErrRefused, c.Socket, err)
	}
	return err
}

// do sends a request and returns the response of a 2xx status; any other status is the
// server's error.
func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://kioskd"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, c.notRunning(op.Err)
		}
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e errorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(b))
		}
		err := errors.New("kioskd: " + e.Error)
		if resp.StatusCode == http.StatusForbidden {
			err = fmt.Errorf("kioskd: %w", errors.New(e.Error))
		}
		return nil, &ServerError{Code: resp.StatusCode, Err: err}
	}
	return resp, nil
}

// ServerError is an error reply of kioskd.
type ServerError struct {
	Code int
	Err  error
}

func (e *ServerError) Error() string { return e.Err.Error() }
func (e *ServerError) Unwrap() error { return e.Err }

// Refused reports whether kioskd refused the peer.
func (e *ServerError) Refused() bool { return e.Code == http.StatusForbidden }

// Get decodes the JSON reply of GET path into v.
func (c *Client) Get(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// Post sends body to path and decodes the JSON reply into v.
func (c *Client) Post(ctx context.Context, path string, body, v any) error {
	resp, err := c.do(ctx, http.MethodPost, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// Export copies the live journal's export (JSON lines) to w.
func (c *Client) Export(ctx context.Context, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, "/v1/journal/export", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// Maintenance enters or leaves maintenance; each Progress line is passed to fn as it
// arrives. It returns the last one.
func (c *Client) Maintenance(ctx context.Context, on bool, fn func(Progress)) (Progress, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/maintenance", MaintenanceRequest{On: on})
	if err != nil {
		return Progress{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var last Progress
	for {
		var p Progress
		if err := dec.Decode(&p); err != nil {
			if errors.Is(err, io.EOF) {
				return last, errors.New("kioskd ended the maintenance request without a result")
			}
			return last, err
		}
		if fn != nil {
			fn(p)
		}
		last = p
		if p.Done {
			if p.Error != "" {
				return p, errors.New("kioskd: " + p.Error)
			}
			return p, nil
		}
	}
}
