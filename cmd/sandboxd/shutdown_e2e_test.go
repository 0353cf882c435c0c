package main

import (
	"syscall"
	"testing"
	"time"
)

// TestGracefulShutdown sends SIGTERM while an execution is in flight: the
// request finishes with its result, sandboxd exits cleanly, and after a
// restart the acquired sandbox is still there and still works.
func TestGracefulShutdown(t *testing.T) {
	n := startNode(t, nodeOpts{cluster: uniqueCluster(t)})
	c := n.login(t, "drain", "user")
	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)

	type outcome struct {
		status int
		res    execResult
		err    error
	}
	done := make(chan outcome, 1)
	go func() {
		var r execResult
		err := c.call("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": "sleep 2; echo finished"}, &r)
		done <- outcome{res: r, err: err}
	}()
	time.Sleep(500 * time.Millisecond) // the exec is running in the sandbox
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-done:
		if o.err != nil || o.res.Stdout != "finished\n" {
			t.Fatalf("in-flight execute during shutdown: %+v %v", o.res, o.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("in-flight execute did not finish within 30 s of SIGTERM")
	}
	select {
	case <-n.exited:
	case <-time.After(40 * time.Second):
		t.Fatal("sandboxd did not exit after draining")
	}
	if st := n.cmd.ProcessState; !st.Success() {
		t.Fatalf("sandboxd exited with %v:\n%s", st, tail(n.logs.String(), 30))
	}
	n.cmd = nil

	n.start()
	var r execResult
	c.do("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": []string{"echo", "still here"}}, 200, &r)
	if r.Stdout != "still here\n" {
		t.Fatalf("sandbox after restart: %+v", r)
	}
}
