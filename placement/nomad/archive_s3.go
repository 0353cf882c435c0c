package nomad

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// S3Config names an S3-compatible bucket (MinIO, AWS S3, Ceph RGW, ...) for
// pause archives. It is used when Endpoint is set.
type S3Config struct {
	// Endpoint is host[:port], without scheme or path (MINIO_ENDPOINT);
	// UseSSL picks https (MINIO_USE_SSL, default false).
	Endpoint string
	UseSSL   bool
	// AccessKey and SecretKey sign every request (MINIO_ACCESS_KEY,
	// MINIO_SECRET_KEY); both are required.
	AccessKey string
	SecretKey string
	// Bucket holds the archives (MINIO_BUCKET, default
	// cloud-sandbox-archives); it is created at start-up when missing and
	// the credentials allow it.
	Bucket string
	// Region of the bucket (MINIO_REGION); empty asks the server.
	Region string
	// Prefix starts every key (MINIO_PREFIX, default none): objects are
	// <Prefix>/<cluster>/<sandbox id>.tar and .json.
	Prefix string
	// CheckTimeout bounds the start-up check (default 10 s).
	CheckTimeout time.Duration
}

// Defaults of S3Config.
const (
	DefaultS3Bucket       = "cloud-sandbox-archives"
	DefaultS3CheckTimeout = 10 * time.Second
)

const (
	// s3PartSize is the multipart part size of a workspace upload, whose
	// length is unknown until the agent's stream ends: one buffer of it per
	// pause in flight. 16 MiB × S3's 10,000 parts is far above any disk.
	s3PartSize = 16 << 20
	// maxRecordBytes bounds what Record reads: a record is a job spec.
	maxRecordBytes = 4 << 20
)

func (c *S3Config) setDefaults() {
	if c.Bucket == "" {
		c.Bucket = DefaultS3Bucket
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = DefaultS3CheckTimeout
	}
	c.Prefix = strings.Trim(c.Prefix, "/")
}

