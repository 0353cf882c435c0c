package agent

import (
	"errors"
	"fmt"
	"io"
)

// The control plane reads what a sandbox's agent answers, and the agent is
// code the sandbox can replace: every reply is read through a bound, so a
// hostile or broken agent costs the API node an error, never its memory.
const (
	// MaxJSONReply bounds a JSON answer that carries no process output
	// (health, listings, file and mkdir results).
	MaxJSONReply = 16 << 20
	// jsonEscapeFactor is the most JSON can grow a byte of output: a
	// control character becomes \u00XX.
	jsonEscapeFactor = 6
	// defaultOutputBound is what an exec may return per stream when the
	// request leaves the cap to the agent: its largest allowed cap.
	defaultOutputBound = 64 << 20
)

// ErrReplyTooLarge means an agent answered with more than the control plane
// reads from it.
var ErrReplyTooLarge = errors.New("agent reply exceeds its bound")

// execReplyBound is how much an exec's answer may take: both streams at
// their cap, escaped, plus room for the rest of the result.
func execReplyBound(req ExecRequest) int64 {
	out := req.MaxOutputBytes
	if out <= 0 {
		out = defaultOutputBound
	}
	return 2*jsonEscapeFactor*out + 1<<20
}

// boundedBody reads at most limit bytes of r, then fails with
// ErrReplyTooLarge instead of reading on.
type boundedBody struct {
	r     io.Reader
	left  int64
	limit int64
}

func bounded(r io.Reader, limit int64) *boundedBody {
	return &boundedBody{r: r, left: limit, limit: limit}
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a reply of exactly limit bytes from a longer one.
		var one [1]byte
		if n, _ := b.r.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("%w (%d bytes)", ErrReplyTooLarge, b.limit)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}
