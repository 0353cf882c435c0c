package docker

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
)

const localImage = "cloud-sandbox/python:3.11-slim"

// TestImageBuildScript: the build is a no-op when the image exists, tags
// the alias when it is missing, and never shadows an alias that exists.
func TestImageBuildScript(t *testing.T) {
	d := newDriver(t, nil)
	ctx := context.Background()
	script := filepath.Join(repoRoot, "deploy", "sandbox-image", "build.sh")
	run := func(alias string) string {
		t.Helper()
		out, err := exec.Command("bash", script, localImage, alias).CombinedOutput()
		if err != nil {
			t.Fatalf("build.sh %s: %v\n%s", alias, err, out)
		}
		return string(out)
	}
	idOf := func(ref string) string {
		t.Helper()
		info, err := d.docker.ImageInspect(ctx, ref)
		if err != nil {
			t.Fatalf("inspect %s: %v", ref, err)
		}
		return info.ID
	}
	local := idOf(localImage)

	missing := "cloud-sandbox-test/alias-" + randHex(4) + ":v1"
	taken := "cloud-sandbox-test/alias-" + randHex(4) + ":v1"
	t.Cleanup(func() {
		for _, ref := range []string{missing, taken} {
			_, _ = d.docker.ImageRemove(context.Background(), ref, image.RemoveOptions{})
		}
	})
	// An unrelated image under the alias name: a stand-in for a pulled one.
	if out, err := exec.Command("sh", "-c", "tar -cf - --files-from /dev/null | docker import - "+taken).CombinedOutput(); err != nil {
		t.Fatalf("make stand-in image: %v\n%s", err, out)
	}
	takenID := idOf(taken)

	tests := []struct {
		name, alias, wantOut, wantID string
	}{
		{"missing alias is tagged", missing, "tagged " + missing, local},
		{"tagging again is a no-op", missing, "already points to", local},
		{"existing alias is not shadowed", taken, "left as it is", takenID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := run(tt.alias)
			if !strings.Contains(out, "nothing to build") || !strings.Contains(out, tt.wantOut) {
				t.Errorf("output %q, want %q and no build", out, tt.wantOut)
			}
			if got := idOf(tt.alias); got != tt.wantID {
				t.Errorf("%s is %s, want %s", tt.alias, got, tt.wantID)
			}
		})
	}
}
