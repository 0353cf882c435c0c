package agent

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// A bash context is one interactive bash (no rc files, no line editing,
// no history) that reads cells from its stdin, so variables, functions,
// exports, aliases and the working directory carry from cell to cell.
// Interactive, because that is the mode in which Ctrl-C (SIGINT to the
// group) abandons the running command line, loops included, and returns
// to the prompt with the shell's state intact, which is what a timeout
// must do. Each cell is written to a file under the temp dir and sourced
// with stdin from /dev/null, so a cell can never read the next one; the
// prompt hook reports the cell's exit status on fd 3 after writing the end
// mark to fd 1 and 2, as the python runner does.

// bashExitStatusError names a cell that ended with a non-zero status.
const bashExitStatusError = "ExitStatus"

// startBashRunner starts a bash context.
func (s *Server) startBashRunner(bash, cwd string, env []string) (*runnerProc, error) {
	if strings.ContainsAny(s.cfg.TempDir, "'\n") {
		return nil, fmt.Errorf("bash context: temp dir %q cannot be quoted", s.cfg.TempDir)
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("bash context mark: %w", err)
	}
	mark := hex.EncodeToString(raw[:])
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("bash context stdin: %w", err)
	}
	statR, statW, err := os.Pipe()
	if err != nil {
		closeAll(cmdR, cmdW)
		return nil, fmt.Errorf("bash context status pipe: %w", err)
	}
	rp, outR, errR, err := s.spawnContext(bash, []string{bash, "--noprofile", "--norc", "--noediting", "-i"}, cwd, env, cmdR, statW, nil)
	closeAll(cmdR, statW)
	if err != nil {
		closeAll(cmdW, statR)
		return nil, err
	}
	rp.conn, rp.in, rp.group = statR, cmdW, true
	rp.out = newOutputPipe(outR, EventStdout, []byte(mark), rp.currentSink)
	rp.err = newOutputPipe(errR, EventStderr, []byte(mark), rp.currentSink)
	rp.sendCell = func(code string, _ int64) (func(), error) {
		return s.sendBashCell(rp, int(rp.sent.Add(1)), code)
	}
	ready := make(chan runnerMsg, 1)
	go rp.readBash(ready)
	// A process the cell left behind may hold fd 3 open: bash's end, not
	// the pipe's, is what says the context died.
	go func() { <-rp.exited; closeAll(statR) }()

	// The hook reports only a line the agent numbered (__cs_n), so a stray
	// prompt (an interrupt that lands between cells) adds no report and no
	// marks. Output before the setup line (bash's own warnings about job
	// control) has no cell to go to and is dropped.
	setup := "unset HISTFILE; set +o history; PS1=; PS2=; PS0=; " +
		"PROMPT_COMMAND='__cs_rc=$?; if [ -n \"${__cs_n-}\" ]; then printf %s " + mark + "; printf %s " + mark + " >&2; " +
		"printf \"%s %s\\n\" \"$__cs_n\" \"$__cs_rc\" >&3; unset __cs_n; fi'; __cs_n=0\n"
	if _, err = cmdW.Write([]byte(setup)); err == nil {
		select {
		case m := <-ready:
			if m.N != 0 {
				err = fmt.Errorf("first report for cell %d, want 0", m.N)
			}
		case <-rp.dead:
			err = fmt.Errorf("it ended before it was ready")
		case <-time.After(runnerReadyTimeout):
			err = fmt.Errorf("no answer within %s", runnerReadyTimeout)
		}
	}
	if err == nil && (!rp.out.awaitMark() || !rp.err.awaitMark()) {
		err = fmt.Errorf("its setup marks did not arrive")
	}
	if err != nil {
		rp.kill()
		return nil, fmt.Errorf("bash context start: %w", err)
	}
	return rp, nil
}

// sendBashCell writes the cell to a file and has bash source it.
func (s *Server) sendBashCell(rp *runnerProc, n int, code string) (func(), error) {
	noop := func() {}
	if strings.IndexByte(code, 0) >= 0 {
		// bash cannot hold a NUL; refuse before the shell sees half a cell.
		return noop, errBadRequest("bash code cannot contain NUL bytes")
	}
	f, err := os.CreateTemp(s.cfg.TempDir, "sandbox-cell-*.sh")
	if err != nil {
		return noop, fmt.Errorf("write bash cell: %w", err)
	}
	_, werr := f.WriteString(code)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	cleanup := func() { _ = os.Remove(f.Name()) }
	if werr != nil {
		cleanup()
		return noop, fmt.Errorf("write bash cell: %w", werr)
	}
	line := "__cs_n=" + strconv.Itoa(n) + "; . '" + f.Name() + "' </dev/null\n"
	rp.wmu.Lock()
	_ = rp.in.SetWriteDeadline(time.Now().Add(runnerReadyTimeout)) // a wedged shell is restarted
	_, err = rp.in.Write([]byte(line))
	rp.wmu.Unlock()
	if err != nil {
		cleanup()
		return noop, fmt.Errorf("send to bash: %w", err)
	}
	return cleanup, nil
}

// readBash turns bash's status reports ("cell status" lines on fd 3) into
// the python runner's messages: the first is ready, the rest end cells.
func (rp *runnerProc) readBash(ready chan<- runnerMsg) {
	defer close(rp.dead)
	defer closeAll(rp.conn)
	sc := bufio.NewScanner(rp.conn)
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue // a cell wrote to fd 3 itself
		}
		n, err1 := strconv.Atoi(f[0])
		rc, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			continue
		}
		m := runnerMsg{T: "done", N: n, Marked: []int{1, 2}}
		switch {
		case rc == 130:
			m.Error = &CodeError{Name: "KeyboardInterrupt", Value: "interrupted (exit status 130)"}
		case rc != 0:
			m.Error = &CodeError{Name: bashExitStatusError, Value: "exit status " + strconv.Itoa(rc)}
		}
		if first {
			m.T = "ready"
			ready <- m
			continue
		}
		if int64(n) != rp.sent.Load() {
			continue // not the report of the cell in flight
		}
		if sink := rp.currentSink(); sink != nil {
			select {
			case sink.done <- m:
			default:
			}
		}
	}
}
