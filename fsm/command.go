package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// CommandType tags a command in the Raft log. Numbers are only ever appended:
// a log written today must replay on every later version.
type CommandType uint8

// IgnoreUnknownTypeFlag set on a type lets an older node skip a command it does
// not know instead of stopping (Nomad's convention). Use it only for commands
// whose loss cannot make nodes diverge.
const IgnoreUnknownTypeFlag CommandType = 0x80

// Command types. Append only.
const (
	TypeSetPool        CommandType = 1
	TypeSandboxCreate  CommandType = 2
	TypeSandboxPlaced  CommandType = 3
	TypeSandboxFailed  CommandType = 4
	TypeSandboxAcquire CommandType = 5
	TypeSandboxRelease CommandType = 6
	TypeSandboxRemoved CommandType = 7
	TypeSandboxTouch   CommandType = 8
	TypeSessionCreate  CommandType = 9
	TypeSessionPause   CommandType = 10
	TypeSessionResume  CommandType = 11
	TypeSessionDelete  CommandType = 12
	TypeSessionsPurge  CommandType = 13
	TypeTokenRevoke    CommandType = 14
	TypeSandboxMoved   CommandType = 15
	TypeSandboxResumed CommandType = 16
	TypeEgressGrantSet CommandType = 17
)

// Header is carried by every command. Apply takes time and identity from here,
// never from the clock, so every node computes the same state.
type Header struct {
	// RequestID makes a retried command apply once: a second command with the
	// same RequestID returns the first one's response and changes nothing.
	// Empty means "not deduplicated".
	RequestID string    `json:"request_id,omitempty"`
	Now       time.Time `json:"now"`
}

// Command is a typed state change.
type Command interface {
	Type() CommandType
	header() *Header
}

// Hdr returns the command's header for callers that fill it in.
func Hdr(c Command) *Header { return c.header() }

func (h *Header) header() *Header { return h }

// SetPool replaces the pool configuration.
type SetPool struct {
	Header
	Pool PoolConfig `json:"pool"`
}

// SandboxCreate adds a pending, unowned pool sandbox (the warmer's command).
// Fails with CodePoolExhausted when MaxSize live sandboxes exist.
type SandboxCreate struct {
	Header
	ID        string    `json:"id"`
	Image     string    `json:"image"`
	Resources Resources `json:"resources"`
	Network   bool      `json:"network"`
}

// SandboxPlaced records that the driver started a pending sandbox: it becomes
// idle (pool) or active (created on demand for an owner). A sandbox that was
// released while being placed stays terminating and only records the placement.
type SandboxPlaced struct {
	Header
	ID        string    `json:"id"`
	Placement Placement `json:"placement"`
}

// SandboxMoved records that a sandbox now runs somewhere else (a Nomad
// resume placed a new allocation): the API must reach its agent at the new
// placement. A terminating sandbox records it too, so the reconciler destroys
// the right allocation.
type SandboxMoved struct {
	Header
	ID        string    `json:"id"`
	Placement Placement `json:"placement"`
}

// SandboxResumed records that a resuming sandbox runs again: its agent
// answers at Placement when Moved (a Nomad resume placed a new
// allocation), or where it was (Docker unpaused it in place). Only then
// is the sandbox active.
type SandboxResumed struct {
	Header
	ID        string    `json:"id"`
	Moved     bool      `json:"moved,omitempty"`
	Placement Placement `json:"placement"`
}

