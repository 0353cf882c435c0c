package api

import (
	"path"
	"strings"
)

// cleanPath validates a sandbox path: absolute, no ".." segment, no NUL. It
// returns the cleaned path. ".." is refused rather than resolved so that a
// request never means something other than what it says.
func cleanPath(field, p string) (string, error) {
	switch {
	case p == "":
		return "", errBadRequest("%s is required", field)
	case !strings.HasPrefix(p, "/"):
		return "", errBadRequest("%s must be absolute, got %q", field, p)
	case strings.ContainsRune(p, 0):
		return "", errBadRequest("%s contains a NUL byte", field)
	case len(p) > 4096:
		return "", errBadRequest("%s is longer than 4096 bytes", field)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", errBadRequest("%s must not contain '..' segments", field)
		}
	}
	return path.Clean(p), nil
}
