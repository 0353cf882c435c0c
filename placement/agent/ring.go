package agent

// outputRing keeps the most recent output of a background process, at most
// max bytes, in one offset space for all its streams: a client that lost its
// connection asks again from the last offset it saw and misses nothing that
// is still held, and learns exactly what is not. It is not safe for
// concurrent use; its process's lock guards it.
type outputRing struct {
	max    int
	chunks []ringChunk // oldest first, contiguous offsets
	size   int         // bytes held
	start  int64       // offset of the first byte held
	end    int64       // offset after the last byte ever written
}

// ringChunk is one read of one stream: whole UTF-8 runes (the reader holds
// back a split rune), except perhaps at the head after eviction.
type ringChunk struct {
	stream string
	off    int64
	data   []byte
}

func newOutputRing(max int) *outputRing { return &outputRing{max: max} }

// write appends a copy of b, dropping the oldest bytes beyond max.
func (r *outputRing) write(stream string, b []byte) {
	if len(b) == 0 {
		return
	}
	off := r.end
	r.end += int64(len(b))
	if len(b) > r.max {
		off += int64(len(b) - r.max)
		b = b[len(b)-r.max:]
	}
	r.chunks = append(r.chunks, ringChunk{stream: stream, off: off, data: append([]byte(nil), b...)})
	r.size += len(b)
	for r.size > r.max {
		head := &r.chunks[0]
		over := r.size - r.max
		if over >= len(head.data) {
			r.size -= len(head.data)
			r.chunks[0] = ringChunk{} // let the collector have it
			r.chunks = r.chunks[1:]
			continue
		}
		head.data = head.data[over:]
		head.off += int64(over)
		r.size -= over
	}
	if len(r.chunks) > 0 {
		r.start = r.chunks[0].off
	} else {
		r.start = r.end
	}
}

// read returns what is held from offset from on, at most limit bytes (a
// single chunk may be cut), and lost > from when [from, lost) has already
// been dropped (then the chunks start at lost).
func (r *outputRing) read(from int64, limit int) (out []ringChunk, lost int64) {
	lost = from
	if from < r.start {
		lost, from = r.start, r.start
	}
	n := 0
	for _, c := range r.chunks {
		cend := c.off + int64(len(c.data))
		if cend <= from {
			continue
		}
		if c.off < from {
			c.data = c.data[from-c.off:]
			c.off = from
		}
		if n+len(c.data) > limit {
			if n > 0 {
				break
			}
			c.data = c.data[:limit]
		}
		out = append(out, c)
		n += len(c.data)
	}
	return out, lost
}
