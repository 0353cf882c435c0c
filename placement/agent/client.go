package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Client talks to one sandbox's agent. It keeps its connections alive and
// is safe for concurrent use.
type Client struct {
	base   string // scheme://host with no trailing slash
	secret string
	err    error // set: every request fails with it
	http   *http.Client
}

// NewClient returns a client for endpoint "unix:///path/agent.sock" or
// "http://host:port". secret is sent as a bearer token when not empty. An
// "https://" endpoint needs the agent's certificate pin: see
// NewPinnedClient; without one every request fails with ErrCertMismatch.
func NewClient(endpoint, secret string) *Client {
	return NewPinnedClient(endpoint, secret, "")
}

// NewPinnedClient returns a client for an agent's recorded placement: for
// "https://host:port" it speaks TLS 1.3 and accepts only the certificate
// whose SHA-256 (hex) is certSHA256. A pin given with a plain endpoint is
// refused too (every request fails): a placement that recorded a
// certificate must never be reached in the clear.
func NewPinnedClient(endpoint, secret, certSHA256 string) *Client {
	tr := &http.Transport{
		MaxIdleConns:          16,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // an exec answers when it ends; ctx bounds it
		DisableCompression:    true,
	}
	base := strings.TrimRight(endpoint, "/")
	var err error
	if sock, ok := strings.CutPrefix(endpoint, "unix://"); ok {
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", sock)
		}
		base = "http://sandbox-agent"
	} else {
		tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	switch {
	case strings.HasPrefix(endpoint, "https://"):
		tr.TLSClientConfig = pinnedTLSConfig(certSHA256)
		tr.TLSHandshakeTimeout = 10 * time.Second
	case certSHA256 != "":
		err = fmt.Errorf("%w: endpoint %s is not https", ErrCertMismatch, endpoint)
	}
	return &Client{base: base, secret: secret, err: err, http: &http.Client{Transport: tr}}
}

// Close drops the client's idle connections.
func (c *Client) Close() {
	c.http.CloseIdleConnections()
}

// Health asks whether the agent is up.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var h Health
	if err := c.doJSON(ctx, http.MethodGet, "/health", nil, nil, &h); err != nil {
		return nil, fmt.Errorf("agent health: %w", err)
	}
	return &h, nil
}

// Exec runs a process and returns how it ended. A non-zero exit is a result,
// not an error.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (*ExecResult, error) {
	var res ExecResult
	if err := c.doJSONBounded(ctx, http.MethodPost, "/exec", nil, req, &res, execReplyBound(req)); err != nil {
		return nil, fmt.Errorf("agent exec: %w", err)
	}
	return &res, nil
}

// ExecStream runs a process and calls onEvent for every stdout and stderr
// chunk as it arrives; it returns the final result. An error from onEvent
// stops reading, which closes the connection and kills the process.
func (c *Client) ExecStream(ctx context.Context, req ExecRequest, onEvent func(Event) error) (*ExecResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("agent exec stream: encode: %w", err)
	}
	resp, err := c.do(ctx, http.MethodPost, "/exec/stream", nil, bytes.NewReader(body), "application/json")
	if err != nil {
		return nil, fmt.Errorf("agent exec stream: %w", err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bounded(resp.Body, execReplyBound(req)))
	for {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("agent exec stream: read event: %w", err)
		}
		if ev.Type == EventResult {
			if ev.Result == nil {
				return nil, fmt.Errorf("agent exec stream: result event without a result")
			}
			return ev.Result, nil
		}
		if onEvent != nil {
			if err := onEvent(ev); err != nil {
				return nil, fmt.Errorf("agent exec stream: %w", err)
			}
		}
	}
}

// ReadFile streams a file's content; the caller closes it.
func (c *Client) ReadFile(ctx context.Context, path string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, "/files", url.Values{"path": {path}}, nil, "")
	if err != nil {
		return nil, fmt.Errorf("agent read file %s: %w", path, err)
	}
	return resp.Body, nil
}

