package agent

import "time"

// Background processes (procs.go) outlive the request that started them:
// they belong to the agent, so a client or a control node that goes away
// takes nothing with it. These are the types of their routes.

// ProcessStartRequest starts a background process. Exactly one of Argv and
// Shell is set.
type ProcessStartRequest struct {
	Argv  []string          `json:"argv,omitempty"`
	Shell string            `json:"shell,omitempty"` // run by /bin/sh -c
	Env   map[string]string `json:"env,omitempty"`
	Cwd   string            `json:"cwd,omitempty"` // default /workspace
	// Tag is a caller's name for the process (at most MaxProcessTag bytes),
	// shown by List.
	Tag string `json:"tag,omitempty"`
	// Stdin gives the process a pipe that SendStdin writes to; without it
	// stdin is /dev/null. A pty always takes input.
	Stdin bool `json:"stdin,omitempty"`
	// PTY runs the process on a pseudo-terminal of this size (it becomes
	// the session leader with the terminal as its controlling tty); its
	// output is one stream, "pty".
	PTY *PTYSize `json:"pty,omitempty"`
	// Timeout kills the process group when it expires; zero means none: a
	// background process lives as long as its sandbox.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// PTYSize is a terminal's size in character cells.
type PTYSize struct {
	Rows int `json:"rows"`
	Cols int `json:"cols"`
}

// ProcessInfo describes a background process, running or ended.
type ProcessInfo struct {
	PID     int      `json:"pid"`
	Tag     string   `json:"tag,omitempty"`
	Argv    []string `json:"argv"`
	Cwd     string   `json:"cwd"`
	PTY     bool     `json:"pty"`
	Stdin   bool     `json:"stdin"`
	Running bool     `json:"running"`
	// ExitCode follows the shell (128+n for signal n); nil while running.
	ExitCode *int `json:"exit_code,omitempty"`
	// Signal names the signal that ended the process ("SIGTERM"), if one did.
	Signal    string     `json:"signal,omitempty"`
	TimedOut  bool       `json:"timed_out,omitempty"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	// OutputStart and OutputEnd are the byte offsets of the output the agent
	// still holds: [OutputStart, OutputEnd). Output before OutputStart fell
	// out of the ring.
	OutputStart int64 `json:"output_start"`
	OutputEnd   int64 `json:"output_end"`
}

// ProcessEvent is one line of a process's output stream (NDJSON).
//
//   - "stdout", "stderr", "pty": Data holds the bytes [Offset, End) of the
//     process's output (one offset space for all its streams), as UTF-8.
//     Resume from End.
//   - "gap": the bytes [Offset, End) asked for have fallen out of the ring
//     and are lost; the stream goes on from End.
//   - "exit": the process ended and all its output was sent; Process says how.
//     It is the last event.
//   - "keepalive": nothing new; sent while a followed process is quiet so
//     that idle connections are not cut.
type ProcessEvent struct {
	Type    string       `json:"type"`
	Data    string       `json:"data,omitempty"`
	Offset  int64        `json:"offset"`
	End     int64        `json:"end"`
	Process *ProcessInfo `json:"process,omitempty"`
}

// Process event types.
const (
	EventPTY       = "pty"
	EventGap       = "gap"
	EventExit      = "exit"
	EventKeepalive = "keepalive"
)

// StdinRequest writes Data to a process's stdin (or its terminal) and, with
// Close, closes stdin afterwards (EOF; a terminal gets ^D instead).
type StdinRequest struct {
	Data  string `json:"data,omitempty"`
	Close bool   `json:"close,omitempty"`
}

// SignalRequest sends a signal ("SIGTERM", "TERM" or "15") to a process's
// whole process group.
type SignalRequest struct {
	Signal string `json:"signal"`
}

// Bounds of background processes.
const (
	// MaxProcesses is how many background processes, running or ended, one
	// agent keeps; a start beyond it first forgets the oldest ended one, and
	// is refused when all are running.
	MaxProcesses = 64
	// ProcessRingBytes is how much recent output the agent keeps per process.
	ProcessRingBytes = 1 << 20
	// MaxStdinChunk bounds the data of one stdin write.
	MaxStdinChunk = 64 << 10
	// MaxProcessTag bounds a tag.
	MaxProcessTag = 128
	// MaxPTYCells bounds rows and cols of a terminal.
	MaxPTYCells = 1000
)
