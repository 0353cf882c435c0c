// Package agent is the sandbox agent: the protocol spoken between the control
// plane and the static sandbox-agent process that runs as init inside every
// sandbox, the server that process runs, and the client the API uses.
//
// Transport is HTTP/1.1 over a unix socket (local Docker) or TCP with a
// per-sandbox bearer secret (Nomad). Exec and file traffic never goes through
// Raft: it is data, not state.
package agent

import "time"

// ExecRequest runs one process. Exactly one of Argv, Shell, or Code is set.
type ExecRequest struct {
	Argv     []string          `json:"argv,omitempty"`
	Shell    string            `json:"shell,omitempty"`    // run by /bin/sh -c
	Code     string            `json:"code,omitempty"`     // program text, run by Language's interpreter
	Language string            `json:"language,omitempty"` // python, bash, sh
	Env      map[string]string `json:"env,omitempty"`
	Cwd      string            `json:"cwd,omitempty"` // default /workspace
	Stdin    []byte            `json:"stdin,omitempty"`
	// Timeout kills the whole process group when it expires (zero: agent default).
	Timeout time.Duration `json:"timeout,omitempty"`
	// MaxOutputBytes caps each of stdout and stderr (zero: agent default).
	MaxOutputBytes int64 `json:"max_output_bytes,omitempty"`
}

// ExecResult is how a process ended.
type ExecResult struct {
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	DurationMs      int64  `json:"duration_ms"`
	TimedOut        bool   `json:"timed_out"`
}

// Event is one line of a streamed exec: "stdout" and "stderr" carry Data;
// the last event is "result" and carries Result.
type Event struct {
	Type   string      `json:"type"`
	Data   string      `json:"data,omitempty"`
	Result *ExecResult `json:"result,omitempty"`
}

// FileInfo describes one directory entry.
type FileInfo struct {
	Name       string    `json:"name"`
	Path       string    `json:"path"`
	Size       int64     `json:"size"`
	Type       string    `json:"type"` // file, dir, symlink, other
	Mode       string    `json:"mode"` // octal permission bits, e.g. "0644"
	ModifiedAt time.Time `json:"modified_at"`
	// SymlinkTarget is what a symlink points to, as written (not resolved).
	SymlinkTarget string `json:"symlink_target,omitempty"`
}

// Health is the agent's answer to a health check.
type Health struct {
	Status  string `json:"status"` // "ok"
	Version string `json:"version"`
	PID     int    `json:"pid"`
	UID     int    `json:"uid"`
	// WriteContainment: the agent and every process it starts can write
	// only beneath the sandbox's size-limited paths (Landlock, ABI
	// LandlockABI); false means they can write wherever their uid may.
	WriteContainment bool `json:"write_containment"`
	LandlockABI      int  `json:"landlock_abi"`
}

// ErrorBody is every non-2xx answer of the agent.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"` // one of the Code* constants
}

// Error codes carried in ErrorBody.Code.
const (
	CodeBadRequest    = "bad_request"
	CodeUnauthorized  = "unauthorized"
	CodeNotFound      = "not_found"
	CodeForbidden     = "forbidden"
	CodeConflict      = "conflict"
	CodeUnprocessable = "unprocessable"
	CodeTooLarge      = "too_large"
	CodeInternal      = "internal"
)

// Event types of a streamed exec.
const (
	EventStdout = "stdout"
	EventStderr = "stderr"
	EventResult = "result"
)

// FileInfo.Type values.
const (
	FileTypeFile    = "file"
	FileTypeDir     = "dir"
	FileTypeSymlink = "symlink"
	FileTypeOther   = "other"
)

// Languages accepted in ExecRequest.Language, and the interpreter each runs.
var Languages = map[string]string{
	"python":  "python3",
	"python3": "python3",
	"bash":    "bash",
	"sh":      "sh",
}

// Version is the agent protocol version reported by Health.
const Version = "1"

// WriteResult answers PUT /files.
type WriteResult struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// UploadResult answers PUT /files/archive. Files counts the non-directory
// entries extracted (regular files, symlinks, hard links).
type UploadResult struct {
	Path  string `json:"path"`
	Files int    `json:"files"`
}
