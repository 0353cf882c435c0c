package nomad

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// ArchiveStore keeps what a paused sandbox needs to come back: the tar of
// its /workspace and a small record (the job, where it ran). The record is
// written last and removed first, so its presence alone means "paused":
// a tar without a record is the leftover of an interrupted Pause or Delete
// and is never listed. Two stores exist: DirStore (a local directory, for a
// single control node) and S3Store (S3-compatible object storage, which
// every control node reaches, so any of them can resume what another one
// paused).
type ArchiveStore interface {
	// Put stores the tar read from tarStream, then the record. On any
	// error (including one returned by tarStream) nothing of this Put is
	// left behind.
	Put(ctx context.Context, sandboxID string, tarStream io.Reader, record []byte) error
	// Record returns the pause record; an error wrapping ErrNoArchive
	// (itself an fs.ErrNotExist) when the sandbox is not paused here.
	Record(ctx context.Context, sandboxID string) ([]byte, error)
	// OpenTar opens the workspace tar; ErrNoArchive when there is none.
	OpenTar(ctx context.Context, sandboxID string) (io.ReadCloser, error)
	// Delete removes the record, then the tar. Deleting what is not there
	// succeeds.
	Delete(ctx context.Context, sandboxID string) error
	// List returns the ids of the sandboxes with a record, in no order.
	List(ctx context.Context) ([]string, error)
}

// Archive errors a caller may branch on.
var (
	// ErrNoArchive means a sandbox has no pause record: it is not paused
	// (or was paused into another store). errors.Is(err, fs.ErrNotExist)
	// holds for it as well.
	ErrNoArchive = fmt.Errorf("no pause archive: %w", fs.ErrNotExist)
	// ErrNoArchiveStore means the driver was built with neither ArchiveDir
	// nor S3, so it cannot pause. ConfigFromEnv refuses that configuration;
	// only a driver built directly with New can get here.
	ErrNoArchiveStore = errors.New("no archive store for paused sandboxes")
)

// ArchiveTooLargeError is a workspace tar that grew past what the sandbox's
// disk limit allows: the agent sent more than the /workspace tmpfs can
// hold, so the archive is refused rather than stored unbounded. The
// sandbox keeps running; nothing was stored.
type ArchiveTooLargeError struct {
	SandboxID string
	// DiskMB is the sandbox's /workspace size; Limit the bytes allowed,
	// DiskMB plus the tar overhead margin.
	DiskMB int64
	Limit  int64
}

func (e *ArchiveTooLargeError) Error() string {
	return fmt.Sprintf("workspace archive of sandbox %s exceeds %d bytes (disk limit %d MB plus tar overhead)",
		e.SandboxID, e.Limit, e.DiskMB)
}

// Is makes the error a placement.ErrPauseRefused: retrying cannot shrink
// the workspace.
func (e *ArchiveTooLargeError) Is(target error) bool { return target == placement.ErrPauseRefused }

// archiveLimit is the most bytes a workspace tar may have for a /workspace
// of diskMB: the data itself plus tar's overhead, one 512-byte header (and
// padding up to the next 512 bytes) per entry. Files on tmpfs take at
// least a 4 KiB page each, so the overhead of files is well inside an
// eighth; the eighth and the fixed MiB leave room for directories, empty
// files and long names, which take no pages but do take headers.
func archiveLimit(diskMB int64) int64 {
	disk := diskMB << 20
	return disk + disk/8 + 1<<20
}

// boundedReader fails with an *ArchiveTooLargeError once more than limit
// bytes have come through; the bytes of the read that crossed the limit
// are dropped. err keeps the failure, whatever a consumer wraps it in.
type boundedReader struct {
	r     io.Reader
	n     int64
	limit int64
	err   *ArchiveTooLargeError
	id    string
	disk  int64
}

func newBoundedReader(r io.Reader, sandboxID string, diskMB int64) *boundedReader {
	return &boundedReader{r: r, limit: archiveLimit(diskMB), id: sandboxID, disk: diskMB}
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > b.limit {
		b.err = &ArchiveTooLargeError{SandboxID: b.id, DiskMB: b.disk, Limit: b.limit}
		return 0, b.err
	}
	return n, err
}

// newArchiveStore builds the store cfg names: S3 when its endpoint is set
// (checked now: reachable, credentials accepted, bucket there or created),
// else the directory, else none (Pause then refuses with ErrNoArchiveStore).
func newArchiveStore(cfg Config) (ArchiveStore, error) {
	switch {
	case cfg.S3.Endpoint != "":
		s, err := NewS3Store(context.Background(), cfg.S3, cfg.Cluster)
		if err != nil {
			return nil, err
		}
		cfg.Logger.Info("pause archives in object storage", "component", "placement.nomad", "store", s.Location())
		return s, nil
	case cfg.ArchiveDir != "":
		cfg.Logger.Info("pause archives on this node's disk", "component", "placement.nomad", "store", cfg.ArchiveDir)
		return NewDirStore(cfg.ArchiveDir), nil
	}
	cfg.Logger.Warn("no pause archive store: sandboxes cannot be paused", "component", "placement.nomad")
	return nil, nil
}

// checkArchiveID keeps an id that is not a sandbox id out of file names
// and object keys (no "..", no "/").
func checkArchiveID(id string) error {
	if err := placement.CheckID(id); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}
