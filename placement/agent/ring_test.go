package agent

import (
	"strings"
	"testing"
)

func TestOutputRing(t *testing.T) {
	tests := []struct {
		name      string
		max       int
		writes    []string
		from      int64
		wantData  string
		wantLost  int64 // returned "lost" (== from when nothing was lost)
		wantStart int64
	}{
		{"all held", 10, []string{"abc", "def"}, 0, "abcdef", 0, 0},
		{"from the middle of a chunk", 10, []string{"abc", "def"}, 2, "cdef", 2, 0},
		{"at the end", 10, []string{"abc"}, 3, "", 3, 0},
		{"oldest dropped whole", 3, []string{"abc", "def"}, 0, "def", 3, 3},
		{"head trimmed", 5, []string{"abc", "def"}, 0, "bcdef", 1, 1},
		{"one write larger than the ring", 4, []string{"abcdefgh"}, 0, "efgh", 4, 4},
		{"asked after what was lost", 4, []string{"abc", "def"}, 4, "ef", 4, 2},
		{"head trimmed to the bound", 4, []string{"abc", "def"}, 0, "cdef", 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newOutputRing(tt.max)
			for _, w := range tt.writes {
				r.write(EventStdout, []byte(w))
			}
			chunks, lost := r.read(tt.from, 1<<20)
			var got strings.Builder
			next := lost
			for _, c := range chunks {
				if c.off != next {
					t.Fatalf("chunk at %d, want contiguous at %d", c.off, next)
				}
				got.Write(c.data)
				next = c.off + int64(len(c.data))
			}
			if got.String() != tt.wantData || lost != tt.wantLost || r.start != tt.wantStart {
				t.Fatalf("read from %d: data %q lost-until %d start %d; want %q, %d, %d",
					tt.from, got.String(), lost, r.start, tt.wantData, tt.wantLost, tt.wantStart)
			}
			if r.size > tt.max {
				t.Fatalf("ring holds %d bytes, over its bound %d", r.size, tt.max)
			}
		})
	}
}
