package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// maxWatchLine bounds one line of a watch stream: two paths of at most
// PATH_MAX and a little JSON. A longer line is a broken or hostile agent.
const maxWatchLine = 64 << 10

// OpenFile streams a file's content like ReadFile and also returns its
// size as the agent announced it (-1 when it did not), so a proxy can pass
// the length on. The caller closes the reader.
func (c *Client) OpenFile(ctx context.Context, path string) (io.ReadCloser, int64, error) {
	resp, err := c.do(ctx, http.MethodGet, "/files", url.Values{"path": {path}}, nil, "")
	if err != nil {
		return nil, 0, fmt.Errorf("agent read file %s: %w", path, err)
	}
	return resp.Body, resp.ContentLength, nil
}

// Stat describes one entry without following a final symlink.
func (c *Client) Stat(ctx context.Context, path string) (*FileInfo, error) {
	var fi FileInfo
	if err := c.doJSON(ctx, http.MethodGet, "/files/stat", url.Values{"path": {path}}, nil, &fi); err != nil {
		return nil, fmt.Errorf("agent stat %s: %w", path, err)
	}
	return &fi, nil
}

// Walk lists the entries below path down to depth levels, at most limit of
// them (zero: the agent's defaults).
func (c *Client) Walk(ctx context.Context, path string, depth, limit int) (*ListResult, error) {
	q := url.Values{"path": {path}}
	if depth > 0 {
		q.Set("depth", strconv.Itoa(depth))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var res ListResult
	if err := c.doJSON(ctx, http.MethodGet, "/files/walk", q, nil, &res); err != nil {
		return nil, fmt.Errorf("agent list %s: %w", path, err)
	}
	return &res, nil
}

// Rename moves from to to within the sandbox's writable roots.
func (c *Client) Rename(ctx context.Context, from, to string) error {
	if err := c.doJSON(ctx, http.MethodPost, "/files/rename", nil, RenameRequest{From: from, To: to}, nil); err != nil {
		return fmt.Errorf("agent rename %s to %s: %w", from, to, err)
	}
	return nil
}

// Watch streams a directory's changes to onEvent, the "ready" event first,
// and the zero WatchEvent for each heartbeat of an idle stream (so a proxy
// can pass it on), until ctx ends, onEvent returns an error, or the agent ends the stream.
// A stream the agent ends on its own (the directory was removed) returns
// nil; ctx's error is returned when ctx ended it.
func (c *Client) Watch(ctx context.Context, path string, recursive bool, onEvent func(WatchEvent) error) error {
	q := url.Values{"path": {path}, "recursive": {strconv.FormatBool(recursive)}}
	resp, err := c.do(ctx, http.MethodGet, "/files/watch", q, nil, "")
	if err != nil {
		return fmt.Errorf("agent watch %s: %w", path, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), maxWatchLine)
	for sc.Scan() {
		line := sc.Bytes()
		var ev WatchEvent // an empty line is a heartbeat: the zero event
		if len(line) > 0 {
			if err := json.Unmarshal(line, &ev); err != nil {
				return fmt.Errorf("agent watch %s: bad event: %w", path, err)
			}
			if ev.Type == "" {
				return fmt.Errorf("agent watch %s: event without a type", path)
			}
		}
		if err := onEvent(ev); err != nil {
			return fmt.Errorf("agent watch %s: %w", path, err)
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("agent watch %s: %w (a line over %d bytes)", path, ErrReplyTooLarge, maxWatchLine)
		}
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("agent watch %s: %w", path, err)
		}
	}
	return ctx.Err()
}
