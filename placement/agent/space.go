package agent

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
)

// A sandbox's disk is a tmpfs of the size it was created with; that size,
// not a number of the agent's, is what bounds an upload. An upload that
// says its length up front and cannot fit is refused before a byte is
// written; one that fills the disk while streaming fails with ENOSPC. Both
// answer 413 with a message that says so.

// fsSpace reports the free and total bytes of the file system holding p,
// or of its nearest existing ancestor.
func fsSpace(p string) (free, total int64, err error) {
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(p, &st)
		if err == nil {
			return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
		}
		parent := filepath.Dir(p)
		if !errors.Is(err, syscall.ENOENT) || parent == p {
			return 0, 0, &os.PathError{Op: "statfs", Path: p, Err: err}
		}
		p = parent
	}
}

// checkRoom refuses a body of declared length n (negative: unknown) that
// cannot fit in dir's file system.
func checkRoom(dir string, n int64) error {
	if n <= 0 {
		return nil
	}
	free, _, err := fsSpace(dir)
	if err != nil {
		return nil // let the write itself say what is wrong
	}
	if n > free {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
			Message: fmt.Sprintf("no space: %d bytes to write, %d free on the disk holding %s", n, free, dir)}
	}
	return nil
}

// noSpace turns ENOSPC while writing path into a 413 that says what
// happened; other errors pass unchanged.
func noSpace(err error, path string, written int64) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
			Message: fmt.Sprintf("no space left on the sandbox's disk writing %s (after %d bytes); nothing was replaced", path, written)}
	}
	return err
}
