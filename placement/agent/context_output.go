package agent

import (
	"bytes"
	"os"
	"sync/atomic"
	"time"
)

// markWait bounds the wait for a cell's end-of-cell mark on a pipe: the
// mark is written right after the cell, so only a cell that left a child
// writing a flood, or that replaced its fd without closing it, is slower
// (or a loaded machine: generous, it costs nothing when the mark comes).
const markWait = 5 * time.Second

// outputPipe reads one output fd (1 or 2) of a context's interpreter for
// the interpreter's whole life, handing what it reads to the cell in flight
// (and dropping what background processes write between cells). The
// runner ends every cell by writing its mark; the pipe counts the marks, so
// the agent knows when it has read everything the cell wrote.
type outputPipe struct {
	f      *os.File
	stream string
	mark   []byte
	sink   func() *cellSink

	seen   atomic.Int64  // marks read
	notify chan struct{} // a mark was read (capacity 1, never blocks the reader)
	done   chan struct{} // closed at EOF or when the read is cut off
	wanted int64         // marks written; only the cell holding the context's turn touches it
}

func newOutputPipe(f *os.File, stream string, mark []byte, sink func() *cellSink) *outputPipe {
	p := &outputPipe{f: f, stream: stream, mark: mark, sink: sink, notify: make(chan struct{}, 1), done: make(chan struct{})}
	go p.run()
	return p
}

func (p *outputPipe) run() {
	defer close(p.done)
	buf := make([]byte, readChunk)
	var pending []byte // a possible start of a mark, or of a rune, cut by the read
	for {
		n, err := p.f.Read(buf)
		if n > 0 {
			data := append(pending, buf[:n]...)
			pending = nil
			for {
				i := bytes.Index(data, p.mark)
				if i < 0 || len(p.mark) == 0 {
					break
				}
				p.deliver(data[:i])
				data = data[i+len(p.mark):]
				p.seen.Add(1)
				select {
				case p.notify <- struct{}{}:
				default:
				}
			}
			k := markPrefixAtEnd(data, p.mark)
			head, rest := cutIncompleteRune(data[:len(data)-k])
			p.deliver(head)
			pending = append(bytes.Clone(rest), data[len(data)-k:]...)
		}
		if err != nil {
			p.deliver(pending)
			return
		}
	}
}

func (p *outputPipe) deliver(b []byte) {
	if len(b) == 0 {
		return
	}
	if s := p.sink(); s != nil {
		s.add(p.stream, b)
	}
}

// markPrefixAtEnd is the length of the longest end of b that begins mark.
func markPrefixAtEnd(b, mark []byte) int {
	for k := min(len(mark)-1, len(b)); k > 0; k-- {
		if bytes.HasPrefix(mark, b[len(b)-k:]) {
			return k
		}
	}
	return 0
}

// awaitMark waits until the mark of the cell that just ended has been read.
func (p *outputPipe) awaitMark() bool {
	p.wanted++
	timeout := time.NewTimer(markWait)
	defer timeout.Stop()
	for p.seen.Load() < p.wanted {
		select {
		case <-p.notify:
		case <-p.done:
			return p.seen.Load() >= p.wanted
		case <-timeout.C:
			return false
		}
	}
	return true
}

// close waits at most grace for the writers to finish, then stops reading.
// A reader stuck handing output to a streaming client that does not read
// is left to end with that client's connection.
func (p *outputPipe) close(grace time.Duration) {
	_ = p.f.SetReadDeadline(time.Now().Add(grace))
	select {
	case <-p.done:
	case <-time.After(grace + markWait):
	}
	_ = p.f.Close()
}
