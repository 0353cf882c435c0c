package api

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
)

// maxIdempotencyKey is the longest Idempotency-Key header accepted.
const maxIdempotencyKey = 128

// requestIDFor turns the Idempotency-Key header into the Raft command's
// request id. It is scoped by user (one user cannot replay another's answer)
// and by operation (a key reused on another endpoint does not return a
// response of the wrong kind). Long ids are hashed to keep the FSM's dedup
// table small. No header: "" (not deduplicated).
func requestIDFor(r *http.Request, p *principal, op string) (string, error) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return "", nil
	}
	if len(key) > maxIdempotencyKey {
		return "", errBadRequest("Idempotency-Key is longer than %d characters", maxIdempotencyKey)
	}
	id := p.User + ":" + op + ":" + key
	if len(id) > 64 {
		sum := sha256.Sum256([]byte(id))
		id = "sha256:" + hex.EncodeToString(sum[:])
	}
	return id, nil
}
