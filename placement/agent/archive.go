package agent

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	fi, err := os.Stat(p)
	if err != nil {
		s.writeError(w, fmt.Errorf("archive: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	tw := tar.NewWriter(w)
	if fi.IsDir() {
		err = writeTree(tw, p)
	} else {
		err = writeEntry(tw, p, filepath.Base(p), fi)
	}
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		// The status is sent; breaking the connection is the only way left
		// to tell the client its tar is incomplete.
		s.log.Warn("agent: archive aborted", "path", p, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// writeTree writes every entry under root with names relative to it.
func writeTree(tw *tar.Writer, root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return writeEntry(tw, p, filepath.ToSlash(rel), fi)
	})
}

// writeEntry writes one file, directory or symlink; other kinds (sockets,
// FIFOs, devices) are skipped: they have no content to carry.
func writeEntry(tw *tar.Writer, p, name string, fi fs.FileInfo) error {
	link := ""
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		l, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("archive %s: %w", p, err)
		}
		link = l
	case fi.Mode().IsRegular(), fi.IsDir():
	default:
		return nil
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("archive %s: %w", p, err)
	}
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archive %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	if err := checkNotHollow(p, hdr.Size); err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("archive %s: %w", p, err)
	}
	defer f.Close()
	// CopyN: a file that grows while archived must not overrun its header.
	if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
		return fmt.Errorf("archive %s: %w", p, err)
	}
	return nil
}

func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	max := s.cfg.MaxArchiveBytes
	if max == 0 {
		// What the disk can hold bounds what a tar may extract to (sparse
		// entries expand beyond their size in the stream).
		if _, total, err := fsSpace(p); err == nil {
			max = total
		} else {
			max = 1 << 40
		}
	}
	if r.ContentLength > max {
		s.writeError(w, &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: fmt.Sprintf("archive of %d bytes over the limit of %d", r.ContentLength, max)})
		return
	}
	if err := checkRoom(p, r.ContentLength); err != nil {
		s.writeError(w, err)
		return
	}
	n, err := extract(p, http.MaxBytesReader(w, r.Body, max), max)
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, UploadResult{Path: p, Files: n})
}

// extract unpacks a tar stream under dst: regular files, directories,
// symlinks and hard links that stay inside dst. An entry that is absolute,
// climbs out with "..", links outside, or would be written through a symlink
// leading outside stops the extraction with 400; entries before it remain.
// Other kinds (devices, FIFOs) are skipped. It returns the number of
// non-directory entries written.
func extract(dst string, r io.Reader, maxBytes int64) (int, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return 0, fmt.Errorf("extract: %w", err)
	}
	root, err := filepath.EvalSymlinks(dst)
	if err != nil {
		return 0, fmt.Errorf("extract: %w", err)
	}
	tr := tar.NewReader(r)
	var files int
	var written int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return files, err
			}
			return files, errBadRequest("read tar: %v", err)
		}
		rel, err := entryName(hdr.Name)
		if err != nil {
			return files, err
		}
		if rel == "." {
			continue
		}
		target := filepath.Join(root, filepath.FromSlash(rel))
		perm := os.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return files, fmt.Errorf("extract %s: %w", rel, err)
			}
			// Owner keeps rwx so the entries that follow can be written.
			if err := os.Chmod(target, perm|0o700); err != nil {
				return files, fmt.Errorf("extract %s: %w", rel, err)
			}
			continue
		case tar.TypeReg, tar.TypeRegA, tar.TypeSymlink, tar.TypeLink:
		default:
			continue
		}
		if err := prepareParent(root, target, rel); err != nil {
			return files, err
		}
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			if path.IsAbs(hdr.Linkname) || escapes(path.Join(path.Dir(rel), hdr.Linkname)) {
				return files, errBadRequest("tar entry %q links outside the target (%q)", hdr.Name, hdr.Linkname)
			}
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return files, fmt.Errorf("extract %s: %w", rel, err)
			}
		case tar.TypeLink:
			src, err := entryName(hdr.Linkname)
			if err != nil {
				return files, errBadRequest("tar entry %q links outside the target (%q)", hdr.Name, hdr.Linkname)
			}
			srcPath := filepath.Join(root, filepath.FromSlash(src))
			if real, err := filepath.EvalSymlinks(srcPath); err != nil || !within(root, real) {
				return files, errBadRequest("tar entry %q links outside the target (%q)", hdr.Name, hdr.Linkname)
			}
			if err := os.Link(srcPath, target); err != nil {
				return files, fmt.Errorf("extract %s: %w", rel, err)
			}
		default:
			n, err := writeEntryFile(target, tr, perm, maxBytes-written)
			written += n
			if err != nil {
				err = noSpace(err, target, n)
				return files, fmt.Errorf("extract %s: %w", rel, err)
			}
		}
		files++
	}
}

// entryName cleans a tar entry name and refuses one that is absolute or
// climbs out of the target.
func entryName(name string) (string, error) {
	if path.IsAbs(name) {
		return "", errBadRequest("tar entry %q is absolute", name)
	}
	clean := path.Clean(name)
	if escapes(clean) {
		return "", errBadRequest("tar entry %q escapes the target directory", name)
	}
	return clean, nil
}

func escapes(clean string) bool {
	clean = path.Clean(clean)
	return clean == ".." || strings.HasPrefix(clean, "../")
}

func within(root, p string) bool {
	return p == root || root == "/" || strings.HasPrefix(p, root+"/")
}

// prepareParent creates target's directory, checks that it resolves inside
// root (an earlier or pre-existing symlink must not carry writes outside),
// and removes whatever non-directory sits at target so it is replaced, not
// written through.
func prepareParent(root, target, rel string) error {
	parent := filepath.Dir(target)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("extract %s: %w", rel, err)
	}
	real, err := filepath.EvalSymlinks(parent)
	if err != nil {
		return fmt.Errorf("extract %s: %w", rel, err)
	}
	if !within(root, real) {
		return errBadRequest("tar entry %q would be written through a symlink outside the target", rel)
	}
	if fi, err := os.Lstat(target); err == nil && !fi.IsDir() {
		if err := os.Remove(target); err != nil {
			return fmt.Errorf("extract %s: %w", rel, err)
		}
	}
	return nil
}

// writeEntryFile writes one regular file, refusing to extract more than
// budget bytes in total (sparse entries expand beyond their size in the
// stream).
func writeEntryFile(target string, r io.Reader, perm os.FileMode, budget int64) (int64, error) {
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_EXCL, perm)
	if err != nil {
		return 0, err
	}
	if err := f.Chmod(perm); err != nil { // exact bits, not masked by umask
		_ = f.Close()
		return 0, err
	}
	n, err := io.CopyN(f, r, budget+1)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	if err == nil && n > budget {
		err = &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: "archive extracts to more than the size limit"}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// hollowCheckFrom is the size from which a file is checked against its
// filesystem: below it a sparse file costs little to send.
const hollowCheckFrom = 64 << 20

// checkNotHollow refuses a file larger than the filesystem it lives on: a
// sparse file (a 1 TB hole on a 512 MB tmpfs) that tar would send as
// terabytes of zeros.
func checkNotHollow(p string, size int64) error {
	if size < hollowCheckFrom {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		return fmt.Errorf("archive %s: %w", p, err)
	}
	if capacity := int64(st.Blocks) * st.Bsize; size > capacity {
		return fmt.Errorf("archive %s: %d bytes on a %d-byte filesystem: a sparse file is not archived", p, size, capacity)
	}
	return nil
}