// validate reports every problem with an S3 configuration after defaults,
// naming the variables an operator sets.
func (c S3Config) validate() error {
	c.setDefaults()
	var errs []error
	if strings.Contains(c.Endpoint, "://") || strings.ContainsAny(c.Endpoint, "/?#") {
		errs = append(errs, fmt.Errorf("MINIO_ENDPOINT %q: want host:port without scheme or path (MINIO_USE_SSL=true for https)", c.Endpoint))
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		errs = append(errs, errors.New("MINIO_ACCESS_KEY and MINIO_SECRET_KEY are required with MINIO_ENDPOINT"))
	}
	if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		errs = append(errs, fmt.Errorf("MINIO_BUCKET %q: %w", c.Bucket, err))
	}
	for _, part := range strings.Split(c.Prefix, "/") {
		if c.Prefix != "" && (part == "" || part == "." || part == "..") {
			errs = append(errs, fmt.Errorf("MINIO_PREFIX %q: want slash-separated names, no empty, . or .. parts", c.Prefix))
			break
		}
	}
	if c.CheckTimeout < 0 {
		errs = append(errs, errors.New("S3 check timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// S3Store keeps archives as objects <prefix>/<cluster>/<id>.tar and
// <id>.json in one bucket, which every control node reaches: any of them
// resumes what another paused. The bucket must be private to sandboxd's
// credentials: records hold each sandbox's job, agent secret included.
type S3Store struct {
	c        *minio.Client
	endpoint string
	bucket   string
	dir      string // the key prefix up to and including the cluster
}

var _ ArchiveStore = (*S3Store)(nil)

// NewS3Store connects to cfg's endpoint and checks, bounded by
// cfg.CheckTimeout, that it answers, accepts the credentials and has the
// bucket (creating it when missing and allowed). A wrong endpoint or
// wrong credentials fail here, at start-up, with the variables to check.
func NewS3Store(ctx context.Context, cfg S3Config, cluster string) (*S3Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("s3 archive store: %w", err)
	}
	if err := placement.CheckClusterName(cluster); err != nil {
		return nil, fmt.Errorf("s3 archive store: %w", err)
	}
	client := func(retries int) (*minio.Client, error) {
		return minio.New(cfg.Endpoint, &minio.Options{
			Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
			Secure:     cfg.UseSSL,
			Region:     cfg.Region,
			MaxRetries: retries,
		})
	}
	c, err := client(0) // minio-go's default: a few retries with backoff
	if err != nil {
		return nil, fmt.Errorf("s3 archive store: MINIO_ENDPOINT %q: %w", cfg.Endpoint, err)
	}
	// The start-up check does not retry: a refused connection or a refused
	// signature is the answer, and the operator should see it at once.
	probe, err := client(1)
	if err != nil {
		return nil, fmt.Errorf("s3 archive store: MINIO_ENDPOINT %q: %w", cfg.Endpoint, err)
	}
	s := &S3Store{c: c, endpoint: cfg.Endpoint, bucket: cfg.Bucket, dir: path.Join(cfg.Prefix, cluster)}
	cctx, cancel := context.WithTimeout(ctx, cfg.CheckTimeout)
	defer cancel()
	if err := ensureBucket(cctx, probe, cfg); err != nil {
		return nil, fmt.Errorf("s3 archive store %s: %w", s.Location(), err)
	}
	return s, nil
}

// Location names the store for logs: s3://bucket/prefix/cluster/ at endpoint.
func (s *S3Store) Location() string {
	return fmt.Sprintf("s3://%s/%s/ at %s", s.bucket, s.dir, s.endpoint)
}

func ensureBucket(ctx context.Context, c *minio.Client, cfg S3Config) error {
	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return explainS3(ctx, err, cfg)
	}
	if ok {
		return nil
	}
	err = c.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
	if err == nil {
		return nil
	}
	// Control nodes start together: another one may have created it
	// meanwhile, and servers answer that differently (BucketAlreadyOwnedByYou,
	// BucketAlreadyExists). What counts is that we can reach it now.
	if ok, herr := c.BucketExists(ctx, cfg.Bucket); herr == nil && ok {
		return nil
	}
	return fmt.Errorf("bucket %q (MINIO_BUCKET) does not exist and could not be created: %w", cfg.Bucket, explainS3(ctx, err, cfg))
}

// explainS3 says which variable a start-up failure points at.
func explainS3(ctx context.Context, err error, cfg S3Config) error {
	var er minio.ErrorResponse
	switch {
	case errors.As(err, &er) && er.StatusCode == http.StatusForbidden:
		return fmt.Errorf("credentials refused (check MINIO_ACCESS_KEY and MINIO_SECRET_KEY): %w", err)
	case ctx.Err() != nil:
		return fmt.Errorf("no answer from %s within %s (check MINIO_ENDPOINT and MINIO_USE_SSL): %w", cfg.Endpoint, cfg.CheckTimeout, err)
	case !errors.As(err, &er) || er.StatusCode == 0:
		return fmt.Errorf("cannot reach %s (check MINIO_ENDPOINT and MINIO_USE_SSL): %w", cfg.Endpoint, err)
	}
	return err
}

func s3Code(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return ""
}

func (s *S3Store) keys(id string) (tarKey, recKey string) {
	return path.Join(s.dir, id+".tar"), path.Join(s.dir, id+".json")
}

// Put uploads the tar, then the record. A tar that fits in one part is
// read whole first and sent in one PUT; a larger one streams as a
// multipart upload, which the client aborts on failure. Either way a
// failed tar upload leaves no object, and a failed record upload removes
// the tar.
func (s *S3Store) Put(ctx context.Context, sandboxID string, tarStream io.Reader, record []byte) error {
	if err := checkArchiveID(sandboxID); err != nil {
		return err
	}
	tarKey, recKey := s.keys(sandboxID)
	var head bytes.Buffer
	n, err := io.CopyN(&head, tarStream, s3PartSize)
	switch {
	case errors.Is(err, io.EOF):
		// A seekable reader lets the client retry the PUT.
		_, err = s.c.PutObject(ctx, s.bucket, tarKey, bytes.NewReader(head.Bytes()), n,
			minio.PutObjectOptions{ContentType: "application/x-tar"})
	case err == nil:
		_, err = s.c.PutObject(ctx, s.bucket, tarKey, io.MultiReader(&head, tarStream), -1,
			minio.PutObjectOptions{ContentType: "application/x-tar", PartSize: s3PartSize})
	}
	if err != nil {
		return fmt.Errorf("archive %s: upload %s: %w", sandboxID, tarKey, err)
	}
	_, err = s.c.PutObject(ctx, s.bucket, recKey, bytes.NewReader(record), int64(len(record)),
		minio.PutObjectOptions{ContentType: "application/json"})
	if err != nil {
		// The caller's context may be what failed: the cleanup gets its own.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := s.c.RemoveObject(cctx, s.bucket, tarKey, minio.RemoveObjectOptions{}); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove %s: %w", tarKey, rerr))
		}
		return fmt.Errorf("archive %s: upload %s: %w", sandboxID, recKey, err)
	}
	return nil
}