// SandboxFailed marks a live sandbox failed (placement failed, container died).
type SandboxFailed struct {
	Header
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// SandboxAcquire hands the caller an idle sandbox of the image (or the pool's
// image when Image is empty). With none idle it adds a pending sandbox with
// NewID owned by Owner, unless MaxSize live sandboxes exist (CodePoolExhausted).
// The response's Sandbox is the one handed out.
type SandboxAcquire struct {
	Header
	Owner     string     `json:"owner"`
	NewID     string     `json:"new_id"`
	Image     string     `json:"image,omitempty"`
	Resources *Resources `json:"resources,omitempty"` // nil: pool defaults
	Network   bool       `json:"network"`
	// Role is the owner's role, for egress grants made to a role.
	Role        string        `json:"role,omitempty"`
	IdleTimeout time.Duration `json:"idle_timeout,omitempty"`
	Lifetime    time.Duration `json:"lifetime,omitempty"`
	// Metadata and Env are the caller's, kept with the sandbox (bounded by
	// the API); Env is applied to every process started in it.
	Metadata map[string]string `json:"metadata,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
}

// SandboxRelease gives a sandbox back; it is destroyed, never reused. Owner
// must match unless Admin is set (another owner's sandbox is CodeNotFound).
type SandboxRelease struct {
	Header
	ID     string `json:"id"`
	Owner  string `json:"owner"`
	Admin  bool   `json:"admin,omitempty"`
	Reason string `json:"reason,omitempty"`
	// IdleOnly releases the sandbox only while it is idle in the pool
	// (conflict otherwise): a drain recycles warm sandboxes, never one a
	// user acquired after the drain looked.
	IdleOnly bool `json:"idle_only,omitempty"`
}

// SandboxRemoved deletes the record of a terminating or failed sandbox whose
// container is gone.
type SandboxRemoved struct {
	Header
	ID string `json:"id"`
}

// SandboxTouch records activity on sandboxes (for idle timeouts). The API
// batches and rate-limits these; unknown ids are ignored.
type SandboxTouch struct {
	Header
	IDs []string `json:"ids"`
}

// SessionCreate creates a session owning one sandbox: an idle one of the same
// image and network setting when there is one (its limits are changed to the
// session's), else a new pending one with SandboxID.
type SessionCreate struct {
	Header
	ID       string  `json:"id"`
	Owner    string  `json:"owner"`
	Image    string  `json:"image"`
	CPUCount float64 `json:"cpu_count"`
	MemoryMB int64   `json:"memory_mb"`
	Network  bool    `json:"network"`
	// Role is the owner's role, for egress grants made to a role.
	Role        string        `json:"role,omitempty"`
	SandboxID   string        `json:"sandbox_id"`
	IdleTimeout time.Duration `json:"idle_timeout,omitempty"`
	MaxLifetime time.Duration `json:"max_lifetime,omitempty"`
}

// SessionPause freezes the session's sandbox.
type SessionPause struct {
	Header
	ID    string `json:"id"`
	Owner string `json:"owner"`
	Admin bool   `json:"admin,omitempty"`
}

// SessionResume thaws the session's sandbox.
type SessionResume struct {
	Header
	ID    string `json:"id"`
	Owner string `json:"owner"`
	Admin bool   `json:"admin,omitempty"`
}

// SessionDelete ends a session and releases its sandbox. The session is kept
// as a "deleted" tombstone until SessionsPurge removes it.
type SessionDelete struct {
	Header
	ID     string `json:"id"`
	Owner  string `json:"owner"`
	Admin  bool   `json:"admin,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// SessionsPurge removes deleted sessions last updated before Before.
type SessionsPurge struct {
	Header
	Before time.Time `json:"before"`
}

// TokenRevoke revokes a refresh token by its id until it would have expired.
type TokenRevoke struct {
	Header
	TokenID   string    `json:"token_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (*SetPool) Type() CommandType        { return TypeSetPool }
func (*SandboxCreate) Type() CommandType  { return TypeSandboxCreate }
func (*SandboxPlaced) Type() CommandType  { return TypeSandboxPlaced }
func (*SandboxFailed) Type() CommandType  { return TypeSandboxFailed }
func (*SandboxAcquire) Type() CommandType { return TypeSandboxAcquire }
func (*SandboxRelease) Type() CommandType { return TypeSandboxRelease }
func (*SandboxRemoved) Type() CommandType { return TypeSandboxRemoved }
func (*SandboxTouch) Type() CommandType   { return TypeSandboxTouch }
func (*SessionCreate) Type() CommandType  { return TypeSessionCreate }
func (*SessionPause) Type() CommandType   { return TypeSessionPause }
func (*SessionResume) Type() CommandType  { return TypeSessionResume }
func (*SessionDelete) Type() CommandType  { return TypeSessionDelete }
func (*SessionsPurge) Type() CommandType  { return TypeSessionsPurge }
func (*TokenRevoke) Type() CommandType    { return TypeTokenRevoke }
func (*SandboxMoved) Type() CommandType   { return TypeSandboxMoved }
func (*SandboxResumed) Type() CommandType { return TypeSandboxResumed }

// newCommand returns an empty command of type t, or nil if t is unknown.
// Adding a command is one type, one line here, and one apply function.
func newCommand(t CommandType) Command {
	switch t {
	case TypeSetPool:
		return &SetPool{}
	case TypeSandboxCreate:
		return &SandboxCreate{}
	case TypeSandboxPlaced:
		return &SandboxPlaced{}
	case TypeSandboxFailed:
		return &SandboxFailed{}
	case TypeSandboxAcquire:
		return &SandboxAcquire{}
	case TypeSandboxRelease:
		return &SandboxRelease{}
	case TypeSandboxRemoved:
		return &SandboxRemoved{}
	case TypeSandboxTouch:
		return &SandboxTouch{}
	case TypeSessionCreate:
		return &SessionCreate{}
	case TypeSessionPause:
		return &SessionPause{}
	case TypeSessionResume:
		return &SessionResume{}
	case TypeSessionDelete:
		return &SessionDelete{}
	case TypeSessionsPurge:
		return &SessionsPurge{}
	case TypeTokenRevoke:
		return &TokenRevoke{}
	case TypeSandboxMoved:
		return &SandboxMoved{}
	case TypeSandboxResumed:
		return &SandboxResumed{}
	case TypeEgressGrantSet:
		return &EgressGrantSet{}
	case TypeSandboxSetTimeout:
		return &SandboxSetTimeout{}
	case TypeSandboxPause:
		return &SandboxPause{}
	case TypeSandboxResume:
		return &SandboxResume{}
	case TypeWebhookSet:
		return &WebhookSet{}
	case TypeWebhookDelivered:
		return &WebhookDelivered{}
	}
	return nil
}

// ErrUnknownCommand is returned by Decode for a type this version does not know.
var ErrUnknownCommand = errors.New("unknown command type")

// Encode writes a command as one type byte followed by its JSON payload.
func Encode(c Command) ([]byte, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", c.Type(), err)
	}
	return append([]byte{byte(c.Type())}, payload...), nil
}

// Decode reads a command written by Encode.
func Decode(b []byte) (Command, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("decode command: empty entry")
	}
	t := CommandType(b[0])
	c := newCommand(t &^ IgnoreUnknownTypeFlag)
	if c == nil {
		return nil, fmt.Errorf("decode command type %d: %w", t, ErrUnknownCommand)
	}
	if err := json.Unmarshal(b[1:], c); err != nil {
		return nil, fmt.Errorf("decode command type %d: %w", t, err)
	}
	return c, nil
}

// Response is what Apply returns for every command (as raft's response value).
// It is JSON so that a follower that forwarded the write gets it back intact.
type Response struct {
	Sandbox *Sandbox `json:"sandbox,omitempty"`
	Session *Session `json:"session,omitempty"`
	// Webhook is the webhook a webhook command left, without its secret.
	Webhook *Webhook `json:"webhook,omitempty"`
	Err     *Error   `json:"error,omitempty"`
	// Index is the Raft index at which the command was applied.
	Index uint64 `json:"index"`
}

// Error returns the response's business error as an error value (nil if none).
func (r *Response) Error() error {
	if r == nil || r.Err == nil {
		return nil
	}
	return r.Err
}
