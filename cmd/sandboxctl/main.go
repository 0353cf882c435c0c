// Command sandboxctl is the operator's and user's command line for Cloud
// Sandbox: cluster status and members, sandboxes and sessions, exec, the
// event stream, snapshots of the replicated state. It speaks the public
// REST API only (SANDBOX_ADDR, SANDBOX_TOKEN); `sandboxctl help` lists the
// commands and the exit codes scripts can rely on.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Exit codes. exec exits with the command's own code instead once the
// command has run.
const (
	exitOK           = 0
	exitError        = 1 // cannot reach the server, or the server failed or refused the request
	exitUsage        = 2 // bad command line
	exitNotFound     = 3 // the sandbox, session or route does not exist (404)
	exitUnauthorized = 4 // no, invalid or expired token, or not allowed (401, 403)
)

const usage = `sandboxctl — command line for Cloud Sandbox

Usage: sandboxctl [flags] <command> [args]

Cluster:
  status                      this node's health, role, leader, applied index and pool
  members                     Raft servers: id, address, voter, leader, reachable (admin)
  leader                      the current leader's id
  snapshot save <file>        save the replicated state to file ("-" = stdout) (admin)
  snapshot restore <file>     replace the whole cluster state with a saved file (admin)
  drain [--undo] <node>       Nomad: no new sandboxes on this client node, its idle pool
                              sandboxes recycled onto the others; active ones stay,
                              paused ones resume elsewhere. --undo: eligible again (admin;
                              the local Docker driver answers 501: one host)
Sandboxes:
  sandboxes ls [--state S] [--owner U]
                              list sandboxes (yours; an admin sees all), every page.
                              --state filters on the server, --owner on the client
  sandboxes inspect <id>      one sandbox
  sandboxes kill <id>         release a sandbox (it is destroyed)
  sessions ls                 list sessions
  exec [--exec-timeout S] [--cwd DIR] <id> -- cmd [args...]
                              run a command, streaming its output; sandboxctl exits
                              with the command's exit code (124 if it timed out;
                              --exec-timeout in seconds, default the server's 30)
  events [-f] [--since ID] [--sandbox ID] [--type T,...]
                              lifecycle events: without -f the ones kept, then exit;
                              with -f follow new ones (from --since, else from now),
                              reconnecting with Last-Event-ID
Auth:
  token --user U [--role admin]
                              get an access token (development mode):
                              export SANDBOX_TOKEN=$(sandboxctl token --user root --role admin)

Flags (before or after the command):
  -addr URL      API address (env SANDBOX_ADDR, default http://127.0.0.1:8080)
  -token T       bearer access token (env SANDBOX_TOKEN)
  -json          print JSON instead of a table
  -timeout D     bound on each request (default 60s; exec and events -f are bounded
                 by the command's own timeout and by nothing, respectively)

Exit codes:
  0  ok
  1  error talking to the server, or the server failed or refused the request
  2  usage error
  3  not found (unknown or someone else's sandbox or session)
  4  unauthorized or forbidden (no token, invalid or expired token, not an admin)
  exec: the command's own exit code once it ran (124 when it timed out)
`

// exitErr carries an exit code with the message printed on stderr.
type exitErr struct {
	code int
	msg  string
}

func (e *exitErr) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &exitErr{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

// opts are the flags every command accepts.
type opts struct {
	addr    string
	token   string
	json    bool
	timeout time.Duration
}

// bind registers the common flags on fs, writing into o: the same flags
// work before and after the command.
func (o *opts) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.addr, "addr", o.addr, "API address")
	fs.StringVar(&o.token, "token", o.token, "bearer access token")
	fs.BoolVar(&o.json, "json", o.json, "print JSON")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "bound on each request")
}

// env is the process environment, stdout and stderr of one run.
type env struct {
	opts
	stdout, stderr io.Writer
}

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run executes one command line and returns the process's exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	e.addr = getenv("SANDBOX_ADDR")
	if e.addr == "" {
		e.addr = "http://127.0.0.1:8080"
	}
	e.token = getenv("SANDBOX_TOKEN")
	e.timeout = 60 * time.Second

	fs := flag.NewFlagSet("sandboxctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.bind(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		fmt.Fprintf(stderr, "sandboxctl: %v\n\n%s", err, usage)
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	err := dispatch(e, rest[0], rest[1:])
	if err == nil {
		return exitOK
	}
	var ee *exitErr
	if !errors.As(err, &ee) {
		ee = &exitErr{code: exitError, msg: err.Error()}
	}
	if ee.msg != "" {
		fmt.Fprintf(stderr, "sandboxctl: %s\n", ee.msg)
	}
	if ee.code == exitUsage {
		fmt.Fprintln(stderr, "run 'sandboxctl help' for usage")
	}
	return ee.code
}

func dispatch(e *env, cmd string, args []string) error {
	sub := func() (string, []string, error) {
		if len(args) == 0 {
			return "", nil, usageErr("%s: missing subcommand", cmd)
		}
		return args[0], args[1:], nil
	}
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
		return nil
	case "status":
		return cmdStatus(e, args)
	case "members":
		return cmdMembers(e, args)
	case "leader":
		return cmdLeader(e, args)
	case "sandboxes", "sandbox", "sb":
		s, rest, err := sub()
		if err != nil {
			return err
		}
		switch s {
		case "ls", "list":
			return cmdSandboxesList(e, rest)
		case "inspect", "get":
			return cmdSandboxInspect(e, rest)
		case "kill", "release":
			return cmdSandboxKill(e, rest)
		}
		return usageErr("sandboxes: unknown subcommand %q (ls, inspect, kill)", s)
	case "sessions":
		s, rest, err := sub()
		if err != nil {
			return err
		}
		if s == "ls" || s == "list" {
			return cmdSessionsList(e, rest)
		}
		return usageErr("sessions: unknown subcommand %q (ls)", s)
	case "exec":
		return cmdExec(e, args)
	case "events":
		return cmdEvents(e, args)
	case "snapshot":
		s, rest, err := sub()
		if err != nil {
			return err
		}
		switch s {
		case "save":
			return cmdSnapshotSave(e, rest)
		case "restore":
			return cmdSnapshotRestore(e, rest)
		}
		return usageErr("snapshot: unknown subcommand %q (save, restore)", s)
	case "drain":
		return cmdDrain(e, args)
	case "token":
		return cmdToken(e, args)
	}
	return usageErr("unknown command %q", cmd)
}

// parseArgs parses a command's flags, which may come before, between or
// after its positional arguments; everything after "--" is positional
// as is. It returns the positionals and what followed "--" (nil if none).
func parseArgs(e *env, name string, fs *flag.FlagSet, args []string, positional int) ([]string, []string, error) {
	fs.SetOutput(io.Discard)
	e.bind(fs)
	var pos, after []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(e.stdout, usage)
				return nil, nil, &exitErr{code: exitOK}
			}
			return nil, nil, usageErr("%s: %v", name, err)
		}
		rest := fs.Args()
		// flag.Parse consumed a "--" if it stopped there.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			after = append([]string{}, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) != positional {
		return nil, nil, usageErr("%s: want %d argument(s), got %d (%s)", name, positional, len(pos), strings.Join(pos, " "))
	}
	return pos, after, nil
}
