package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLookPathWritableDirsAreSearchedAgain: a command that appears in a
// writable PATH directory ahead of where it was found before wins at once;
// only lookups through read-only directories are remembered.
func TestLookPathWritableDirsAreSearchedAgain(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	pathEnv := first + string(filepath.ListSeparator) + second
	write := func(dir string) string {
		p := filepath.Join(dir, "tool-xyz")
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"missing everywhere", func() {}, ""},
		{"found in the second", func() { write(second) }, filepath.Join(second, "tool-xyz")},
		{"then installed in the first", func() { write(first) }, filepath.Join(first, "tool-xyz")},
		{"removed from the first again", func() { os.Remove(filepath.Join(first, "tool-xyz")) }, filepath.Join(second, "tool-xyz")},
	}
	for _, s := range steps {
		s.do()
		got, ok := lookPath("tool-xyz", pathEnv, "/")
		if (s.want == "") == ok || got != s.want {
			t.Fatalf("%s: lookPath = %q, %v; want %q", s.name, got, ok, s.want)
		}
	}
}
