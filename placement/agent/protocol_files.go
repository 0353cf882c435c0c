package agent

// StatResult answers GET /files/stat: one entry, described without
// following it (a symlink is reported as a symlink, with its target).
type StatResult = FileInfo

// ListResult answers GET /files/walk: the entries below a path up to a
// depth, breadth first, at most a bounded number of them.
type ListResult struct {
	Path    string     `json:"path"`
	Entries []FileInfo `json:"entries"`
	// Truncated is true when entries were left out: the listing stopped at
	// its entry limit. Depth never truncates; it is what was asked for.
	Truncated bool `json:"truncated"`
}

// RenameRequest is the body of POST /files/rename.
type RenameRequest struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// RenameResult answers POST /files/rename.
type RenameResult struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// WatchEvent is one line of GET /files/watch (NDJSON). The first line is
// "ready" (the watch is in place: changes made after it are reported); then
// one line per change; "overflow" says the kernel dropped events; "error"
// says something went wrong and is followed by the end of the stream, unless
// it only concerns a subdirectory that could not be watched.
type WatchEvent struct {
	Type string `json:"type"`
	// Path is the entry the event is about (for a rename, its new path).
	Path string `json:"path,omitempty"`
	// OldPath is a renamed entry's previous path.
	OldPath string `json:"old_path,omitempty"`
	IsDir   bool   `json:"is_dir,omitempty"`
	Data    string `json:"data,omitempty"` // error and overflow text
}

// Watch event types.
const (
	WatchReady    = "ready"
	WatchCreate   = "create"
	WatchWrite    = "write"
	WatchRemove   = "remove"
	WatchRename   = "rename"
	WatchChmod    = "chmod"
	WatchOverflow = "overflow"
	WatchError    = "error"
)

// Listing bounds: DefaultListLimit entries unless a request asks for fewer
// or more, never more than MaxListLimit (the reply must stay well inside
// MaxJSONReply); depth at most MaxListDepth.
const (
	DefaultListLimit = 10000
	MaxListLimit     = 50000
	MaxListDepth     = 64
)

// CodeRateLimited answers a request over a per-sandbox bound (429).
const CodeRateLimited = "rate_limited"
