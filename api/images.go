package api

import (
	"net/http"
	"path"
	"slices"
	"strings"
)

// errImageNotAllowed is the one answer for every image outside the
// allow-list. It never repeats the reference nor depends on it, so a caller
// cannot tell "exists", "private", "unreachable host" or "closed port" apart
// by asking: nothing is pulled or resolved before the check.
var errImageNotAllowed = &Error{Status: http.StatusForbidden, Code: codeForbidden,
	Msg: "image is not allowed on this server (SANDBOX_ALLOWED_IMAGES)"}

// imagesOpen reports that the operator allowed every image ("*"). With no
// list at all only the pool's image runs.
func (s *Server) imagesOpen() bool { return imagesOpen(s.cfg.AllowedImages) }

func imagesOpen(patterns []string) bool { return slices.Contains(patterns, "*") }

// checkImage validates the reference's syntax and that it is allowed: it
// matches one of cfg.AllowedImages, or is the pool's image (the pool runs it
// anyway, so refusing it would only refuse warm sandboxes).
func (s *Server) checkImage(image string) error {
	if err := validImage(image); err != nil {
		return err
	}
	if s.imagesOpen() || image == s.cfg.DefaultImage || image == s.state.Pool().Image {
		return nil
	}
	for _, p := range s.cfg.AllowedImages {
		if imageMatches(p, image) {
			return nil
		}
	}
	return errImageNotAllowed
}

// imageMatches reports whether image matches pattern, where "*" matches any
// run of characters, "/" and ":" included ("ghcr.io/acme/*" allows every
// repository and tag under acme). A pattern without "*" must match exactly.
// placementFailedMsg is what the caller reads when its sandbox could not be
// started: the driver's own reason (Nomad's task events, Docker's error). An
// image got this far only if the operator allowed it, so the reason speaks
// of registries the operator chose, not of addresses a caller picked to
// probe; that is what the allow-list (default: the pool's image) is for.
func (s *Server) placementFailedMsg(reason string) string {
	return "sandbox placement failed: " + reason
}

func imageMatches(pattern, image string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == image
	}
	// path.Match's "*" stops at "/"; ours must not, so the reference's
	// slashes are hidden from it on both sides.
	const slash = "\x00"
	// Everything but "*" is literal: escape path.Match's other metacharacters.
	quoted := strings.NewReplacer(`\`, `\\`, "?", `\?`, "[", `\[`, "/", slash).Replace(pattern)
	ok, err := path.Match(quoted, strings.ReplaceAll(image, "/", slash))
	return err == nil && ok
}
