package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// CreateContext starts a stateful code context in the sandbox.
func (c *Client) CreateContext(ctx context.Context, req ContextRequest) (*ContextInfo, error) {
	var info ContextInfo
	if err := c.doJSON(ctx, http.MethodPost, "/contexts", nil, req, &info); err != nil {
		return nil, fmt.Errorf("agent create context: %w", err)
	}
	return &info, nil
}

// ListContexts lists the sandbox's code contexts, oldest first.
func (c *Client) ListContexts(ctx context.Context) ([]ContextInfo, error) {
	var out []ContextInfo
	if err := c.doJSON(ctx, http.MethodGet, "/contexts", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("agent list contexts: %w", err)
	}
	return out, nil
}

// RestartContext replaces a context's interpreter with a fresh one.
func (c *Client) RestartContext(ctx context.Context, id string) (*ContextInfo, error) {
	var info ContextInfo
	if err := c.doJSON(ctx, http.MethodPost, "/contexts/"+url.PathEscape(id)+"/restart", nil, nil, &info); err != nil {
		return nil, fmt.Errorf("agent restart context %s: %w", id, err)
	}
	return &info, nil
}

// DeleteContext kills a context's interpreter and forgets the context.
func (c *Client) DeleteContext(ctx context.Context, id string) error {
	if err := c.doJSON(ctx, http.MethodDelete, "/contexts/"+url.PathEscape(id), nil, nil, nil); err != nil {
		return fmt.Errorf("agent delete context %s: %w", id, err)
	}
	return nil
}

// runCodeReplyBound is how much a cell's answer may take: both streams and
// every representation of its value at the cap, escaped.
func runCodeReplyBound(req RunCodeRequest) int64 {
	out := req.MaxOutputBytes
	if out <= 0 {
		out = defaultOutputBound
	}
	return 10*jsonEscapeFactor*out + 1<<20
}

// RunCode runs one cell in a context. An exception in the cell is a result
// (RunCodeResult.Error), not an error.
func (c *Client) RunCode(ctx context.Context, id string, req RunCodeRequest) (*RunCodeResult, error) {
	var res RunCodeResult
	if err := c.doJSONBounded(ctx, http.MethodPost, "/contexts/"+url.PathEscape(id)+"/run", nil, req, &res, runCodeReplyBound(req)); err != nil {
		return nil, fmt.Errorf("agent run code in %s: %w", id, err)
	}
	return &res, nil
}

// RunCodeStream runs one cell and calls onEvent for every stdout and stderr
// chunk as it is printed; it returns the final result. An error from
// onEvent stops reading, which closes the connection and interrupts the cell.
func (c *Client) RunCodeStream(ctx context.Context, id string, req RunCodeRequest, onEvent func(CodeEvent) error) (*RunCodeResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("agent run code stream: encode: %w", err)
	}
	resp, err := c.do(ctx, http.MethodPost, "/contexts/"+url.PathEscape(id)+"/run/stream", nil, bytes.NewReader(body), "application/json")
	if err != nil {
		return nil, fmt.Errorf("agent run code stream in %s: %w", id, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bounded(resp.Body, runCodeReplyBound(req)))
	for {
		var ev CodeEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("agent run code stream: read event: %w", err)
		}
		switch ev.Type {
		case EventResult:
			if ev.Result == nil {
				return nil, fmt.Errorf("agent run code stream: result event without a result")
			}
			return ev.Result, nil
		case "error":
			return nil, fmt.Errorf("agent run code stream: %s", ev.Data)
		}
		if onEvent != nil {
			if err := onEvent(ev); err != nil {
				return nil, fmt.Errorf("agent run code stream: %w", err)
			}
		}
	}
}
