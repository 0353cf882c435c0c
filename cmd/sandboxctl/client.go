package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// client calls the REST API with the caller's token.
type client struct {
	base  string
	token string
	hc    *http.Client
}

// dialTimeout bounds connecting to the server, for every request.
const dialTimeout = 10 * time.Second

// client builds the client for e's address. bounded requests end after
// -timeout; unbounded ones (exec and event streams, which last as long as
// the command or the operator wants) are bounded only in connecting.
func (e *env) client(bounded bool) *client {
	base := strings.TrimRight(e.addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	hc := &http.Client{Transport: tr}
	if bounded {
		hc.Timeout = e.timeout
	}
	return &client{base: base, token: e.token, hc: hc}
}

// apiError is an error answer of the server: {"error","code"} and a status.
type apiError struct {
	Status int
	Code   string `json:"code"`
	Msg    string `json:"error"`
}

func (e *apiError) Error() string {
	msg := e.Msg
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Code != "" {
		return fmt.Sprintf("%s (%d %s)", msg, e.Status, e.Code)
	}
	return fmt.Sprintf("%s (%d)", msg, e.Status)
}

// exitCode maps a server answer to the documented exit codes.
func (e *apiError) exitCode() int {
	switch e.Status {
	case http.StatusNotFound:
		return exitNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return exitUnauthorized
	}
	return exitError
}

// fail turns an error from the client into an exit error naming what was
// being done.
func fail(what string, err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		return &exitErr{code: ae.exitCode(), msg: what + ": " + ae.Error()}
	}
	var ee *exitErr
	if errors.As(err, &ee) {
		return err
	}
	return &exitErr{code: exitError, msg: what + ": " + err.Error()}
}

// request sends method path with body (JSON-encoded unless an io.Reader)
// and returns the response when its status is 2xx; otherwise the decoded
// *apiError. The caller closes the body.
func (c *client) request(ctx context.Context, method, path string, body any, header http.Header) (*http.Response, error) {
	var r io.Reader
	contentType := ""
	switch b := body.(type) {
	case nil:
	case io.Reader:
		r, contentType = b, "application/json"
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		r, contentType = bytes.NewReader(raw), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	ae := &apiError{Status: resp.StatusCode}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, ae) != nil || ae.Msg == "" {
		ae.Msg = strings.TrimSpace(string(raw))
	}
	if ae.Status == http.StatusUnauthorized && c.token == "" {
		ae.Msg += ": set SANDBOX_TOKEN or pass -token (sandboxctl token --user U prints one in development mode)"
	}
	return nil, ae
}

// do sends a JSON request and decodes the JSON answer into out (if not
// nil). It returns the answer's X-Cloud-Sandbox-Index.
func (c *client) do(ctx context.Context, method, path string, body, out any) (string, error) {
	resp, err := c.request(ctx, method, path, body, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return "", fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return resp.Header.Get("X-Cloud-Sandbox-Index"), nil
}
