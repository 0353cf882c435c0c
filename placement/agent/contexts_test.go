package agent

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// newContext creates a python context and deletes it at cleanup.
func newContext(t *testing.T, a *testAgent, req ContextRequest) *ContextInfo {
	t.Helper()
	info, err := a.client.CreateContext(ctxT(t), req)
	if err != nil {
		t.Fatalf("CreateContext: %v", err)
	}
	t.Cleanup(func() { _ = a.client.DeleteContext(ctxT(t), info.ID) })
	return info
}

// runCell runs code and fails the test on a transport error.
func runCell(t *testing.T, a *testAgent, id, code string, timeout time.Duration) *RunCodeResult {
	t.Helper()
	res, err := a.client.RunCode(ctxT(t), id, RunCodeRequest{Code: code, Timeout: timeout})
	if err != nil {
		t.Fatalf("RunCode(%q): %v", code, err)
	}
	return res
}

// mainText is the text/plain of the cell's final value, "" when none.
func mainText(res *RunCodeResult) string {
	for _, r := range res.Results {
		if r.IsMainResult {
			return r.Data["text/plain"]
		}
	}
	return ""
}

func TestContextKeepsStateAcrossCells(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	c := newContext(t, a, ContextRequest{})
	cells := []struct{ code, wantText, wantStdout string }{
		{"x = 40\nprint('set')", "", "set\n"},
		{"import math\ndef f(v):\n    return v + 1", "", ""},
		{"f(x) + math.floor(1.5)", "42", ""},
	}
	for i, cell := range cells {
		res := runCell(t, a, c.ID, cell.code, 0)
		if res.Error != nil || mainText(res) != cell.wantText || res.Stdout != cell.wantStdout || res.ExecutionCount != i+1 || res.Restarted {
			t.Fatalf("cell %d %q: %+v (error %+v); want text %q stdout %q count %d", i, cell.code, res, res.Error, cell.wantText, cell.wantStdout, i+1)
		}
	}
}

func TestContextResults(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	c := newContext(t, a, ContextRequest{})
	png := []byte("\x89PNG\r\n\x1a\nfake")
	setup := "class H:\n    def _repr_html_(self): return '<b>hi</b>'\n    def __repr__(self): return 'H()'\n" +
		"class P:\n    def _repr_png_(self): return " + fmt.Sprintf("%#v", string(png)) + ".encode('latin-1')\n"
	if res := runCell(t, a, c.ID, setup, 0); res.Error != nil {
		t.Fatalf("setup: %+v", res.Error)
	}
	tests := []struct {
		name, code string
		want       map[string]string // nil: no result at all
		wantStdout string
		wantStderr string
	}{
		{"expression repr", "{'a': [1, 2]}", map[string]string{"text/plain": "{'a': [1, 2]}"}, "", ""},
		{"string repr", "'x' * 3", map[string]string{"text/plain": "'xxx'"}, "", ""},
		{"html", "H()", map[string]string{"text/plain": "H()", "text/html": "<b>hi</b>"}, "", ""},
		{"png base64", "P()", map[string]string{"image/png": base64.StdEncoding.EncodeToString(png)}, "", ""},
		{"none has no result", "None", nil, "", ""},
		{"statement has no result", "y = 1", nil, "", ""},
		{"semicolon hides the value", "1 + 1;", nil, "", ""},
		{"print and value", "print('out')\n7", map[string]string{"text/plain": "7"}, "out\n", ""},
		{"stderr", "import sys\nsys.stderr.write('warn\\n')\nNone", nil, "", "warn\n"},
		{"subprocess output in order", "import os\nprint('a', flush=True)\nos.system('echo b; echo c >&2')\nprint('d')", nil, "a\nb\nd\n", "c\n"},
		{"no trailing newline", "print('partial', end='')", nil, "partial", ""},
		{"broken _repr_json_ costs only itself", "class J:\n    def _repr_json_(self): return object()\n    def __repr__(self): return 'J()'\nJ()", map[string]string{"text/plain": "J()"}, "", ""},
		{"unicode", "print('héllo ✓')\n'ü'", map[string]string{"text/plain": "'ü'"}, "héllo ✓\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCell(t, a, c.ID, tt.code, 0)
			if res.Error != nil {
				t.Fatalf("error %+v", res.Error)
			}
			if res.Stdout != tt.wantStdout || res.Stderr != tt.wantStderr {
				t.Errorf("stdout %q stderr %q, want %q and %q", res.Stdout, res.Stderr, tt.wantStdout, tt.wantStderr)
			}
			if tt.want == nil {
				if len(res.Results) != 0 {
					t.Errorf("results %+v, want none", res.Results)
				}
				return
			}
			if len(res.Results) != 1 || !res.Results[0].IsMainResult {
				t.Fatalf("results %+v, want one main result", res.Results)
			}
			for mime, want := range tt.want {
				if got := res.Results[0].Data[mime]; got != want {
					t.Errorf("%s = %q, want %q", mime, got, want)
				}
			}
		})
	}
}

