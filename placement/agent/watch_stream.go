package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"
)

// watchHeartbeat is how often an idle stream writes a newline, so a client
// gone away is noticed by a failed write even if its close was not (a
// half-open connection), and proxies see traffic.
const watchHeartbeat = 15 * time.Second

// handleWatch streams a directory's changes as NDJSON until the client goes
// away, the directory disappears, or the agent shuts down.
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) {
	p, err := queryPath(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	recursive, _ := strconv.ParseBool(r.URL.Query().Get("recursive"))
	if !s.watchSlots.TryAcquire() {
		s.writeError(w, &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
			Message: fmt.Sprintf("this sandbox already serves %d watch streams", s.cfg.MaxWatchStreams)})
		return
	}
	defer s.watchSlots.Release()
	fi, err := os.Stat(p)
	if err != nil {
		s.writeError(w, fmt.Errorf("watch: %w", err))
		return
	}
	if !fi.IsDir() {
		s.writeError(w, errBadRequest("watch: %s is not a directory", p))
		return
	}
	wt, err := newWatcher(p, recursive, s.cfg.MaxWatchDirs)
	if err != nil {
		s.writeError(w, err)
		return
	}
	// The reader below blocks in Read; closing the descriptor is what ends
	// it, whichever way the stream ends, and stop frees it from a send.
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	type batch struct {
		events []WatchEvent
		done   bool
		err    error
	}
	batches := make(chan batch, 1)
	go func() {
		defer close(readerDone)
		buf := make([]byte, 64<<10)
		for {
			evs, done, err := wt.read(buf)
			select {
			case batches <- batch{evs, done, err}:
			case <-stop:
				return
			}
			if done || err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); wt.close(); <-readerDone }()

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	send := func(evs ...WatchEvent) bool {
		for _, ev := range evs {
			if enc.Encode(ev) != nil {
				return false
			}
		}
		return rc.Flush() == nil
	}
	if !send(WatchEvent{Type: WatchReady, Path: p}) {
		return
	}
	tick := time.NewTicker(watchHeartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			send(WatchEvent{Type: WatchError, Path: p, Data: "the sandbox agent is shutting down"})
			return
		case <-tick.C:
			if _, err := w.Write([]byte("\n")); err != nil || rc.Flush() != nil {
				return
			}
		case b := <-batches:
			if b.err != nil {
				s.log.Debug("agent: watch read", "path", p, "err", b.err)
				send(WatchEvent{Type: WatchError, Path: p, Data: b.err.Error()})
				return
			}
			if !send(b.events...) || b.done {
				return
			}
		}
	}
}
