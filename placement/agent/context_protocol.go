package agent

import "time"

// Stateful code contexts: a long-lived interpreter per context whose
// variables, imports and functions survive from one cell to the next
// (see contexts.go). These are the wire types of the agent's /contexts routes.

// ContextRequest creates a code context.
type ContextRequest struct {
	Language string            `json:"language,omitempty"` // "python" (the default)
	Cwd      string            `json:"cwd,omitempty"`      // default: the agent's workdir
	Env      map[string]string `json:"env,omitempty"`      // laid over the base environment
}

// ContextInfo describes one code context.
type ContextInfo struct {
	ID        string    `json:"id"`
	Language  string    `json:"language"`
	Cwd       string    `json:"cwd"`
	CreatedAt time.Time `json:"created_at"`
}

// RunCodeRequest runs one cell in a context.
type RunCodeRequest struct {
	Code string `json:"code"`
	// Timeout interrupts the cell (SIGINT, so KeyboardInterrupt) when it
	// expires; a cell that does not stop within the grace period that
	// follows has its context restarted (zero: agent default).
	Timeout time.Duration `json:"timeout,omitempty"`
	// MaxOutputBytes caps each of stdout and stderr, and the size of each
	// representation of the final value (zero: agent default, 4 MiB).
	MaxOutputBytes int64 `json:"max_output_bytes,omitempty"`
}

// CodeOutput is one displayed value: its representations by MIME type
// ("text/plain" always; "text/html", "image/png" (base64), "image/svg+xml",
// "text/markdown", "image/jpeg", "text/latex", "application/json" when the
// object offers the matching _repr_*_ method), as a Jupyter kernel sends them.
type CodeOutput struct {
	Data         map[string]string `json:"data"`
	IsMainResult bool              `json:"is_main_result"`
}

// CodeError is an exception a cell raised and did not catch.
type CodeError struct {
	Name      string `json:"name"`      // the exception's class, e.g. "ZeroDivisionError"
	Value     string `json:"value"`     // str(exception)
	Traceback string `json:"traceback"` // formatted as Python prints it
}

// RunCodeResult is how a cell ended.
type RunCodeResult struct {
	Stdout          string       `json:"stdout"`
	Stderr          string       `json:"stderr"`
	StdoutTruncated bool         `json:"stdout_truncated"`
	StderrTruncated bool         `json:"stderr_truncated"`
	Results         []CodeOutput `json:"results"`
	Error           *CodeError   `json:"error"`
	// ExecutionCount numbers the cells run since the context (re)started.
	ExecutionCount int   `json:"execution_count"`
	DurationMs     int64 `json:"duration_ms"`
	TimedOut       bool  `json:"timed_out"`
	// Restarted: the context's interpreter was started afresh during or
	// before this cell, so every variable defined before it is gone.
	Restarted bool `json:"restarted"`
}

// CodeEvent is one line of a streamed cell: "stdout" and "stderr" carry
// Data; the last event is "result" and carries Result.
type CodeEvent struct {
	Type   string         `json:"type"`
	Data   string         `json:"data,omitempty"`
	Result *RunCodeResult `json:"result,omitempty"`
}

// Names in CodeError.Name for ends the cell's own code did not raise.
const (
	// ErrNameContextDied: the interpreter exited during the cell
	// (os._exit, a crash, the OOM killer); the context was restarted.
	ErrNameContextDied = "ContextDied"
	// ErrNameContextRestarted: the cell ignored the interrupt past the
	// grace period and its context was restarted.
	ErrNameContextRestarted = "ContextRestarted"
)
