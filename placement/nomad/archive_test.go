package nomad

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/s3mem"
)

// The S3 side of these tests runs against gofakes3 (rclone's maintained
// fork, which verifies AWS signature v4) with its in-memory backend,
// served by httptest on loopback: a real S3 implementation, not a fake of
// the API written here.

const (
	testAccessKey = "test-access"
	testSecretKey = "test-secret-key-0123456789"
	testBucket    = "archives-test"
)

// s3Server is one S3 endpoint on loopback and a client to inspect it.
type s3Server struct {
	endpoint string
	raw      *minio.Client
}

func newS3Server(t *testing.T) *s3Server { return newS3ServerWrapped(t, nil) }

// newS3ServerWrapped lets a test act on the backend around requests (as
// another client would), e.g. to lose a race.
func newS3ServerWrapped(t *testing.T, wrap func(b *s3mem.Backend, h http.Handler) http.Handler) *s3Server {
	t.Helper()
	backend := s3mem.New()
	var h http.Handler = gofakes3.New(backend, gofakes3.WithV4Auth(map[string]string{testAccessKey: testSecretKey})).Server()
	if wrap != nil {
		h = wrap(backend, h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	endpoint := strings.TrimPrefix(srv.URL, "http://")
	raw, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(testAccessKey, testSecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return &s3Server{endpoint: endpoint, raw: raw}
}

func (s *s3Server) config() S3Config {
	return S3Config{Endpoint: s.endpoint, AccessKey: testAccessKey, SecretKey: testSecretKey,
		Bucket: testBucket, Prefix: "archives/v1", CheckTimeout: 5 * time.Second}
}

// keys lists every object in the bucket and every multipart upload not
// completed: what a failed Put must not leave.
func (s *s3Server) keys(t *testing.T) []string {
	t.Helper()
	ctx := ctxT(t)
	var out []string
	// gofakes3 lists reliably within one folder (a prefix ending in the
	// delimiter), so look in the one the store writes to, objects and
	// multipart uploads alike.
	for o := range s.raw.ListObjects(ctx, testBucket, minio.ListObjectsOptions{Prefix: "archives/v1/test/"}) {
		if o.Err != nil {
			t.Fatalf("list objects: %v", o.Err)
		}
		out = append(out, o.Key)
	}
	core := &minio.Core{Client: s.raw}
	res, err := core.ListMultipartUploads(ctx, testBucket, "archives/v1/test/", "", "", "/", 1000)
	if err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" { // never had one
		t.Fatalf("list uploads: %v", err)
	}
	for _, u := range res.Uploads {
		out = append(out, "unfinished upload of "+u.Key)
	}
	slices.Sort(out)
	return out
}

// storeCase builds one kind of store with hooks to look beneath it.
type storeCase struct {
	name string
	make func(t *testing.T) (store ArchiveStore, tarOnly func(id string), leftovers func() []string)
}

var storeCases = []storeCase{
	{"dir", func(t *testing.T) (ArchiveStore, func(string), func() []string) {
		dir := filepath.Join(t.TempDir(), "archives")
		tarOnly := func(id string) {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, id+".tar"), []byte("tar"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return NewDirStore(dir), tarOnly, func() []string { return dirEntries(t, dir) }
	}},
	{"s3", func(t *testing.T) (ArchiveStore, func(string), func() []string) {
		srv := newS3Server(t)
		store, err := NewS3Store(ctxT(t), srv.config(), "test")
		if err != nil {
			t.Fatal(err)
		}
		tarOnly := func(id string) {
			if _, err := srv.raw.PutObject(ctxT(t), testBucket, "archives/v1/test/"+id+".tar",
				strings.NewReader("tar"), 3, minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		return store, tarOnly, func() []string { return srv.keys(t) }
	}},
}

// dirEntries lists every file in dir, temporary ones included.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestArchiveStoreRoundTrip(t *testing.T) {
	for _, sc := range storeCases {
		t.Run(sc.name, func(t *testing.T) {
			store, _, leftovers := sc.make(t)
			ctx := ctxT(t)
			tars := map[string][]byte{
				"sb-a": bytes.Repeat([]byte("a"), 3<<20), // more than one read buffer
				"sb-b": []byte("small tar"),
				"sb-c": nil, // an empty workspace still pauses
			}
			for id, tar := range tars {
				if err := store.Put(ctx, id, bytes.NewReader(tar), []byte(`{"id":"`+id+`"}`)); err != nil {
					t.Fatalf("put %s: %v", id, err)
				}
			}
			ids, err := store.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(ids)
			if want := []string{"sb-a", "sb-b", "sb-c"}; !slices.Equal(ids, want) {
				t.Errorf("list = %v, want %v", ids, want)
			}
			for id, tar := range tars {
				rec, err := store.Record(ctx, id)
				if err != nil || string(rec) != `{"id":"`+id+`"}` {
					t.Errorf("record %s = %q, %v", id, rec, err)
				}
				rc, err := store.OpenTar(ctx, id)
				if err != nil {
					t.Fatalf("open tar %s: %v", id, err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(got, tar) {
					t.Errorf("tar %s: %d bytes (%v), want %d", id, len(got), err, len(tar))
				}
			}

			for i := 0; i < 2; i++ { // deleting what is gone succeeds
				if err := store.Delete(ctx, "sb-a"); err != nil {
					t.Fatalf("delete %d: %v", i, err)
				}
			}
			if _, err := store.Record(ctx, "sb-a"); !errors.Is(err, ErrNoArchive) || !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("record after delete: %v, want ErrNoArchive (fs.ErrNotExist)", err)
			}
			if _, err := store.OpenTar(ctx, "sb-a"); !errors.Is(err, ErrNoArchive) {
				t.Errorf("open tar after delete: %v, want ErrNoArchive", err)
			}
			if ids, _ := store.List(ctx); slices.Contains(ids, "sb-a") || len(ids) != 2 {
				t.Errorf("list after delete = %v, want sb-b and sb-c", ids)
			}
			for _, id := range []string{"sb-b", "sb-c"} {
				if err := store.Delete(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			if left := leftovers(); len(left) != 0 {
				t.Errorf("after deleting everything: %v left", left)
			}
			if err := store.Put(ctx, "../escape", strings.NewReader(""), nil); err == nil {
				t.Error("put with a path in the id: want refused")
			}
		})
	}
}

// errAfter yields n bytes, then fails: an agent stream cut off midway.
type errAfter struct {
	n   int
	err error
}

func (r *errAfter) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := min(len(p), r.n)
	clear(p[:k])
	r.n -= k
	return k, nil
}

func TestArchiveStoreRecordIsWrittenLast(t *testing.T) {
	for _, sc := range storeCases {
		t.Run(sc.name, func(t *testing.T) {
			store, tarOnly, leftovers := sc.make(t)
			ctx := ctxT(t)

			// A tar whose record never came (a crash between the two) is
			// not a paused sandbox.
			tarOnly("sb-half")
			if ids, err := store.List(ctx); err != nil || len(ids) != 0 {
				t.Errorf("list with a tar and no record = %v, %v; want none", ids, err)
			}
			if _, err := store.Record(ctx, "sb-half"); !errors.Is(err, ErrNoArchive) {
				t.Errorf("record of a tar without record: %v, want ErrNoArchive", err)
			}
			if err := store.Delete(ctx, "sb-half"); err != nil {
				t.Fatal(err)
			}

			// A stream that fails leaves nothing: no record, no tar, no
			// temporary file, no unfinished upload. 20 MiB spans two parts.
			boom := errors.New("agent stream cut")
			for _, n := range []int{0, 1 << 10, 20 << 20} {
				err := store.Put(ctx, "sb-1", &errAfter{n: n, err: boom}, []byte("{}"))
				if !errors.Is(err, boom) {
					t.Errorf("put of a stream failing after %d bytes: %v, want the stream's error", n, err)
				}
				if left := leftovers(); len(left) != 0 {
					t.Errorf("after a failed put of %d bytes: %v left", n, left)
				}
			}
		})
	}
}

// The S3 leftover check must see objects and unfinished multipart
// uploads, or the tests relying on it could not fail.
func TestS3LeftoverCheckSeesEverything(t *testing.T) {
	srv := newS3Server(t)
	if _, err := NewS3Store(ctxT(t), srv.config(), "test"); err != nil {
		t.Fatal(err)
	}
	core := &minio.Core{Client: srv.raw}
	if _, err := core.NewMultipartUpload(ctxT(t), testBucket, "archives/v1/test/sb-1.tar", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.raw.PutObject(ctxT(t), testBucket, "archives/v1/test/sb-2.tar", strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"archives/v1/test/sb-2.tar", "unfinished upload of archives/v1/test/sb-1.tar"}
	if got := srv.keys(t); !slices.Equal(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
	}
}

func TestBoundedReader(t *testing.T) {
	limit := archiveLimit(1)
	cases := []struct {
		size    int64
		tooBig  bool
		comment string
	}{
		{limit, false, "exactly the limit"},
		{limit + 1, true, "one byte over"},
		{10 * limit, true, "far over"},
	}
	for _, tc := range cases {
		t.Run(tc.comment, func(t *testing.T) {
			br := newBoundedReader(io.LimitReader(zeros{}, tc.size), "sb1", 1)
			n, err := io.Copy(io.Discard, br)
			var tl *ArchiveTooLargeError
			if got := errors.As(err, &tl); got != tc.tooBig {
				t.Fatalf("copy %d bytes: n %d err %v, want too large %v", tc.size, n, err, tc.tooBig)
			}
			if tc.tooBig && (n > limit || tl.Limit != limit || tl.DiskMB != 1 || !strings.Contains(tl.Error(), "disk limit 1 MB")) {
				t.Errorf("passed %d bytes, error %+v", n, tl)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestNewS3StoreChecksAtStartup(t *testing.T) {
	srv := newS3Server(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadEndpoint := closed.Addr().String()
	closed.Close()

	cases := []struct {
		name  string
		tweak func(c *S3Config)
		want  []string // all in the error; none: success
	}{
		{"bucket missing is created", func(c *S3Config) { c.Bucket = "fresh-bucket" }, nil},
		{"existing bucket", nil, nil},
		{"wrong secret", func(c *S3Config) { c.SecretKey = "wrong" },
			[]string{"credentials refused", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"}},
		{"unknown access key", func(c *S3Config) { c.AccessKey = "nobody" },
			[]string{"credentials refused", "MINIO_ACCESS_KEY"}},
		{"nothing listening", func(c *S3Config) { c.Endpoint = deadEndpoint },
			[]string{"cannot reach " + deadEndpoint, "MINIO_ENDPOINT"}},
		{"https to an http server", func(c *S3Config) { c.UseSSL = true },
			[]string{"cannot reach", "MINIO_USE_SSL"}},
		{"scheme in the endpoint", func(c *S3Config) { c.Endpoint = "http://" + c.Endpoint },
			[]string{"MINIO_ENDPOINT", "without scheme"}},
		{"no keys", func(c *S3Config) { c.AccessKey, c.SecretKey = "", "" },
			[]string{"MINIO_ACCESS_KEY and MINIO_SECRET_KEY are required"}},
		{"bad bucket name", func(c *S3Config) { c.Bucket = "No_Such" }, []string{"MINIO_BUCKET"}},
	}
	// The existing bucket exists before the cases run.
	if _, err := NewS3Store(ctxT(t), srv.config(), "test"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := srv.config()
			if tc.tweak != nil {
				tc.tweak(&cfg)
			}
			_, err := NewS3Store(ctxT(t), cfg, "test")
			if tc.want == nil {
				if err != nil {
					t.Fatalf("new store: %v", err)
				}
				if ok, err := srv.raw.BucketExists(ctxT(t), cfg.Bucket); !ok || err != nil {
					t.Errorf("bucket %s exists = %v, %v", cfg.Bucket, ok, err)
				}
				return
			}
			if err == nil {
				t.Fatal("new store succeeded, want refused")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// Refused on the first answer, not after waiting out the check.
			if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "no answer") {
				t.Errorf("error %q: want the refusal itself, not a timeout", err)
			}
		})
	}
}

// Control nodes start together: when another one creates the bucket
// between our look and our create, the start-up check still passes.
func TestNewS3StoreLosesTheBucketRace(t *testing.T) {
	srv := newS3ServerWrapped(t, func(b *s3mem.Backend, h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && strings.Trim(r.URL.Path, "/") == testBucket && r.URL.RawQuery == "" {
				if err := b.CreateBucket(r.Context(), testBucket); err != nil { // the other node
					t.Errorf("create bucket behind the store: %v", err)
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	if _, err := NewS3Store(ctxT(t), srv.config(), "test"); err != nil {
		t.Fatalf("start-up after another node created the bucket: %v", err)
	}
}

func TestConfigFromEnvArchive(t *testing.T) {
	base := map[string]string{"NOMAD_ADDR": "http://127.0.0.1:4646"}
	cases := []struct {
		name  string
		env   map[string]string
		want  []string // in the error; none: accepted
		check func(t *testing.T, c Config)
	}{
		{name: "neither", env: nil,
			want: []string{"no archive store", "MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "SANDBOX_ARCHIVE_DIR"}},
		{name: "archive dir", env: map[string]string{"SANDBOX_ARCHIVE_DIR": "/var/lib/cs/archives"},
			check: func(t *testing.T, c Config) {
				if c.ArchiveDir != "/var/lib/cs/archives" || c.S3.Endpoint != "" {
					t.Errorf("config %+v", c)
				}
			}},
		{name: "s3", env: map[string]string{"MINIO_ENDPOINT": "minio.internal:9000", "MINIO_ACCESS_KEY": "ak",
			"MINIO_SECRET_KEY": "sk", "MINIO_USE_SSL": "true", "MINIO_REGION": "eu-1", "MINIO_PREFIX": "/prod/"},
			check: func(t *testing.T, c Config) {
				c.setDefaults()
				want := S3Config{Endpoint: "minio.internal:9000", AccessKey: "ak", SecretKey: "sk", UseSSL: true,
					Region: "eu-1", Prefix: "prod", Bucket: DefaultS3Bucket, CheckTimeout: DefaultS3CheckTimeout}
				if c.S3 != want {
					t.Errorf("s3 config %+v, want %+v", c.S3, want)
				}
			}},
		{name: "both", env: map[string]string{"SANDBOX_ARCHIVE_DIR": "/a", "MINIO_ENDPOINT": "m:9000",
			"MINIO_ACCESS_KEY": "ak", "MINIO_SECRET_KEY": "sk"},
			want: []string{"SANDBOX_ARCHIVE_DIR", "MINIO_ENDPOINT", "both set"}},
		{name: "s3 without keys", env: map[string]string{"MINIO_ENDPOINT": "m:9000"},
			want: []string{"MINIO_ACCESS_KEY and MINIO_SECRET_KEY are required"}},
		{name: "bad ssl flag", env: map[string]string{"MINIO_ENDPOINT": "m:9000", "MINIO_USE_SSL": "sometimes"},
			want: []string{"MINIO_USE_SSL"}},
		{name: "relative dir", env: map[string]string{"SANDBOX_ARCHIVE_DIR": "archives"},
			want: []string{"not absolute"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tc.env {
				env[k] = v
			}
			c, err := ConfigFromEnv(func(k string) string { return env[k] })
			if tc.want == nil {
				if err != nil {
					t.Fatalf("config from env: %v", err)
				}
				tc.check(t, c)
				return
			}
			if err == nil {
				t.Fatal("accepted, want refused")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.name == "neither" && !errors.Is(err, ErrNoArchiveStore) {
				t.Errorf("error %v: want ErrNoArchiveStore", err)
			}
		})
	}
}

// New refuses to start on S3 it cannot use, instead of failing every pause.
func TestNewRefusesUnusableS3(t *testing.T) {
	srv := newS3Server(t)
	s3 := srv.config()
	s3.SecretKey = "wrong"
	_, err := New(Config{Address: "http://127.0.0.1:1", Cluster: "test", S3: s3, Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "credentials refused") {
		t.Fatalf("new with wrong S3 credentials: %v, want credentials refused", err)
	}
}

func ExampleArchiveTooLargeError() {
	fmt.Println(&ArchiveTooLargeError{SandboxID: "sb1", DiskMB: 1, Limit: archiveLimit(1)})
	// Output: workspace archive of sandbox sb1 exceeds 2228224 bytes (disk limit 1 MB plus tar overhead)
}
