package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// handleStat describes one entry without following it.
func (s *Server) handleStat(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	fi, err := os.Lstat(p)
	if errors.Is(err, syscall.ENOTDIR) {
		// A file where a directory should be: nothing is at p (exists: false).
		err = &os.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
	}
	if err != nil {
		s.writeError(w, fmt.Errorf("stat: %w", err))
		return
	}
	s.writeJSON(w, http.StatusOK, describe(p, fi))
}

// describe is fileInfo plus a symlink's target.
func describe(p string, fi fs.FileInfo) FileInfo {
	info := fileInfo(p, fi)
	if fi.Mode()&fs.ModeSymlink != 0 {
		if target, err := os.Readlink(p); err == nil {
			info.SymlinkTarget = target
		}
	}
	return info
}

// handleRename moves an entry within the writable roots (see confine.go).
func (s *Server) handleRename(w http.ResponseWriter, r *http.Request) {
	var req RenameRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		s.writeError(w, errBadRequest("rename body: %v", err))
		return
	}
	from, err := cleanPath(req.From)
	if err != nil {
		s.writeError(w, err)
		return
	}
	to, err := cleanPath(req.To)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if err := renameBeneath(from, to, s.cfg.WriteRoots); err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, RenameResult{From: from, To: to})
}

// handleWalk lists the entries below a path down to depth levels (1: the
// directory's own entries), breadth first so that a truncated listing
// holds every shallow entry before any deep one. Symlinks are listed, never
// descended into: a link to / must not turn a listing into a crawl.
func (s *Server) handleWalk(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	q := r.URL.Query()
	depth, err := boundedInt(q.Get("depth"), 1, 1, MaxListDepth, "depth")
	if err != nil {
		s.writeError(w, err)
		return
	}
	limit, err := boundedInt(q.Get("limit"), DefaultListLimit, 1, MaxListLimit, "limit")
	if err != nil {
		s.writeError(w, err)
		return
	}
	res, err := walk(p, depth, limit)
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, res)
}

func boundedInt(raw string, def, lo, hi int, name string) (int, error) {
	if raw == "" {
		return def, nil
	}
	v, err := strconv.Atoi(raw)
	if err != nil || v < lo || v > hi {
		return 0, errUnprocessable("%s must be an integer from %d to %d, got %q", name, lo, hi, raw)
	}
	return v, nil
}

// walk lists p as listPath does at depth 1 (a symlink to a directory is
// followed at the top only), then goes deeper level by level.
func walk(p string, depth, limit int) (*ListResult, error) {
	top, err := listPath(p)
	if err != nil {
		return nil, err
	}
	res := &ListResult{Path: p, Entries: make([]FileInfo, 0, min(len(top), limit))}
	level := top
	for d := 1; ; d++ {
		var dirs []string
		for _, e := range level {
			if len(res.Entries) == limit {
				res.Truncated = true
				return res, nil
			}
			res.Entries = append(res.Entries, e)
			if e.Type == FileTypeDir && e.Path != p {
				dirs = append(dirs, e.Path)
			}
		}
		if d == depth || len(dirs) == 0 {
			return res, nil
		}
		level = level[:0:0]
		for _, dir := range dirs {
			entries, err := os.ReadDir(dir)
			if err != nil {
				continue // removed or unreadable since listed: list what is left
			}
			for _, de := range entries {
				fi, err := de.Info()
				if err != nil {
					continue
				}
				level = append(level, describe(filepath.Join(dir, de.Name()), fi))
			}
			if len(res.Entries)+len(level) > limit {
				break // the next level cannot fit anyway; stop reading
			}
		}
	}
}
