package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []sseEvent
	}{
		{"one event", "id: 7-0\nevent: created\ndata: {\"a\":1}\n\n",
			[]sseEvent{{ID: "7-0", Event: "created", Data: `{"a":1}`}}},
		{"two events, the server's prelude and keepalives", "retry: 1000\n\n: keepalive\n\nid: 7-0\nevent: created\ndata: x\n\n: keepalive\nid: 9-1\nevent: placed\ndata: y\n\n",
			[]sseEvent{{ID: "7-0", Event: "created", Data: "x"}, {ID: "9-1", Event: "placed", Data: "y"}}},
		{"multi-line data joined with newlines", "data: a\ndata: b\ndata:\n\n",
			[]sseEvent{{Data: "a\nb\n"}}},
		{"only one space after the colon is dropped", "data:  two\ndata:none\n\n",
			[]sseEvent{{Data: " two\nnone"}}},
		{"CRLF and CR line ends", "id: 1-0\r\nevent: a\r\ndata: x\r\n\r\nid: 2-0\revent: b\rdata: y\r\r",
			[]sseEvent{{ID: "1-0", Event: "a", Data: "x"}, {ID: "2-0", Event: "b", Data: "y"}}},
		{"the last id carries to an event without one", "id: 5-0\ndata: a\n\ndata: b\n\n",
			[]sseEvent{{ID: "5-0", Data: "a"}, {ID: "5-0", Data: "b"}}},
		{"an id with NUL is ignored", "id: 5-0\ndata: a\n\nid: 6\x00\ndata: b\n\n",
			[]sseEvent{{ID: "5-0", Data: "a"}, {ID: "5-0", Data: "b"}}},
		{"retry in milliseconds; a bad one ignored", "retry: 1500\ndata: a\n\nretry: soon\ndata: b\n\n",
			[]sseEvent{{Data: "a", Retry: 1500 * time.Millisecond}, {Data: "b"}}},
		{"an event without data is not dispatched", "event: gap\n\nevent: gap\ndata: {}\n\n",
			[]sseEvent{{Event: "gap", Data: "{}"}}},
		{"unknown fields and a field without a colon are ignored", "foo: bar\ndata\ndata: x\n\n",
			[]sseEvent{{Data: "\nx"}}},
		{"an event cut off by the end of the stream is dropped", "data: a\n\ndata: b\n",
			[]sseEvent{{Data: "a"}}},
		{"empty stream", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, name := range []string{"whole", "one byte at a time"} {
				var r io.Reader = strings.NewReader(tt.stream)
				if name != "whole" {
					r = iotest.OneByteReader(r)
				}
				got := readAll(t, newSSEReader(r))
				if len(got) != len(tt.want) {
					t.Fatalf("%s: %d events %+v, want %d %+v", name, len(got), got, len(tt.want), tt.want)
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Errorf("%s: event %d = %+v, want %+v", name, i, got[i], tt.want[i])
					}
				}
			}
		})
	}
}

func readAll(t *testing.T, r *sseReader) []sseEvent {
	t.Helper()
	var out []sseEvent
	for {
		ev, err := r.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *ev)
	}
}

func TestCopyExecStream(t *testing.T) {
	tests := []struct {
		name           string
		stream         string
		code           int
		stdout, stderr string
		err            string
	}{
		{"output then exit 3",
			`{"type":"stdout","data":"hi\n"}` + "\n" + `{"type":"stderr","data":"oops\n"}` + "\n" + `{"type":"result","exit_code":3,"stdout":"hi\n"}` + "\n",
			3, "hi\n", "oops\n", ""},
		{"success", `{"type":"result","exit_code":0}` + "\n", 0, "", "", ""},
		{"timed out is 124", `{"type":"result","exit_code":-1,"timed_out":true}` + "\n", 124, "", "sandboxctl: exec: the command timed out\n", ""},
		{"a code out of range is 1", `{"type":"result","exit_code":-9}` + "\n", 1, "", "", ""},
		{"broken stream", `{"type":"stdout","data":"a"}` + "\n" + `{"type":"error","data":"agent gone"}` + "\n", 0, "a", "", "agent gone"},
		{"no result", `{"type":"stdout","data":"a"}` + "\n", 0, "a", "", "without a result"},
		{"not JSON", "<html>\n", 0, "", "", "bad stream line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code, err := copyExecStream(strings.NewReader(tt.stream), &stdout, &stderr)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || stdout.String() != tt.stdout || stderr.String() != tt.stderr {
				t.Errorf("code %d stdout %q stderr %q, want %d %q %q", code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

// TestFollowEventsResumes: a follower whose streams end or break resumes
// with Last-Event-ID and hands every event on once, in order.
func TestFollowEventsResumes(t *testing.T) {
	all := []string{"1-0", "2-0", "2-1", "5-0", "7-0"}
	var mu sync.Mutex
	var asked []string
	conn := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conn++
		n := conn
		asked = append(asked, r.Header.Get("Last-Event-ID")+"|"+r.URL.Query().Get("after")+"|"+r.URL.Query().Get("type"))
		mu.Unlock()
		if n == 3 {
			http.Error(w, `{"error":"leader changing","code":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "retry: 10\n\n")
		start := 0
		if last := r.Header.Get("Last-Event-ID"); last != "" {
			start = slices.Index(all, last) + 1
		}
		// Two events per connection, then the stream ends (or, the
		// second time, breaks mid-event).
		for i := start; i < len(all) && i < start+2; i++ {
			fmt.Fprintf(w, ": keepalive\n\nid: %s\nevent: placed\ndata: {\"id\":%q,\"type\":\"placed\",\"sandbox_id\":\"s\"}\n\n", all[i], all[i])
		}
		if n == 2 {
			fmt.Fprint(w, "id: 9-9\ndata: {\"id\":\"9-9\"") // cut off: never dispatched
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []string
	c := &client{base: srv.URL, hc: srv.Client()}
	q := url.Values{"type": {"placed"}}
	err := followEvents(ctx, c, q, "", io.Discard, func(e event) error {
		got = append(got, e.ID)
		if len(got) == len(all) {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, all) {
		t.Fatalf("events %v, want each of %v once, in order", got, all)
	}
	want := []string{"||placed", "2-0|2-0|placed", "5-0|5-0|placed", "5-0|5-0|placed"} // the cut-off 9-9 is not a place to resume from
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(asked[:4], want) {
		t.Errorf("connections asked (Last-Event-ID|after|type) %v, want %v…", asked, want)
	}
}

func TestFollowEventsStopsOnAuthError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"token expired","code":"unauthorized"}`, http.StatusUnauthorized)
	}))
	defer srv.Close()
	err := followEvents(context.Background(), &client{base: srv.URL, hc: srv.Client(), token: "t"}, url.Values{}, "", io.Discard, func(event) error { return nil })
	var ae *apiError
	if !errors.As(err, &ae) || ae.exitCode() != exitUnauthorized {
		t.Fatalf("err %v, want the 401 (exit 4) at once, not a retry loop", err)
	}
}
