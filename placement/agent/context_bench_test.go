package agent

import (
	"fmt"
	"os/exec"
	"testing"
)

// BenchmarkContextRun: a warm python and bash context cell through the
// agent (client, unix socket, runner and back), beside a cold
// `python3 -c 'print(1)'` fork+exec on the same machine.
//
//	go test ./placement/agent -run '^$' -bench ContextRun -benchtime 300x
func BenchmarkContextRun(b *testing.B) {
	a := startAgent(b, ServerConfig{})
	for _, tc := range []struct{ lang, code, want string }{{"python", "print(1)", "1\n"}, {"bash", "echo 1", "1\n"}} {
		b.Run(tc.lang, func(b *testing.B) {
			info, err := a.client.CreateContext(ctxT(b), ContextRequest{Language: tc.lang})
			if err != nil {
				b.Fatal(err)
			}
			run := func() error {
				res, err := a.client.RunCode(ctxT(b), info.ID, RunCodeRequest{Code: tc.code})
				if err == nil && res.Stdout != tc.want {
					err = fmt.Errorf("printed %q", res.Stdout)
				}
				return err
			}
			compare(b, tc.lang+" context cell", run, func() error { return exec.Command("/usr/bin/python3", "-c", "print(1)").Run() })
		})
	}
}
