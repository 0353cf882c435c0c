package api

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"testing"
)

// TestCutDownloadIsAnError: when the agent's stream breaks mid-file (here the
// file shrinks while it is sent, so the agent sends less than it announced),
// the client must see a broken answer, never a clean end of a short file.
func TestCutDownloadIsAnError(t *testing.T) {
	e := newEnv(t)
	tok := e.token("alice", "user")
	id := e.acquire(tok)
	p := e.path("big.bin")
	if err := os.WriteFile(p, make([]byte, 64<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", e.http.URL+"/api/v1/files/content?sandbox_id="+id+"&path="+url.QueryEscape(p), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	buf := make([]byte, 64<<10)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("a download cut after %d of %d bytes ended cleanly", int64(len(buf))+n, 64<<20)
	}
}