func TestContextErrors(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	c := newContext(t, a, ContextRequest{})
	tests := []struct {
		name, code          string
		wantName, wantValue string
		wantTraceback       []string
		wantStdout          string
	}{
		{"zero division", "print('before')\ndef g():\n    return 1/0\ng()", "ZeroDivisionError", "division by zero",
			[]string{"Traceback (most recent call last)", "<cell-", "in g", "return 1/0", "ZeroDivisionError: division by zero"}, "before\n"},
		{"name error", "undefined_name", "NameError", "name 'undefined_name' is not defined", []string{"NameError"}, ""},
		{"syntax error", "def (:", "SyntaxError", "invalid syntax (<cell-3>, line 1)", []string{"def (:", "SyntaxError"}, ""},
		{"sys.exit is an error, not an end", "import sys\nsys.exit(3)", "SystemExit", "3", []string{"SystemExit"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCell(t, a, c.ID, tt.code, 0)
			if res.Error == nil {
				t.Fatalf("no error: %+v", res)
			}
			if res.Error.Name != tt.wantName || res.Error.Value != tt.wantValue || res.Stdout != tt.wantStdout {
				t.Errorf("error %s: %q, stdout %q; want %s: %q, stdout %q", res.Error.Name, res.Error.Value, res.Stdout, tt.wantName, tt.wantValue, tt.wantStdout)
			}
			for _, s := range tt.wantTraceback {
				if !strings.Contains(res.Error.Traceback, s) {
					t.Errorf("traceback lacks %q:\n%s", s, res.Error.Traceback)
				}
			}
			if strings.Contains(res.Error.Traceback, "_run") {
				t.Errorf("traceback shows the runner's own frames:\n%s", res.Error.Traceback)
			}
		})
	}
	// The context survives every one of them.
	if res := runCell(t, a, c.ID, "'alive'", 0); mainText(res) != "'alive'" || res.Restarted {
		t.Fatalf("after the errors: %+v", res)
	}
}

func TestContextTimeoutInterruptsCell(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	c := newContext(t, a, ContextRequest{})
	runCell(t, a, c.ID, "kept = 'before'", 0)
	res := runCell(t, a, c.ID, "import time\nprint('started', flush=True)\nwhile True:\n    time.sleep(0.05)", time.Second)
	if !res.TimedOut || res.Error == nil || res.Error.Name != "KeyboardInterrupt" || res.Restarted || res.Stdout != "started\n" {
		t.Fatalf("timed out cell: %+v (error %+v); want timed_out, KeyboardInterrupt, not restarted, its output", res, res.Error)
	}
	if res := runCell(t, a, c.ID, "kept", 0); mainText(res) != "'before'" || res.Restarted {
		t.Fatalf("after the interrupt: %+v (error %+v); want the variable kept", res, res.Error)
	}
}

func TestContextTimeoutEscalatesToRestart(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	c := newContext(t, a, ContextRequest{})
	runCell(t, a, c.ID, "kept = 1", 0)
	stubborn := "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n    except KeyboardInterrupt:\n        pass"
	res := runCell(t, a, c.ID, stubborn, time.Second)
	if !res.TimedOut || !res.Restarted || res.Error == nil || res.Error.Name != ErrNameContextRestarted {
		t.Fatalf("stubborn cell: %+v (error %+v); want timed out, restarted, %s", res, res.Error, ErrNameContextRestarted)
	}
	res = runCell(t, a, c.ID, "kept", 0)
	if res.Error == nil || res.Error.Name != "NameError" || res.Restarted {
		t.Fatalf("after the restart: %+v (error %+v); want a usable context without the old state", res, res.Error)
	}
}

