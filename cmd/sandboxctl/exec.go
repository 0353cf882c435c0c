package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
)

// exitTimedOut is exec's exit code when the command ran out of time, as
// timeout(1) does.
const exitTimedOut = 124

// streamLine is one line of POST /api/v1/execute/stream.
type streamLine struct {
	Type     string `json:"type"`
	Data     string `json:"data"`
	ExitCode int    `json:"exit_code"`
	TimedOut bool   `json:"timed_out"`
}

// cmdExec runs a command in a sandbox through /api/v1/execute/stream,
// copying its output as it comes, and exits with its exit code.
func cmdExec(e *env, args []string) error {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	// -timeout is the common request bound (a duration); the command's own
	// limit is -exec-timeout, in seconds as the API takes it.
	timeout := fs.Int("exec-timeout", 0, "the command's timeout in seconds (default: the server's, 30)")
	cwd := fs.String("cwd", "", "working directory (default /workspace)")
	pos, command, err := parseArgs(e, "exec", fs, args, 1)
	if err != nil {
		return err
	}
	if len(command) == 0 {
		return usageErr("exec: no command: sandboxctl exec <id> -- cmd [args...]")
	}
	body := map[string]any{"sandbox_id": pos[0], "command": command}
	if *timeout > 0 {
		body["timeout"] = *timeout
	}
	if *cwd != "" {
		body["cwd"] = *cwd
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	resp, err := e.client(false).request(ctx, http.MethodPost, "/api/v1/execute/stream", body, nil)
	if err != nil {
		return fail("exec in "+pos[0], err)
	}
	defer resp.Body.Close()
	code, err := copyExecStream(resp.Body, e.stdout, e.stderr)
	if err != nil {
		return fail("exec in "+pos[0], err)
	}
	if code != 0 {
		return &exitErr{code: code}
	}
	return nil
}

// copyExecStream writes stdout and stderr lines to their writers and
// returns the command's exit code from the result line.
func copyExecStream(r io.Reader, stdout, stderr io.Writer) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var l streamLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return 0, fmt.Errorf("bad stream line %q: %w", sc.Bytes(), err)
		}
		switch l.Type {
		case "stdout":
			io.WriteString(stdout, l.Data)
		case "stderr":
			io.WriteString(stderr, l.Data)
		case "result":
			if l.TimedOut {
				fmt.Fprintln(stderr, "sandboxctl: exec: the command timed out")
				return exitTimedOut, nil
			}
			if l.ExitCode < 0 || l.ExitCode > 255 {
				return exitError, nil
			}
			return l.ExitCode, nil
		case "error":
			return 0, fmt.Errorf("the stream broke: %s", l.Data)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("the stream ended without a result")
}
