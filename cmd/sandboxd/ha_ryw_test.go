package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// haRYW counts the workload's read-your-writes checks. After every
// acknowledged write the client reads what it wrote on another node twice at
// once: with the index the write's answer carried (the contract: never
// missing) and without it (allowed to be stale: only counted).
type haRYW struct {
	checks int // writes read back with their index
	// missing: with the index, the read did not show the write (a 404 for
	// an acquire or session, an active sandbox after its release). Fails
	// the test.
	missing    int
	violations []string
	// unavailable: with the index, no other node answered 2xx or 404 (a
	// killed or cut-off node, an index wait that timed out). Not a
	// violation: the client would retry.
	unavailable int

	plain        int            // reads without the index that got an answer
	plainMissing map[string]int // ... that did not show the write, by write (acquire, release, session)
	plainBehind  int            // ... whose X-Cloud-Sandbox-Index was below the write's
}

func (r haRYW) String() string {
	missing := 0
	var by []string
	for _, k := range []string{"acquire", "session", "release"} {
		missing += r.plainMissing[k]
		by = append(by, fmt.Sprintf("%s %d", k, r.plainMissing[k]))
	}
	return fmt.Sprintf("%d writes read back on another node with their index: %d missing, %d with no node available; "+
		"without the index: %d reads, %d missing the write (%s), %d answered from a state before the write",
		r.checks, r.missing, r.unavailable, r.plain, missing, strings.Join(by, ", "), r.plainBehind)
}

// haShows says whether a read's answer (status and body) shows the write.
type haShows func(status int, raw []byte) bool

// haActive: the object exists for its owner (acquire, session create).
func haActive(status int, raw []byte) bool { return status == 200 }

// haNotActive: a released sandbox is terminating or gone, never active.
func haNotActive(status int, raw []byte) bool {
	if status == 404 {
		return true
	}
	var v struct {
		Status string `json:"status"`
	}
	return status == 200 && json.Unmarshal(raw, &v) == nil && v.Status != "active"
}

// rywClient bounds one read-back: the index wait (INDEX_WAIT_TIMEOUT 5 s)
// and the catch-up before a 404 fit in it.
var rywClient = &http.Client{Timeout: 12 * time.Second}

// readBack reads path right after a write acknowledged by wrote at index,
// on the other nodes in turn (the next that answers), with and without the
// index at the same moment.
func (w *haWorkload) readBack(cl *haClient, wrote *haNode, index uint64, what, path string, shows haShows) {
	var others []*haNode
	for i := range w.c.nodes {
		if w.c.nodes[i] == wrote {
			for j := 1; j < len(w.c.nodes); j++ {
				others = append(others, w.c.nodes[(i+j)%len(w.c.nodes)])
			}
		}
	}
	if index == 0 {
		w.mu.Lock()
		w.ryw.violations = append(w.ryw.violations, fmt.Sprintf("%s: the answer from %s carried no %s", what, wrote.id, haIndexHeader))
		w.mu.Unlock()
	}
	rc := &haClient{c: cl.c, user: cl.user, token: cl.token, hc: rywClient}
	answered := func(status int, err error) bool { return err == nil && (status/100 == 2 || status == 404) }

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // without the index: counted, never a failure
		defer wg.Done()
		for _, n := range others {
			status, raw, got, err := rc.sendAt(n, "GET", path, "", nil, 0)
			if !answered(status, err) {
				continue
			}
			w.mu.Lock()
			w.ryw.plain++
			if !shows(status, raw) {
				if w.ryw.plainMissing == nil {
					w.ryw.plainMissing = map[string]int{}
				}
				w.ryw.plainMissing[strings.Fields(what)[0]]++
			}
			if got < index {
				w.ryw.plainBehind++
			}
			w.mu.Unlock()
			return
		}
	}()
	defer wg.Wait()

	for _, n := range others {
		status, raw, got, err := rc.sendAt(n, "GET", path, "", nil, index)
		if !answered(status, err) {
			continue
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.ryw.checks++
		if !shows(status, raw) || got < index {
			w.ryw.missing++
			w.ryw.violations = append(w.ryw.violations, fmt.Sprintf("%s: written on %s at index %d; GET %s on %s with the index: status %d, answer index %d: %s",
				what, wrote.id, index, path, n.id, status, got, raw))
		}
		return
	}
	w.mu.Lock()
	w.ryw.checks++
	w.ryw.unavailable++
	w.mu.Unlock()
}