func TestContextInterpreterDeathRestarts(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	c := newContext(t, a, ContextRequest{})
	res := runCell(t, a, c.ID, "import os\nprint('bye', flush=True)\nos._exit(3)", 0)
	if res.Error == nil || res.Error.Name != ErrNameContextDied || !res.Restarted || res.Stdout != "bye\n" || !strings.Contains(res.Error.Value, "exit status 3") {
		t.Fatalf("dying cell: %+v (error %+v)", res, res.Error)
	}
	if res := runCell(t, a, c.ID, "2 * 21", 0); mainText(res) != "42" {
		t.Fatalf("after the death: %+v", res)
	}
}

func TestContextsAreIndependent(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	other := t.TempDir()
	c1 := newContext(t, a, ContextRequest{Env: map[string]string{"WHO": "one"}})
	c2 := newContext(t, a, ContextRequest{Cwd: other, Env: map[string]string{"WHO": "two"}})
	runCell(t, a, c1.ID, "v = 1", 0)
	runCell(t, a, c2.ID, "v = 2", 0)
	probe := "import os\n(v, os.environ['WHO'], os.getcwd(), os.getpid())"
	r1, r2 := runCell(t, a, c1.ID, probe, 0), runCell(t, a, c2.ID, probe, 0)
	t1, t2 := mainText(r1), mainText(r2)
	if !strings.HasPrefix(t1, fmt.Sprintf("(1, 'one', '%s', ", a.workdir)) || !strings.HasPrefix(t2, fmt.Sprintf("(2, 'two', '%s', ", other)) {
		t.Fatalf("contexts see %s and %s", t1, t2)
	}
	pid := func(s string) string { return s[strings.LastIndex(s, " ")+1 : len(s)-1] }
	if pid(t1) == pid(t2) || pid(t1) == strconv.Itoa(os.Getpid()) {
		t.Fatalf("pids %s and %s: want two separate interpreters", pid(t1), pid(t2))
	}
	list, err := a.client.ListContexts(ctxT(t))
	if err != nil || len(list) != 2 || list[0].ID != c1.ID || list[1].ID != c2.ID || list[1].Cwd != other {
		t.Fatalf("ListContexts = %+v, %v", list, err)
	}
}

func TestContextRestartAndDelete(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	c := newContext(t, a, ContextRequest{})
	res := runCell(t, a, c.ID, "x = 1\nimport os\nos.getpid()", 0)
	oldPID, _ := strconv.Atoi(mainText(res))
	if _, err := a.client.RestartContext(ctxT(t), c.ID); err != nil {
		t.Fatalf("RestartContext: %v", err)
	}
	waitGone(t, oldPID)
	res = runCell(t, a, c.ID, "x", 0)
	if res.Error == nil || res.Error.Name != "NameError" || res.ExecutionCount != 1 {
		t.Fatalf("after restart: %+v (error %+v); want NameError in cell 1", res, res.Error)
	}
	pidNow, _ := strconv.Atoi(mainText(runCell(t, a, c.ID, "import os\nos.getpid()", 0)))

	if err := a.client.DeleteContext(ctxT(t), c.ID); err != nil {
		t.Fatalf("DeleteContext: %v", err)
	}
	waitGone(t, pidNow)
	_, err := a.client.RunCode(ctxT(t), c.ID, RunCodeRequest{Code: "1"})
	wantAgentError(t, err, http.StatusNotFound)
	wantAgentError(t, a.client.DeleteContext(ctxT(t), c.ID), http.StatusNotFound)
	_, err = a.client.RestartContext(ctxT(t), c.ID)
	wantAgentError(t, err, http.StatusNotFound)
}

func TestContextRefused(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	tests := []struct {
		name   string
		req    ContextRequest
		status int
	}{
		{"unknown language", ContextRequest{Language: "ruby"}, http.StatusUnprocessableEntity},
		{"relative cwd", ContextRequest{Cwd: "work"}, http.StatusBadRequest},
		{"missing cwd", ContextRequest{Cwd: "/no/such/dir"}, http.StatusBadRequest},
		{"bad env name", ContextRequest{Env: map[string]string{"A=B": "1"}}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.client.CreateContext(ctxT(t), tt.req)
			wantAgentError(t, err, tt.status)
		})
	}
}

