package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPTYUnderWriteContainment: with writes confined by Landlock (as under
// Nomad), opening a terminal (/dev/ptmx, /dev/pts/N) and typing into it
// still work, and the terminal's program is confined too.
func TestPTYUnderWriteContainment(t *testing.T) {
	if _, err := landlockABI(); err != nil {
		t.Skipf("this kernel offers no Landlock (%v): write containment cannot be tested here", err)
	}
	dir, err := os.MkdirTemp("", "salp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "agent")
	buildAgent(t, bin)
	uid := os.Getuid()
	if uid == 0 {
		uid = sandboxUID
	}
	d := newContainmentDirs(t, uid)
	c, h := startAgentBinary(t, bin, uid, d, &testLogWriter{t: t}, "-landlock", "on", "-write-paths", d.ws+","+d.tmp)
	if !h.WriteContainment {
		t.Fatalf("health %+v: want write containment on", h)
	}
	info, err := c.StartProcess(ctxT(t), ProcessStartRequest{Argv: []string{"sh"}, Env: map[string]string{"PS1": "sh$ "},
		PTY: &PTYSize{Rows: 24, Cols: 80}})
	if err != nil {
		t.Fatalf("start a pty under Landlock: %v", err)
	}
	readUntil(t, c, info.PID, "sh$ ")
	outside := filepath.Join(d.out, "from-pty")
	if err := c.SendStdin(ctxT(t), info.PID, StdinRequest{Data: "echo typed-$((6*7)); echo x > " + outside + "; exit\n"}); err != nil {
		t.Fatal(err)
	}
	out, _, exit := collectOutput(t, c, info.PID, 0, true)
	if !strings.Contains(out, "typed-42") || exit == nil {
		t.Fatalf("pty under Landlock printed %q (exit %+v)", out, exit)
	}
	if _, err := os.Stat(outside); err == nil {
		t.Fatalf("the pty's shell wrote %s outside the allowed paths", outside)
	}
}
