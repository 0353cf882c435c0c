package docker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// TestCodeContextsInSandbox checks stateful code contexts through the agent
// of a real hardened container: what an API user sees, and that a context
// is held to the same bounds as an exec.
func TestCodeContextsInSandbox(t *testing.T) {
	d := newDriver(t, nil)
	s := newSandbox(t, d, placement.Spec{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	create := func(t *testing.T, req agent.ContextRequest) string {
		t.Helper()
		info, err := s.client.CreateContext(ctx, req)
		if err != nil {
			t.Fatalf("CreateContext: %v", err)
		}
		return info.ID
	}
	run := func(t *testing.T, id, code string, timeout time.Duration) *agent.RunCodeResult {
		t.Helper()
		res, err := s.client.RunCode(ctx, id, agent.RunCodeRequest{Code: code, Timeout: timeout})
		if err != nil {
			t.Fatalf("RunCode(%q): %v", code, err)
		}
		return res
	}
	text := func(res *agent.RunCodeResult) string {
		if len(res.Results) == 0 {
			return ""
		}
		return res.Results[0].Data["text/plain"]
	}

	t.Run("runs as the sandbox user under the exec bounds", func(t *testing.T) {
		id := create(t, agent.ContextRequest{})
		res := run(t, id, "import os\n(os.getuid(), open('/proc/self/oom_score_adj').read().strip(), os.getcwd())", 0)
		if got := text(res); got != "(1000, '1000', '/workspace')" {
			t.Errorf("uid, oom score, cwd = %s (error %+v); want the exec's (1000, '1000', '/workspace')", got, res.Error)
		}
		res = run(t, id, "open('/etc/planted', 'w')", 0)
		if res.Error == nil || !strings.Contains("PermissionError OSError", res.Error.Name) {
			t.Errorf("writing /etc: %+v, want a PermissionError or OSError", res.Error)
		}
	})

	t.Run("state across three cells, errors and rich values", func(t *testing.T) {
		id := create(t, agent.ContextRequest{})
		run(t, id, "import json\nitems = [3, 1, 2]", 0)
		run(t, id, "def top(xs):\n    return sorted(xs)[-1]", 0)
		if got := text(run(t, id, "top(items), json.dumps(items)", 0)); got != "(3, '[3, 1, 2]')" {
			t.Errorf("third cell = %s", got)
		}
		res := run(t, id, "class Fig:\n    def _repr_html_(self): return '<svg/>'\nFig()", 0)
		if len(res.Results) != 1 || res.Results[0].Data["text/html"] != "<svg/>" {
			t.Errorf("html value: %+v", res.Results)
		}
		res = run(t, id, "int('x')", 0)
		if res.Error == nil || res.Error.Name != "ValueError" || !strings.Contains(res.Error.Value, "invalid literal") ||
			!strings.Contains(res.Error.Traceback, "int('x')") {
			t.Errorf("exception: %+v", res.Error)
		}
	})

	t.Run("timeout interrupts and the context stays usable", func(t *testing.T) {
		id := create(t, agent.ContextRequest{})
		run(t, id, "before = 'kept'", 0)
		res := run(t, id, "while True:\n    pass", time.Second)
		if !res.TimedOut || res.Error == nil || res.Error.Name != "KeyboardInterrupt" || res.Restarted {
			t.Fatalf("busy loop: %+v (error %+v)", res, res.Error)
		}
		if got := text(run(t, id, "before", 0)); got != "'kept'" {
			t.Fatalf("after the interrupt: %s", got)
		}
	})

	t.Run("bash keeps shell state and stops on interrupt", func(t *testing.T) {
		id := create(t, agent.ContextRequest{Language: "bash"})
		run(t, id, "cd /tmp; N=6; twice() { echo $((N * 2)); }", 0)
		if res := run(t, id, "twice; pwd; id -u", 0); res.Stdout != "12\n/tmp\n1000\n" || res.Error != nil {
			t.Errorf("bash cells: %+v (error %+v)", res, res.Error)
		}
		res := run(t, id, "sleep 300", time.Second)
		if !res.TimedOut || res.Error == nil || res.Error.Name != "KeyboardInterrupt" || res.Restarted {
			t.Errorf("sleep on timeout: %+v (error %+v)", res, res.Error)
		}
		if res := run(t, id, "twice", 0); res.Stdout != "12\n" {
			t.Errorf("after the interrupt: %+v", res)
		}
	})

	t.Run("contexts are independent; restart clears; delete kills its processes", func(t *testing.T) {
		a := create(t, agent.ContextRequest{Env: map[string]string{"WHO": "a"}})
		b := create(t, agent.ContextRequest{Cwd: "/tmp"})
		run(t, a, "only_a = 1", 0)
		if res := run(t, b, "only_a", 0); res.Error == nil || res.Error.Name != "NameError" {
			t.Errorf("b sees a's variable: %+v", res)
		}
		if _, err := s.client.RestartContext(ctx, a); err != nil {
			t.Fatal(err)
		}
		if res := run(t, a, "import os\nos.environ['WHO']", 0); text(res) != "'a'" {
			t.Errorf("after restart the env is %+v (error %+v), want 'a'", res.Results, res.Error)
		}
		if res := run(t, a, "only_a", 0); res.Error == nil || res.Error.Name != "NameError" {
			t.Errorf("restart kept the state: %+v", res)
		}
		if got := text(run(t, b, "import subprocess\np = subprocess.Popen(['sleep', '311'])\np.poll() is None", 0)); got != "True" {
			t.Fatalf("background sleep not running: %s", got)
		}
		if err := s.client.DeleteContext(ctx, b); err != nil {
			t.Fatal(err)
		}
		_, err := s.client.RunCode(ctx, b, agent.RunCodeRequest{Code: "1"})
		var ae *agent.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
			t.Fatalf("run after delete: %v, want 404", err)
		}
		eventually(t, 10*time.Second, "the deleted context's sleep is gone", func() error {
			out := s.sh(t, `for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = sleep ] && echo ${p#/proc/}; done; true`)
			if strings.TrimSpace(out.Stdout) != "" {
				return fmt.Errorf("still running: %s", out.Stdout)
			}
			return nil
		})
	})
}
