package agent

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
)

// ServerConfig configures a Server. Zero values take the defaults below.
type ServerConfig struct {
	// Workdir is the default exec directory and HOME (default /workspace).
	Workdir string
	// TempDir holds code files too large for an argv (default /tmp).
	TempDir string
	// Secret, when set, is required as "Authorization: Bearer <secret>" on
	// every route but /health (TCP mode). Empty on a unix socket, where the
	// socket directory's permissions are the access control.
	Secret string
	// Env is laid over the base environment (PATH, HOME, LANG,
	// PYTHONUNBUFFERED) of every exec; a request's Env is laid over this.
	Env map[string]string
	// DefaultTimeout applies when a request has none (default 30 s);
	// MaxTimeout bounds what a request may ask (default 1 h).
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	// DefaultMaxOutput caps each output stream when a request has no cap
	// (default 1 MiB); MaxOutputLimit bounds what a request may ask (64 MiB).
	DefaultMaxOutput int64
	MaxOutputLimit   int64
	// MaxRequestBytes bounds an exec request's JSON (default 16 MiB).
	MaxRequestBytes int64
	// MaxFileBytes bounds one PUT /files body; MaxArchiveBytes bounds a
	// PUT /files/archive body and the bytes it extracts. Zero (the default)
	// leaves the bound to the file system written to: a body larger than
	// its free space is refused at once (413), and one that fills it while
	// streaming ends in ENOSPC (413) with the old content kept.
	MaxFileBytes    int64
	MaxArchiveBytes int64
	// WriteRoots are the directories rename may move entries within
	// (default: Workdir, TempDir and /dev/shm, the sandbox's size-limited
	// mounts; the write containment's paths when it has its own).
	WriteRoots []string
	// MaxWatchStreams bounds concurrent GET /files/watch streams
	// (default DefaultMaxWatchStreams); MaxWatchDirs the directories one
	// recursive stream watches (default DefaultMaxWatchDirs).
	MaxWatchStreams int
	MaxWatchDirs    int
	// ReapAll makes the server wait for every child of this process, not
	// only the ones it started: set it when running as PID 1 or as a child
	// subreaper, never when sharing the process with other code that starts
	// children (tests, an embedding program).
	ReapAll bool
	// DisablePythonZygote runs every python exec as a cold "python3 -c"
	// instead of forking it from a warm Python server (a fork costs ~1-2 ms,
	// a cold start ~15 ms; what the code sees is the same either way).
	DisablePythonZygote bool
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.Workdir == "" {
		c.Workdir = "/workspace"
	}
	if c.TempDir == "" {
		c.TempDir = "/tmp"
	}
	if c.DefaultTimeout == 0 {
		c.DefaultTimeout = 30 * time.Second
	}
	if c.MaxTimeout == 0 {
		c.MaxTimeout = time.Hour
	}
	if c.DefaultMaxOutput == 0 {
		c.DefaultMaxOutput = 1 << 20
	}
	if c.MaxOutputLimit == 0 {
		c.MaxOutputLimit = 64 << 20
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = 16 << 20
	}
	if len(c.WriteRoots) == 0 {
		c.WriteRoots = []string{c.Workdir, c.TempDir, "/dev/shm"}
	}
	if c.MaxWatchStreams == 0 {
		c.MaxWatchStreams = DefaultMaxWatchStreams
	}
	if c.MaxWatchDirs == 0 {
		c.MaxWatchDirs = DefaultMaxWatchDirs
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports a configuration the server cannot run with.
func (c ServerConfig) Validate() error {
	c = c.withDefaults()
	if !filepath.IsAbs(c.Workdir) {
		return fmt.Errorf("agent config: workdir %q is not absolute", c.Workdir)
	}
	if !filepath.IsAbs(c.TempDir) {
		return fmt.Errorf("agent config: temp dir %q is not absolute", c.TempDir)
	}
	if c.DefaultTimeout < 0 || c.MaxTimeout < c.DefaultTimeout {
		return fmt.Errorf("agent config: timeouts default %s, max %s: want 0 < default <= max", c.DefaultTimeout, c.MaxTimeout)
	}
	if c.DefaultMaxOutput < 0 || c.MaxOutputLimit < c.DefaultMaxOutput {
		return fmt.Errorf("agent config: output caps default %d, max %d: want 0 < default <= max", c.DefaultMaxOutput, c.MaxOutputLimit)
	}
	if c.MaxRequestBytes < 0 || c.MaxFileBytes < 0 || c.MaxArchiveBytes < 0 || c.MaxWatchStreams < 0 || c.MaxWatchDirs < 0 {
		return fmt.Errorf("agent config: negative limit")
	}
	for _, r := range c.WriteRoots {
		if !filepath.IsAbs(r) || filepath.Clean(r) != r || r == "/" {
			return fmt.Errorf("agent config: write root %q is not a clean absolute path other than /", r)
		}
	}
	return nil
}
