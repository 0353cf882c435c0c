package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// maxEventLine bounds one line of a process output stream the client reads:
// an event carries at most outputBatch bytes, escaped at worst, plus room.
const maxEventLine = jsonEscapeFactor*outputBatch + 64<<10

// StartProcess starts a background process and returns at once.
func (c *Client) StartProcess(ctx context.Context, req ProcessStartRequest) (*ProcessInfo, error) {
	var out ProcessInfo
	if err := c.doJSON(ctx, http.MethodPost, "/procs", nil, req, &out); err != nil {
		return nil, fmt.Errorf("agent start process: %w", err)
	}
	return &out, nil
}

// ListProcesses lists the background processes the agent holds, oldest first.
func (c *Client) ListProcesses(ctx context.Context) ([]ProcessInfo, error) {
	var out []ProcessInfo
	if err := c.doJSON(ctx, http.MethodGet, "/procs", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("agent list processes: %w", err)
	}
	return out, nil
}

// Process describes one background process.
func (c *Client) Process(ctx context.Context, pid int) (*ProcessInfo, error) {
	var out ProcessInfo
	if err := c.doJSON(ctx, http.MethodGet, procPath(pid, ""), nil, nil, &out); err != nil {
		return nil, fmt.Errorf("agent process %d: %w", pid, err)
	}
	return &out, nil
}

// WaitProcess waits up to timeout for a process to end and returns its
// state: Running is still true when the wait ran out.
func (c *Client) WaitProcess(ctx context.Context, pid int, timeout time.Duration) (*ProcessInfo, error) {
	var out ProcessInfo
	q := url.Values{"timeout": {timeout.String()}}
	if err := c.doJSON(ctx, http.MethodGet, procPath(pid, "/wait"), q, nil, &out); err != nil {
		return nil, fmt.Errorf("agent wait process %d: %w", pid, err)
	}
	return &out, nil
}

// SendStdin writes to a process's stdin or terminal and, with Close, ends it.
func (c *Client) SendStdin(ctx context.Context, pid int, req StdinRequest) error {
	if err := c.doJSON(ctx, http.MethodPost, procPath(pid, "/stdin"), nil, req, nil); err != nil {
		return fmt.Errorf("agent stdin of process %d: %w", pid, err)
	}
	return nil
}

// SignalProcess sends a signal to a process's group.
func (c *Client) SignalProcess(ctx context.Context, pid int, signal string) error {
	if err := c.doJSON(ctx, http.MethodPost, procPath(pid, "/signal"), nil, SignalRequest{Signal: signal}, nil); err != nil {
		return fmt.Errorf("agent signal process %d: %w", pid, err)
	}
	return nil
}

// ResizeProcess changes the terminal size of a pty process.
func (c *Client) ResizeProcess(ctx context.Context, pid int, size PTYSize) error {
	if err := c.doJSON(ctx, http.MethodPost, procPath(pid, "/resize"), nil, size, nil); err != nil {
		return fmt.Errorf("agent resize process %d: %w", pid, err)
	}
	return nil
}

// ProcessOutput streams a process's output from offset, calling onEvent for
// every event; with follow it returns after the exit event (or when ctx
// ends), without it once what is held has been sent. An error from onEvent
// stops reading and is returned.
func (c *Client) ProcessOutput(ctx context.Context, pid int, offset int64, follow bool, onEvent func(ProcessEvent) error) error {
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}, "follow": {strconv.FormatBool(follow)}}
	resp, err := c.do(ctx, http.MethodGet, procPath(pid, "/output"), q, nil, "")
	if err != nil {
		return fmt.Errorf("agent output of process %d: %w", pid, err)
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := readLine(br, maxEventLine)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil // a stream without follow ends here
			}
			return fmt.Errorf("agent output of process %d: %w", pid, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev ProcessEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("agent output of process %d: decode event: %w", pid, err)
		}
		if err := onEvent(ev); err != nil {
			return err
		}
		if ev.Type == EventExit {
			return nil
		}
	}
}

// readLine reads one line of at most limit bytes.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		part, err := br.ReadSlice('\n')
		line = append(line, part...)
		if len(line) > limit {
			return nil, fmt.Errorf("%w (an event line over %d bytes)", ErrReplyTooLarge, limit)
		}
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

func procPath(pid int, suffix string) string {
	return "/procs/" + strconv.Itoa(pid) + suffix
}
