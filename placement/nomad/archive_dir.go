package nomad

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DirStore keeps archives as <dir>/<id>.tar and <dir>/<id>.json on this
// control node's disk: the single-node development store. Every file is
// written to a temporary name, fsynced and renamed, and the directory
// fsynced, so a crash leaves either the old state or the new one.
type DirStore struct {
	dir string
}

var _ ArchiveStore = (*DirStore)(nil)

// NewDirStore keeps archives in dir, created on the first Put.
func NewDirStore(dir string) *DirStore { return &DirStore{dir: dir} }

func (s *DirStore) paths(id string) (tarPath, recPath string) {
	return filepath.Join(s.dir, id+".tar"), filepath.Join(s.dir, id+".json")
}

// Put writes the tar, then the record.
func (s *DirStore) Put(_ context.Context, sandboxID string, tarStream io.Reader, record []byte) error {
	if err := checkArchiveID(sandboxID); err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("archive %s: %w", sandboxID, err)
	}
	tarPath, recPath := s.paths(sandboxID)
	if err := writeFileSync(tarPath, tarStream); err != nil {
		os.Remove(tarPath) // renamed before a failed directory sync
		return fmt.Errorf("archive %s: %w", sandboxID, err)
	}
	if err := writeFileSync(recPath, bytes.NewReader(record)); err != nil {
		os.Remove(tarPath)
		return fmt.Errorf("archive %s: %w", sandboxID, err)
	}
	return nil
}

// Record reads <id>.json.
func (s *DirStore) Record(_ context.Context, sandboxID string) ([]byte, error) {
	if err := checkArchiveID(sandboxID); err != nil {
		return nil, err
	}
	_, recPath := s.paths(sandboxID)
	raw, err := os.ReadFile(recPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("archive %s: %w", sandboxID, ErrNoArchive)
	}
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", sandboxID, err)
	}
	return raw, nil
}

// OpenTar opens <id>.tar.
func (s *DirStore) OpenTar(_ context.Context, sandboxID string) (io.ReadCloser, error) {
	if err := checkArchiveID(sandboxID); err != nil {
		return nil, err
	}
	tarPath, _ := s.paths(sandboxID)
	f, err := os.Open(tarPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("archive %s: %w", sandboxID, ErrNoArchive)
	}
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", sandboxID, err)
	}
	return f, nil
}

// Delete removes the record, the tar and any temporary leftover.
func (s *DirStore) Delete(_ context.Context, sandboxID string) error {
	if err := checkArchiveID(sandboxID); err != nil {
		return err
	}
	tarPath, recPath := s.paths(sandboxID)
	for _, p := range []string{recPath, tarPath, recPath + ".tmp", tarPath + ".tmp"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete archive %s: %w", sandboxID, err)
		}
	}
	return nil
}

// List returns the ids with a <id>.json; a missing directory is empty.
func (s *DirStore) List(_ context.Context) ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list archives in %s: %w", s.dir, err)
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && checkArchiveID(id) == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// writeFileSync writes path through path.tmp: copy, fsync, rename, then an
// fsync of the directory so that the rename itself survives a crash. On
// error the temporary file is removed and path is untouched.
func writeFileSync(path string, r io.Reader) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