// WriteFile writes r to path atomically (parents created) and returns the
// size written.
func (c *Client) WriteFile(ctx context.Context, path string, r io.Reader, mode os.FileMode) (int64, error) {
	q := url.Values{"path": {path}, "mode": {fmt.Sprintf("%04o", mode.Perm())}}
	var res WriteResult
	if err := c.doStreamJSON(ctx, http.MethodPut, "/files", q, r, "application/octet-stream", &res); err != nil {
		return 0, fmt.Errorf("agent write file %s: %w", path, err)
	}
	return res.Size, nil
}

// ListFiles lists a directory, or describes the single file path names.
func (c *Client) ListFiles(ctx context.Context, path string) ([]FileInfo, error) {
	var out []FileInfo
	if err := c.doJSON(ctx, http.MethodGet, "/files/list", url.Values{"path": {path}}, nil, &out); err != nil {
		return nil, fmt.Errorf("agent list %s: %w", path, err)
	}
	return out, nil
}

// Delete removes a file, or a directory with recursive.
func (c *Client) Delete(ctx context.Context, path string, recursive bool) error {
	q := url.Values{"path": {path}, "recursive": {strconv.FormatBool(recursive)}}
	if err := c.doJSON(ctx, http.MethodDelete, "/files", q, nil, nil); err != nil {
		return fmt.Errorf("agent delete %s: %w", path, err)
	}
	return nil
}

// Mkdir creates a directory and its parents.
func (c *Client) Mkdir(ctx context.Context, path string) error {
	if err := c.doJSON(ctx, http.MethodPost, "/files/mkdir", url.Values{"path": {path}}, nil, nil); err != nil {
		return fmt.Errorf("agent mkdir %s: %w", path, err)
	}
	return nil
}

// Download streams a tar of the directory at path (names relative to it).
func (c *Client) Download(ctx context.Context, path string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, "/files/archive", url.Values{"path": {path}}, nil, "")
	if err != nil {
		return nil, fmt.Errorf("agent download %s: %w", path, err)
	}
	return resp.Body, nil
}

// Upload extracts a tar stream under path and returns the number of files.
func (c *Client) Upload(ctx context.Context, path string, tarStream io.Reader) (int, error) {
	var res UploadResult
	if err := c.doStreamJSON(ctx, http.MethodPut, "/files/archive", url.Values{"path": {path}}, tarStream, "application/x-tar", &res); err != nil {
		return 0, fmt.Errorf("agent upload %s: %w", path, err)
	}
	return res.Files, nil
}

func (c *Client) doJSON(ctx context.Context, method, path string, q url.Values, in, out any) error {
	return c.doJSONBounded(ctx, method, path, q, in, out, MaxJSONReply)
}

func (c *Client) doJSONBounded(ctx context.Context, method, path string, q url.Values, in, out any, limit int64) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	return c.doStreamJSONBounded(ctx, method, path, q, body, ctype, out, limit)
}

func (c *Client) doStreamJSON(ctx context.Context, method, path string, q url.Values, body io.Reader, ctype string, out any) error {
	return c.doStreamJSONBounded(ctx, method, path, q, body, ctype, out, MaxJSONReply)
}

func (c *Client) doStreamJSONBounded(ctx context.Context, method, path string, q url.Values, body io.Reader, ctype string, out any, limit int64) error {
	resp, err := c.do(ctx, method, path, q, body, ctype)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, limit)) // so the connection is reused
		return nil
	}
	if err := json.NewDecoder(bounded(resp.Body, limit)).Decode(out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// do sends a request and turns a non-2xx answer into *Error.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, ctype string) (*http.Response, error) {
	if c.err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, c.err)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.secret)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb ErrorBody
	if json.Unmarshal(raw, &eb) != nil || eb.Code == "" {
		eb = ErrorBody{Error: strings.TrimSpace(string(raw)), Code: CodeInternal}
	}
	return nil, &Error{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error}
}
