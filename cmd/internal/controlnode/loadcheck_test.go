package controlnode

import (
	"strings"
	"testing"
)

// loaded checks loadConfig's answer against a case: with no wantErr it must
// have loaded (true is returned, for the caller's further checks); else it
// must have refused, saying each of wantErr.
func loaded(t *testing.T, err error, wantErr []string) bool {
	t.Helper()
	if wantErr == nil {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return true
	}
	if err == nil {
		t.Fatal("accepted, want refused")
	}
	for _, w := range wantErr {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	return false
}