// Record reads the record object.
func (s *S3Store) Record(ctx context.Context, sandboxID string) ([]byte, error) {
	if err := checkArchiveID(sandboxID); err != nil {
		return nil, err
	}
	_, recKey := s.keys(sandboxID)
	obj, err := s.c.GetObject(ctx, s.bucket, recKey, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.readErr(sandboxID, recKey, err)
	}
	defer obj.Close()
	raw, err := io.ReadAll(io.LimitReader(obj, maxRecordBytes+1))
	if err != nil {
		return nil, s.readErr(sandboxID, recKey, err)
	}
	if len(raw) > maxRecordBytes {
		return nil, fmt.Errorf("archive %s: %s is larger than %d bytes", sandboxID, recKey, maxRecordBytes)
	}
	return raw, nil
}

// OpenTar opens the tar object after checking that it is there.
func (s *S3Store) OpenTar(ctx context.Context, sandboxID string) (io.ReadCloser, error) {
	if err := checkArchiveID(sandboxID); err != nil {
		return nil, err
	}
	tarKey, _ := s.keys(sandboxID)
	obj, err := s.c.GetObject(ctx, s.bucket, tarKey, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.readErr(sandboxID, tarKey, err)
	}
	// GetObject is lazy: Stat makes a missing object an error now.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, s.readErr(sandboxID, tarKey, err)
	}
	return obj, nil
}

func (s *S3Store) readErr(id, key string, err error) error {
	if s3Code(err) == "NoSuchKey" {
		return fmt.Errorf("archive %s: %s: %w", id, key, ErrNoArchive)
	}
	return fmt.Errorf("archive %s: read %s: %w", id, key, err)
}

// Delete removes the record, then the tar; S3 deletes of missing keys
// succeed.
func (s *S3Store) Delete(ctx context.Context, sandboxID string) error {
	if err := checkArchiveID(sandboxID); err != nil {
		return err
	}
	tarKey, recKey := s.keys(sandboxID)
	for _, k := range []string{recKey, tarKey} {
		if err := s.c.RemoveObject(ctx, s.bucket, k, minio.RemoveObjectOptions{}); err != nil && s3Code(err) != "NoSuchKey" {
			return fmt.Errorf("delete archive %s: %s: %w", sandboxID, k, err)
		}
	}
	return nil
}

// List returns the ids with a record object under this cluster's prefix.
func (s *S3Store) List(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx) // stops the lister on an early return
	defer cancel()
	var ids []string
	for obj := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.dir + "/"}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list archives in s3://%s/%s/: %w", s.bucket, s.dir, obj.Err)
		}
		name := strings.TrimPrefix(obj.Key, s.dir+"/")
		if id, ok := strings.CutSuffix(name, ".json"); ok && checkArchiveID(id) == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
