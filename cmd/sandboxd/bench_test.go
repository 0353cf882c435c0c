package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	dockerclient "github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// maxBenchAcquires bounds the acquire rows: each one costs a container start
// (the pool refills, the baseline creates one).
const maxBenchAcquires = 20

// BenchmarkREST prints one table of medians: what a user pays through the
// REST API of a live sandboxd against the raw Docker operation it replaces.
//
//	make bench    (or: go test ./cmd/sandboxd -run '^$' -bench REST -benchtime 50x)
func BenchmarkREST(b *testing.B) {
	cluster := uniqueCluster(b)
	n := startNode(b, nodeOpts{cluster: cluster})
	c := n.login(b, "bench", "user")
	dc, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		b.Fatal(err)
	}
	defer dc.Close()
	ctx := context.Background()

	var sb sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", nil, 200, &sb)
	raw := rawContainer(b, ctx, dc, cluster+"-raw")

	payload := make([]byte, 1<<20)
	rand.Read(payload)
	enc := base64.StdEncoding.EncodeToString(payload)
	N := b.N
	rows := measureB(b, N, []func() error{
		func() error {
			return c.call("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "command": []string{"true"}}, nil)
		},
		func() error { return dockerExec(ctx, dc, raw, "true") },
		func() error {
			return c.call("POST", "/api/v1/execute", map[string]any{"sandbox_id": sb.SandboxID, "code": "print(1)", "language": "python"}, nil)
		},
		func() error { return dockerExec(ctx, dc, raw, "python3", "-c", "print(1)") },
		func() error {
			if err := c.call("PUT", "/api/v1/files", map[string]any{"sandbox_id": sb.SandboxID, "path": "/workspace/blob", "content": enc, "encoding": "base64"}, nil); err != nil {
				return err
			}
			got, err := c.raw("GET", "/api/v1/files/content?sandbox_id="+sb.SandboxID+"&path=/workspace/blob")
			if err == nil && !bytes.Equal(got, payload) {
				err = fmt.Errorf("read back %d bytes, want the %d written", len(got), len(payload))
			}
			return err
		},
		func() error { return dockerCopyRoundTrip(ctx, dc, raw, payload) },
	})

	acquires := min(N, maxBenchAcquires)
	var acq, create []time.Duration
	for i := 0; i < acquires; i++ {
		c.waitIdle(b, 60*time.Second)
		start := time.Now()
		var got sandboxView
		if err := c.call("POST", "/api/v1/sandbox/acquire", nil, &got); err != nil {
			b.Fatal(err)
		}
		acq = append(acq, time.Since(start))
		if err := c.call("POST", "/api/v1/sandbox/release", map[string]any{"sandbox_id": got.SandboxID}, nil); err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("%s-c%d", cluster, i)
		start = time.Now()
		id := createStart(b, ctx, dc, name)
		create = append(create, time.Since(start))
		dc.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
	}
	if N == 1 {
		return // the framework's probe run; the table comes with the real count
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\nREST benchmark, medians (%d requests per row, %d acquires)\n", N, acquires)
	fmt.Fprintf(&out, "%-34s %11s   %-34s %11s %8s\n", "through sandboxd REST", "median", "raw Docker API", "median", "ratio")
	row := func(op string, ours time.Duration, base string, baseline time.Duration) {
		fmt.Fprintf(&out, "%-34s %8.2f ms   %-34s %8.2f ms %7.1fx\n", op, ms(ours), base, ms(baseline), float64(baseline)/float64(ours))
	}
	row("acquire (warm pool)", median(acq), "container create+start", median(create))
	row("execute true", rows[0], "docker exec true", rows[1])
	row("execute python print(1)", rows[2], "docker exec python3 -c print(1)", rows[3])
	row("file write+read 1 MiB", rows[4], "docker cp in+out 1 MiB", rows[5])
	fmt.Fprint(os.Stdout, out.String())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// measureB runs each f n times, round robin so outside load hits every row
// alike, and returns the medians.
func measureB(b *testing.B, n int, fs []func() error) []time.Duration {
	b.Helper()
	d := make([][]time.Duration, len(fs))
	for range n {
		for i, f := range fs {
			start := time.Now()
			if err := f(); err != nil {
				b.Fatal(err)
			}
			d[i] = append(d[i], time.Since(start))
		}
	}
	out := make([]time.Duration, len(fs))
	for i := range d {
		out[i] = median(d[i])
	}
	return out
}

func createStart(b *testing.B, ctx context.Context, dc *dockerclient.Client, name string) string {
	b.Helper()
	resp, err := dc.ContainerCreate(ctx, &container.Config{Image: "python:3.11-slim", Cmd: []string{"sleep", "3600"},
		Labels: map[string]string{"cloud-sandbox.test": "1"}},
		&container.HostConfig{NetworkMode: "none"}, nil, nil, name)
	if err != nil {
		b.Fatal(err)
	}
	if err := dc.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		b.Fatal(err)
	}
	return resp.ID
}

func rawContainer(b *testing.B, ctx context.Context, dc *dockerclient.Client, name string) string {
	id := createStart(b, ctx, dc, name)
	b.Cleanup(func() { dc.ContainerRemove(context.Background(), id, container.RemoveOptions{Force: true}) })
	return id
}

// dockerExec is a raw `docker exec`: create, attach, read to the end, inspect.
func dockerExec(ctx context.Context, dc *dockerclient.Client, id string, argv ...string) error {
	ex, err := dc.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: argv, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return err
	}
	att, err := dc.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return err
	}
	_, err = stdcopy.StdCopy(io.Discard, io.Discard, att.Reader)
	att.Close()
	if err != nil {
		return err
	}
	st, err := dc.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return err
	}
	if st.ExitCode != 0 {
		return fmt.Errorf("docker exec %v: exit %d", argv, st.ExitCode)
	}
	return nil
}

// dockerCopyRoundTrip is `docker cp` in and out: a tar with one file, then
// the same file read back as a tar.
func dockerCopyRoundTrip(ctx context.Context, dc *dockerclient.Client, id string, payload []byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "blob", Mode: 0o644, Size: int64(len(payload))})
	tw.Write(payload)
	tw.Close()
	if err := dc.CopyToContainer(ctx, id, "/tmp", &buf, container.CopyToContainerOptions{}); err != nil {
		return err
	}
	rc, _, err := dc.CopyFromContainer(ctx, id, "/tmp/blob")
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		return err
	}
	got, err := io.ReadAll(tr)
	if err == nil && !bytes.Equal(got, payload) {
		err = fmt.Errorf("docker cp read back %d bytes", len(got))
	}
	return err
}
