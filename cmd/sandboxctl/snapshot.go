package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
)

// cmdSnapshotSave writes GET /api/v1/admin/snapshot to a file, atomically
// (a temporary file renamed into place), or to stdout for "-".
func cmdSnapshotSave(e *env, args []string) error {
	pos, _, err := parseArgs(e, "snapshot save", flag.NewFlagSet("snapshot save", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	path := pos[0]
	resp, err := e.client(true).request(context.Background(), http.MethodGet, "/api/v1/admin/snapshot", nil, nil)
	if err != nil {
		return fail("snapshot save", err)
	}
	defer resp.Body.Close()
	if path == "-" {
		if _, err := io.Copy(e.stdout, resp.Body); err != nil {
			return fail("snapshot save", err)
		}
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fail("snapshot save", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	n, err := io.Copy(tmp, resp.Body)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fail("snapshot save", err)
	}
	if e.json {
		return writeJSON(e.stdout, map[string]any{"file": path, "bytes": n, "index": resp.Header.Get("X-Cloud-Sandbox-Index")})
	}
	_, err = fmt.Fprintf(e.stdout, "saved %d bytes to %s (state at index %s)\n", n, path, resp.Header.Get("X-Cloud-Sandbox-Index"))
	return err
}

// cmdSnapshotRestore sends a saved file to POST
// /api/v1/admin/snapshot/restore. The server checks it before it changes
// anything; a file that is not even JSON is refused here first.
func cmdSnapshotRestore(e *env, args []string) error {
	pos, _, err := parseArgs(e, "snapshot restore", flag.NewFlagSet("snapshot restore", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return fail("snapshot restore", err)
	}
	if !json.Valid(data) {
		return &exitErr{code: exitError, msg: fmt.Sprintf("snapshot restore: %s is not a snapshot (not JSON); nothing was sent", pos[0])}
	}
	var out struct {
		Restored     bool   `json:"restored"`
		Bytes        int    `json:"bytes"`
		PoolDropped  int    `json:"pool_dropped"`
		AppliedIndex uint64 `json:"applied_index"`
	}
	if _, err := e.client(true).do(context.Background(), http.MethodPost, "/api/v1/admin/snapshot/restore", bytes.NewReader(data), &out); err != nil {
		return fail("snapshot restore", err)
	}
	if e.json {
		return writeJSON(e.stdout, out)
	}
	_, err = fmt.Fprintf(e.stdout, "restored %s (applied index %d); %d warm pool sandboxes left out, the pool refills\n",
		pos[0], out.AppliedIndex, out.PoolDropped)
	return err
}