func TestContextLimit(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	for i := 0; i < MaxContexts; i++ {
		newContext(t, a, ContextRequest{})
	}
	_, err := a.client.CreateContext(ctxT(t), ContextRequest{})
	ae := wantAgentError(t, err, http.StatusConflict)
	if !strings.Contains(ae.Message, strconv.Itoa(MaxContexts)) {
		t.Errorf("message %q does not name the bound", ae.Message)
	}
}

func TestContextOutputCapped(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	c := newContext(t, a, ContextRequest{})
	res, err := a.client.RunCode(ctxT(t), c.ID, RunCodeRequest{Code: "print('a' * 100000)\nprint('e' * 50, file=__import__('sys').stderr)\n'v' * 5000", MaxOutputBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) != 1000 || !res.StdoutTruncated || res.StderrTruncated || res.Stderr != strings.Repeat("e", 50)+"\n" {
		t.Fatalf("stdout %d bytes truncated %t, stderr %q truncated %t", len(res.Stdout), res.StdoutTruncated, res.Stderr, res.StderrTruncated)
	}
	if got := mainText(res); len(got) != 1000 {
		t.Errorf("value text %d bytes, want cut to 1000", len(got))
	}
	res, err = a.client.RunCode(ctxT(t), c.ID, RunCodeRequest{Code: "raise ValueError('x' * 100000)", MaxOutputBytes: 1000})
	if err != nil || res.Error == nil || len(res.Error.Value) != 1000 || len(res.Error.Traceback) > 1000 {
		t.Fatalf("huge exception: %v %+v; want value and traceback cut to 1000 bytes", err, res)
	}
	// The next cell has its own budget.
	if res := runCell(t, a, c.ID, "print('ok')", 0); res.Stdout != "ok\n" || res.StdoutTruncated {
		t.Fatalf("next cell: %+v", res)
	}
}

func TestContextStream(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	c := newContext(t, a, ContextRequest{})
	var events []CodeEvent
	res, err := a.client.RunCodeStream(ctxT(t), c.ID, RunCodeRequest{Code: "import sys, time\nprint('one', flush=True)\ntime.sleep(0.2)\nprint('two', file=sys.stderr)\n3"},
		func(ev CodeEvent) error { events = append(events, ev); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || events[0] != (CodeEvent{Type: EventStdout, Data: "one\n"}) || events[1] != (CodeEvent{Type: EventStderr, Data: "two\n"}) {
		t.Errorf("events %+v", events)
	}
	if res.Stdout != "one\n" || res.Stderr != "two\n" || mainText(res) != "3" {
		t.Errorf("result %+v", res)
	}
	_, err = a.client.RunCodeStream(ctxT(t), "nope", RunCodeRequest{Code: "1"}, nil)
	wantAgentError(t, err, http.StatusNotFound)
}

func TestContextCellsQueue(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	c := newContext(t, a, ContextRequest{})
	runCell(t, a, c.ID, "log = []", 0)
	first := make(chan *RunCodeResult, 1)
	go func() {
		res, err := a.client.RunCode(ctxT(t), c.ID, RunCodeRequest{Code: "import time\nlog.append('slow start')\ntime.sleep(0.3)\nlog.append('slow end')"})
		if err != nil {
			t.Error(err)
		}
		first <- res
	}()
	// Wait until the slow cell runs, then send one more: it must wait its turn.
	deadline := time.Now().Add(10 * time.Second)
	for mainText(logLength(t, a, c.ID)) == "0" {
		if time.Now().After(deadline) {
			t.Fatal("the slow cell never started")
		}
	}
	res := runCell(t, a, c.ID, "list(log)", 0)
	<-first
	if got := mainText(res); got != "['slow start', 'slow end']" {
		t.Fatalf("second cell saw %s: cells of one context overlapped", got)
	}
}

// logLength runs a cell that reads how long the log is: "1" would mean it ran inside the slow cell.
func logLength(t *testing.T, a *testAgent, id string) *RunCodeResult {
	return runCell(t, a, id, "len(log)", 0)
}

func TestBashContext(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	c := newContext(t, a, ContextRequest{Language: "bash", Env: map[string]string{"GREETING": "hi"}})
	if c.Language != "bash" {
		t.Fatalf("language %q", c.Language)
	}
	other := t.TempDir()
	cells := []struct {
		name, code             string
		wantStdout, wantStderr string
		wantErr                string // CodeError.Name, "" for none
	}{
		{"variables and cd", "X=41; cd " + other, "", "", ""},
		{"functions and exports", "f() { echo $((X + 1)); }\nexport Y=exported\ndeclare -a arr=(a b c)", "", "", ""},
		{"all of it kept", "f; pwd; echo $Y ${#arr[@]} $GREETING", "42\n" + other + "\nexported 3 hi\n", "", ""},
		{"non-zero status", "echo out; echo err >&2; false", "out\n", "err\n", bashExitStatusError},
		{"stdin is empty", "cat; echo after", "after\n", "", ""},
		{"no trailing newline", "printf partial", "partial", "", ""},
	}
	for _, tt := range cells {
		t.Run(tt.name, func(t *testing.T) {
			res := runCell(t, a, c.ID, tt.code, 0)
			gotErr := ""
			if res.Error != nil {
				gotErr = res.Error.Name
			}
			if res.Stdout != tt.wantStdout || res.Stderr != tt.wantStderr || gotErr != tt.wantErr || len(res.Results) != 0 {
				t.Fatalf("stdout %q stderr %q error %+v results %+v; want %q %q %q", res.Stdout, res.Stderr, res.Error, res.Results, tt.wantStdout, tt.wantStderr, tt.wantErr)
			}
		})
	}

	for _, loop := range []string{"while true; do sleep 0.05; done", "while :; do :; done"} {
		res := runCell(t, a, c.ID, "echo started; "+loop, time.Second)
		if !res.TimedOut || res.Error == nil || res.Error.Name != "KeyboardInterrupt" || res.Restarted || res.Stdout != "started\n" {
			t.Fatalf("%q on timeout: %+v (error %+v); want interrupted, state kept", loop, res, res.Error)
		}
		if res := runCell(t, a, c.ID, "f", 0); res.Stdout != "42\n" {
			t.Fatalf("after interrupting %q: %+v", loop, res)
		}
	}

	res := runCell(t, a, c.ID, "echo bye; exit 3", 0)
	if res.Error == nil || res.Error.Name != ErrNameContextDied || !res.Restarted || res.Stdout != "bye\n" {
		t.Fatalf("exit: %+v (error %+v)", res, res.Error)
	}
	if res := runCell(t, a, c.ID, "echo ${X:-gone}", 0); res.Stdout != "gone\n" || res.Error != nil {
		t.Fatalf("after exit: %+v (error %+v); want a fresh shell", res, res.Error)
	}
	if _, err := os.Stat(a.workdir + "/.bash_history"); !os.IsNotExist(err) {
		t.Errorf("the shell left a history file in HOME (%v)", err)
	}
}

func TestContextDisplay(t *testing.T) {
	a := startAgent(t, ServerConfig{})
	c := newContext(t, a, ContextRequest{})
	res := runCell(t, a, c.ID, "class H:\n    def _repr_html_(self): return '<i>h</i>'\ndisplay(1, H())\nprint('between')\n'last'", 0)
	if res.Error != nil || len(res.Results) != 3 || res.Stdout != "between\n" {
		t.Fatalf("display: %+v (error %+v), want two shown values and the final one", res.Results, res.Error)
	}
	want := []struct {
		mime, data string
		main       bool
	}{{"text/plain", "1", false}, {"text/html", "<i>h</i>", false}, {"text/plain", "'last'", true}}
	for i, w := range want {
		if got := res.Results[i]; got.Data[w.mime] != w.data || got.IsMainResult != w.main {
			t.Errorf("result %d = %+v, want %s %q main %t", i, got, w.mime, w.data, w.main)
		}
	}
	// The next cell starts with no results of its own.
	if res := runCell(t, a, c.ID, "x = 1", 0); len(res.Results) != 0 {
		t.Errorf("next cell results %+v", res.Results)
	}
}
