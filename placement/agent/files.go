package agent

import (
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cleanPath accepts an absolute path without ".." segments and cleans it.
func cleanPath(raw string) (string, error) {
	switch {
	case raw == "":
		return "", errBadRequest("path is required")
	case !strings.HasPrefix(raw, "/"):
		return "", errBadRequest("path %q is not absolute", raw)
	case strings.IndexByte(raw, 0) >= 0:
		return "", errBadRequest("path contains a NUL byte")
	}
	for _, seg := range strings.Split(raw, "/") {
		if seg == ".." {
			return "", errBadRequest("path %q contains a .. segment", raw)
		}
	}
	return filepath.Clean(raw), nil
}

func queryPath(r *http.Request) (string, error) {
	return cleanPath(r.URL.Query().Get("path"))
}

func (s *Server) handleReadFile(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	// Stat first: opening a FIFO would block until a writer appears.
	fi, err := os.Stat(p)
	if err != nil {
		s.writeError(w, fmt.Errorf("read file: %w", err))
		return
	}
	if fi.IsDir() {
		s.writeError(w, errBadRequest("%s is a directory", p))
		return
	}
	if !fi.Mode().IsRegular() {
		s.writeError(w, errBadRequest("%s is not a regular file", p))
		return
	}
	f, err := os.Open(p)
	if err != nil {
		s.writeError(w, fmt.Errorf("read file: %w", err))
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, f); err != nil {
		s.log.Debug("agent: read file interrupted", "path", p, "err", err)
	}
}

func (s *Server) handleWriteFile(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	mode := os.FileMode(0o644)
	if m := r.URL.Query().Get("mode"); m != "" {
		v, err := strconv.ParseUint(m, 8, 32)
		if err != nil || v > 0o777 {
			s.writeError(w, errBadRequest("mode %q is not octal permission bits (e.g. 0644)", m))
			return
		}
		mode = os.FileMode(v)
	}
	body := io.Reader(r.Body)
	if max := s.cfg.MaxFileBytes; max > 0 {
		if r.ContentLength > max {
			s.writeError(w, &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: fmt.Sprintf("file of %d bytes over the limit of %d", r.ContentLength, max)})
			return
		}
		body = http.MaxBytesReader(w, r.Body, max)
	}
	if err := checkRoom(filepath.Dir(p), r.ContentLength); err != nil {
		s.writeError(w, err)
		return
	}
	n, err := writeFileAtomic(p, body, mode)
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, WriteResult{Path: p, Size: n})
}

// writeFileAtomic writes r to a temp file beside path and renames it into
// place, so a reader never sees half a file and a failed upload leaves the
// old content.
func writeFileAtomic(path string, r io.Reader, mode os.FileMode) (int64, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return 0, errBadRequest("%s is a directory", path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("write file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".sandbox-upload-*")
	if err != nil {
		return 0, fmt.Errorf("write file: %w", err)
	}
	n, err := io.Copy(tmp, r)
	err = noSpace(err, path, n)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return 0, fmt.Errorf("write file %s: %w", path, noSpace(err, path, n))
	}
	return n, nil
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	out, err := listPath(p)
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, out)
}

// listPath lists a directory (following a symlink to one), or describes the
// single file p names.
func listPath(p string) ([]FileInfo, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	isDir := fi.IsDir()
	if fi.Mode()&fs.ModeSymlink != 0 {
		if target, err := os.Stat(p); err == nil && target.IsDir() {
			isDir = true
		}
	}
	if !isDir {
		return []FileInfo{fileInfo(p, fi)}, nil
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	out := make([]FileInfo, 0, len(entries))
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		out = append(out, fileInfo(filepath.Join(p, e.Name()), info))
	}
	return out, nil
}

func fileInfo(p string, fi fs.FileInfo) FileInfo {
	typ := FileTypeOther
	switch m := fi.Mode(); {
	case m.IsRegular():
		typ = FileTypeFile
	case m.IsDir():
		typ = FileTypeDir
	case m&fs.ModeSymlink != 0:
		typ = FileTypeSymlink
	}
	return FileInfo{
		Name:       filepath.Base(p),
		Path:       p,
		Size:       fi.Size(),
		Type:       typ,
		Mode:       fmt.Sprintf("%04o", fi.Mode().Perm()),
		ModifiedAt: fi.ModTime().UTC(),
	}
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	recursive, _ := strconv.ParseBool(r.URL.Query().Get("recursive"))
	if p == "/" {
		s.writeError(w, errBadRequest("refusing to delete /"))
		return
	}
	fi, err := os.Lstat(p)
	if err != nil {
		s.writeError(w, fmt.Errorf("delete: %w", err))
		return
	}
	if fi.IsDir() && recursive {
		err = os.RemoveAll(p)
	} else {
		err = os.Remove(p)
	}
	if err != nil {
		if fi.IsDir() && !recursive {
			err = fmt.Errorf("delete %s (a non-empty directory needs recursive=true): %w", p, err)
		}
		s.writeError(w, fmt.Errorf("delete: %w", err))
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]any{"path": p, "deleted": true})
}

func (s *Server) handleMkdir(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		s.writeError(w, fmt.Errorf("mkdir: %w", err))
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]string{"path": p})
}
