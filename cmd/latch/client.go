package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"syscall"
)

// client speaks to `latch serve` over its unix socket.
type client struct {
	hc       *http.Client
	socket   string
	operator string // sent for the service to use where the kernel cannot name the caller
}

func newClient(e *env, socket string) *client {
	var d net.Dialer
	return &client{
		hc: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", socket)
			},
			DisableCompression: true,
		}},
		socket:   socket,
		operator: e.getenv("USER"),
	}
}

// request sends a request to the API and returns its answer when the
// status is 2xx; otherwise the service's error message is the error.
func (c *client) request(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	ctype := "application/json"
	if rb, ok := in.(rawBody); ok {
		body, ctype = bytes.NewReader(rb.data), rb.contentType
	} else if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://latch"+path, body)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if c.operator != "" {
		req.Header.Set(operatorHeader, c.operator)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no latch service on %s (is latch serve running? --socket or LATCH_SOCKET names another)", c.socket)
		}
		return nil, fmt.Errorf("latch service on %s: %w", c.socket, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var eb errorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			return nil, fmt.Errorf("latch service: %s", resp.Status)
		}
		return nil, errors.New(eb.Error)
	}
	return resp, nil
}

// call sends in (nil: no body) and returns the JSON answer.
func (c *client) call(ctx context.Context, method, path string, in any) (json.RawMessage, error) {
	resp, err := c.request(ctx, method, path, in)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("latch service: read answer: %w", err)
	}
	return b, nil
}
