package agent

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The operations that move entries (rename) must not reach outside the
// sandbox's writable roots, neither by naming a path outside them nor
// through a symlink inside them that points out. They resolve each parent
// directory with openat2(RESOLVE_BENEATH) from the root the path names, so
// the check and the use are one step: code in the sandbox swapping a
// directory for a symlink between a check and a rename cannot win a race.

// errOutsideRoots refuses a path that is not beneath a writable root.
func errOutsideRoots(p string, roots []string) *Error {
	return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
		Message: fmt.Sprintf("%s is outside the writable roots %s", p, strings.Join(roots, ", "))}
}

// rootOf returns the writable root that lexically contains p, and p
// relative to it ("." for the root itself).
func rootOf(p string, roots []string) (root, rel string, ok bool) {
	for _, r := range roots {
		if p == r {
			return r, ".", true
		}
		if strings.HasPrefix(p, r+"/") {
			return r, p[len(r)+1:], true
		}
	}
	return "", "", false
}

// beneath is an open parent directory and the last element of a path in it.
type beneath struct {
	dirfd int
	base  string
}

func (b beneath) close() { _ = unix.Close(b.dirfd) }

// openParentBeneath opens p's parent directory, resolved strictly beneath
// the writable root that contains p. p itself is not resolved: a rename
// moves a symlink, never what it points at.
func openParentBeneath(p string, roots []string) (beneath, error) {
	root, rel, ok := rootOf(p, roots)
	if !ok {
		return beneath{}, errOutsideRoots(p, roots)
	}
	if rel == "." {
		return beneath{}, &Error{Status: http.StatusForbidden, Code: CodeForbidden,
			Message: fmt.Sprintf("%s is a writable root; it cannot be moved or replaced", p)}
	}
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return beneath{}, fmt.Errorf("open root %s: %w", root, err)
	}
	defer unix.Close(rootfd)
	parent := filepath.Dir(rel)
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(rootfd, parent, how)
	switch {
	case errors.Is(err, unix.ENOSYS):
		// Kernels before 5.6 and some user-space kernels: resolve and check
		// instead (racy against the sandbox, but never silently outside).
		return openParentChecked(root, filepath.Join(root, parent), filepath.Base(rel), p, roots)
	case errors.Is(err, unix.EXDEV):
		return beneath{}, &Error{Status: http.StatusForbidden, Code: CodeForbidden,
			Message: fmt.Sprintf("%s: a symlink on the way leads outside %s", p, root)}
	case err != nil:
		return beneath{}, &os.PathError{Op: "open", Path: filepath.Join(root, parent), Err: err}
	}
	return beneath{dirfd: fd, base: filepath.Base(rel)}, nil
}

func openParentChecked(root, parent, base, p string, roots []string) (beneath, error) {
	real, err := filepath.EvalSymlinks(parent)
	if err != nil {
		return beneath{}, fmt.Errorf("resolve %s: %w", parent, err)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return beneath{}, fmt.Errorf("resolve %s: %w", root, err)
	}
	if !within(realRoot, real) {
		return beneath{}, &Error{Status: http.StatusForbidden, Code: CodeForbidden,
			Message: fmt.Sprintf("%s: a symlink on the way leads outside %s", p, root)}
	}
	fd, err := unix.Open(real, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return beneath{}, fmt.Errorf("open %s: %w", real, err)
	}
	return beneath{dirfd: fd, base: base}, nil
}

// renameBeneath moves from to to, both confined to the writable roots.
// Moving between two roots (different file systems) is refused with 409:
// rename(2) cannot, and a copy would not be atomic.
func renameBeneath(from, to string, roots []string) error {
	src, err := openParentBeneath(from, roots)
	if err != nil {
		return err
	}
	defer src.close()
	dst, err := openParentBeneath(to, roots)
	if err != nil {
		return err
	}
	defer dst.close()
	err = unix.Renameat(src.dirfd, src.base, dst.dirfd, dst.base)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EXDEV):
		return &Error{Status: http.StatusConflict, Code: CodeConflict,
			Message: fmt.Sprintf("rename %s to %s: they are on different file systems", from, to)}
	case errors.Is(err, unix.EINVAL):
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest,
			Message: fmt.Sprintf("rename %s to %s: cannot move a directory into itself", from, to)}
	}
	return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
}
