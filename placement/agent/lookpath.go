package agent

import (
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Resolving a command name costs a stat per PATH directory, and on Docker
// with the fuse-overlayfs storage driver every stat of the image's files is
// a round trip to a FUSE daemon: "true" alone cost three failed lookups
// (/usr/local/sbin, /usr/local/bin, /usr/sbin) before /usr/bin, a few
// hundred µs of each exec. A sandbox's root file system is read-only, so
// where every directory searched is read-only, the answer cannot change and
// is remembered. A writable directory on the way (/workspace/bin, or any
// directory in tests) is searched every time, as before.

// maxCachedPaths bounds the remembered resolutions; the cache starts over
// when it is full (a sandbox runs a handful of distinct commands).
const maxCachedPaths = 1024

type pathCache struct {
	mu       sync.Mutex
	resolved map[string]string // file NUL PATH → absolute path
	readOnly map[string]bool   // directory → on a read-only mount
}

var execPaths = &pathCache{resolved: map[string]string{}, readOnly: map[string]bool{}}

// lookPath finds an executable in the exec's own PATH, not the agent's.
func lookPath(file, pathEnv, cwd string) (string, bool) {
	key := file + "\x00" + pathEnv
	execPaths.mu.Lock()
	p, ok := execPaths.resolved[key]
	execPaths.mu.Unlock()
	if ok {
		return p, true
	}
	cacheable := true
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		if !filepath.IsAbs(dir) {
			cacheable = false // depends on cwd
		} else if cacheable && !execPaths.isReadOnly(dir) {
			cacheable = false
		}
		p := filepath.Join(dir, file)
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			if cacheable && !strings.Contains(file, "/") {
				execPaths.remember(key, p)
			}
			return p, true
		}
	}
	return "", false
}

// isReadOnly reports whether dir is on a read-only mount; a directory that
// does not exist counts as not read-only (it may be created later).
func (c *pathCache) isReadOnly(dir string) bool {
	c.mu.Lock()
	ro, ok := c.readOnly[dir]
	c.mu.Unlock()
	if ok {
		return ro
	}
	var st unix.Statfs_t
	ro = unix.Statfs(dir, &st) == nil && st.Flags&unix.ST_RDONLY != 0
	c.mu.Lock()
	if len(c.readOnly) >= maxCachedPaths {
		clear(c.readOnly)
	}
	c.readOnly[dir] = ro
	c.mu.Unlock()
	return ro
}

func (c *pathCache) remember(key, path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.resolved) >= maxCachedPaths {
		clear(c.resolved)
	}
	c.resolved[key] = path
}
