package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"
)

// sseEvent is one Server-Sent Event as the stream framed it.
type sseEvent struct {
	ID    string
	Event string // "" means "message"
	Data  string
	// Retry is the reconnection delay the server asked for, if any.
	Retry time.Duration
}

// sseReader reads events from a text/event-stream body, following the
// WHATWG parsing rules that matter here: fields "id", "event", "data"
// (lines joined with "\n"), "retry"; ":" lines are comments; one space
// after the colon is dropped; an event ends at a blank line; CRLF, LF and
// CR all end a line; an id containing NUL is ignored.
type sseReader struct {
	sc *bufio.Scanner
	// lastID is the id of the last event read, carried across events
	// without one (the stream's "last event ID buffer").
	lastID string
}

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	sc.Split(scanSSELines)
	return &sseReader{sc: sc}
}

// scanSSELines splits on CRLF, LF or CR.
func scanSSELines(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		switch b {
		case '\n':
			return i + 1, data[:i], nil
		case '\r':
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			if atEOF {
				return i + 1, data[:i], nil
			}
			return 0, nil, nil // need one more byte to know if LF follows
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// next returns the next complete event, or io.EOF when the stream ends (an
// event not ended by a blank line is dropped, as the spec says).
func (r *sseReader) next() (*sseEvent, error) {
	var ev sseEvent
	var data []string
	hasData := false
	for r.sc.Scan() {
		line := r.sc.Text()
		if line == "" {
			if !hasData {
				ev = sseEvent{}
				continue
			}
			ev.Data = strings.Join(data, "\n")
			ev.ID = r.lastID
			return &ev, nil
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			if !strings.ContainsRune(value, 0) {
				r.lastID = value
			}
		case "event":
			ev.Event = value
		case "data":
			data = append(data, value)
			hasData = true
		case "retry":
			var ms int64
			if _, err := fmt.Sscanf(value, "%d", &ms); err == nil && ms >= 0 && fmt.Sprint(ms) == value {
				ev.Retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
	if err := r.sc.Err(); err != nil {
		return nil, err
	}
	return nil, io.EOF
}

// event is the data of one lifecycle event (api/DESIGN.md, "Events").
type event struct {
	ID        string `json:"id"`
	Time      string `json:"time"`
	Type      string `json:"type"`
	SandboxID string `json:"sandbox_id"`
	SessionID string `json:"session_id"`
	Owner     string `json:"owner"`
	State     string `json:"state"`
	Reason    string `json:"reason"`
	Node      string `json:"node"`
}

// Reconnection bounds for events -f: a stream that ends (the server ends
// each after an hour) is resumed with Last-Event-ID at once; failures back
// off up to the server's retry hint or eventsMaxBackoff, and give up after
// eventsMaxFailures in a row.
const (
	eventsMaxBackoff  = 10 * time.Second
	eventsMaxFailures = 10
)

// cmdEvents prints lifecycle events: without -f what the log keeps (or
// what follows --since) and exits; with -f it follows.
func cmdEvents(e *env, args []string) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	follow := fs.Bool("f", false, "follow: keep printing new events")
	since := fs.String("since", "", "start after this event id (from a previous run)")
	sandboxID := fs.String("sandbox", "", "only events of this sandbox")
	types := fs.String("type", "", "only these types, comma-separated (created, placed, active, released, ...)")
	if _, _, err := parseArgs(e, "events", fs, args, 0); err != nil {
		return err
	}
	q := url.Values{}
	if *sandboxID != "" {
		q.Set("sandbox_id", *sandboxID)
	}
	if *types != "" {
		q.Set("type", *types)
	}
	last := *since
	if !*follow {
		if last == "" {
			last = "0"
		}
		q.Set("follow", "false")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	p := &eventPrinter{e: e}
	if !*follow {
		_, err := streamEvents(ctx, e.client(true), q, last, e.stderr, p.collect)
		if err != nil {
			return fail("events", err)
		}
		return p.flush()
	}
	p.live = true
	err := followEvents(ctx, e.client(false), q, last, e.stderr, p.collect)
	if err != nil {
		return fail("events", err)
	}
	return nil
}

// followEvents reads events until ctx ends, reconnecting with
// Last-Event-ID whenever a stream ends or breaks, so every event is handed
// to fn once, in order. Failures back off (the server's retry hint, else
// doubling to eventsMaxBackoff); eventsMaxFailures in a row, or an answer
// a retry cannot fix (4xx but 429), end it with the error.
func followEvents(ctx context.Context, c *client, q url.Values, last string, warn io.Writer, fn func(event) error) error {
	failures := 0
	backoff := 500 * time.Millisecond
	for {
		got, err := streamEvents(ctx, c, q, last, warn, fn)
		if got.id != "" {
			last = got.id
		}
		if ctx.Err() != nil {
			return nil
		}
		var ae *apiError
		if errors.As(err, &ae) && ae.Status != http.StatusTooManyRequests && ae.Status < 500 {
			return err
		}
		delay := time.Duration(0) // a stream that ended cleanly resumes at once
		if err != nil {
			if got.events > 0 {
				failures = 0
			}
			failures++
			if failures >= eventsMaxFailures {
				return fmt.Errorf("giving up after %d failures in a row: %w", failures, err)
			}
			fmt.Fprintf(warn, "sandboxctl: events: %v; reconnecting\n", err)
			delay = backoff
			if got.retry > 0 {
				delay = got.retry
			}
			backoff = min(2*backoff, eventsMaxBackoff)
		} else {
			failures, backoff = 0, 500*time.Millisecond
			if got.events == 0 {
				delay = max(got.retry, time.Second) // never spin on empty streams
			}
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil
		}
	}
}

// streamResult is where one connection stopped.
type streamResult struct {
	id     string // last event id seen
	events int
	retry  time.Duration
}

// streamEvents reads one connection's events, starting after last ("" =
// now), and hands each lifecycle event to fn.
func streamEvents(ctx context.Context, c *client, q url.Values, last string, warn io.Writer, fn func(event) error) (streamResult, error) {
	var res streamResult
	h := http.Header{"Accept": {"text/event-stream"}}
	if last != "" {
		h.Set("Last-Event-ID", last)
		q = cloneValues(q)
		q.Set("after", last)
	}
	path := "/api/v1/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.request(ctx, http.MethodGet, path, nil, h)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	r := newSSEReader(resp.Body)
	for {
		ev, err := r.next()
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return res, err
		}
		if ev.Retry > 0 {
			res.retry = ev.Retry
		}
		if ev.ID != "" {
			res.id = ev.ID
		}
		if ev.Event == "gap" {
			fmt.Fprintln(warn, "sandboxctl: events: some events were dropped from the log before this point; reread the sandboxes")
			continue
		}
		var e event
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			return res, fmt.Errorf("bad event %s: %w", ev.ID, err)
		}
		if e.ID == "" {
			e.ID = ev.ID
		}
		if e.Type == "" {
			e.Type = ev.Event
		}
		res.events++
		if err := fn(e); err != nil {
			return res, err
		}
	}
}

func cloneValues(q url.Values) url.Values {
	c := url.Values{}
	for k, v := range q {
		c[k] = append([]string(nil), v...)
	}
	return c
}

// eventPrinter prints events: as one aligned table at the end, or line by
// line with fixed columns while following; -json prints one object a line.
type eventPrinter struct {
	e       *env
	live    bool
	started bool
	t       table
}

var eventHeader = []string{"ID", "TIME", "TYPE", "SANDBOX", "OWNER", "STATE", "REASON"}

func eventCells(ev event) []string {
	return []string{ev.ID, ev.Time, ev.Type, ev.SandboxID, ev.Owner, ev.State, ev.Reason}
}

func (p *eventPrinter) collect(ev event) error {
	if p.e.json {
		return json.NewEncoder(p.e.stdout).Encode(ev)
	}
	if !p.live {
		p.t.add(eventCells(ev)...)
		return nil
	}
	if !p.started {
		p.started = true
		p.line(eventHeader)
	}
	p.line(eventCells(ev))
	return nil
}

// line prints fixed-width columns: a followed stream cannot be aligned on
// rows that have not come yet.
func (p *eventPrinter) line(cells []string) {
	widths := []int{12, 30, 10, 16, 12, 11, 0}
	var b strings.Builder
	for i, c := range cells {
		if c == "" {
			c = "-"
		}
		if widths[i] > 0 {
			fmt.Fprintf(&b, "%-*s  ", widths[i], c)
		} else {
			b.WriteString(c)
		}
	}
	fmt.Fprintln(p.e.stdout, strings.TrimRight(b.String(), " "))
}

func (p *eventPrinter) flush() error {
	if p.e.json {
		return nil
	}
	p.t.header = eventHeader
	return p.t.write(p.e.stdout)
}
