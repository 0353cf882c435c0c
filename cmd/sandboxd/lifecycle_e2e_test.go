package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLifecycleTimeoutEndsTheSandbox: on a real sandboxd with real
// containers, a sandbox acquired with a 3 s lifetime is ended by the
// reconciler's timer: it leaves the list, its container goes, and the event
// stream says timed_out with the reason. set_timeout before the end moves
// it: a second sandbox given 3 s then 60 s outlives the first.
func TestLifecycleTimeoutEndsTheSandbox(t *testing.T) {
	cluster := uniqueCluster(t)
	n := startNode(t, nodeOpts{cluster: cluster})
	c := n.login(t, "tess", "user")
	var short, extended sandboxView
	c.do("POST", "/api/v1/sandbox/acquire", map[string]any{"timeout": 3, "metadata": map[string]string{"case": "short"}}, 200, &short)
	c.do("POST", "/api/v1/sandbox/acquire", map[string]any{"timeout": 3}, 200, &extended)
	c.do("POST", "/api/v1/sandbox/"+extended.SandboxID+"/timeout", map[string]any{"timeout": 60}, 200, nil)

	eventually(t, "the short-lived sandbox ended", 30*time.Second, func() bool {
		var list struct {
			Sandboxes []sandboxView `json:"sandboxes"`
		}
		c.do("GET", "/api/v1/sandboxes", nil, 200, &list)
		for _, sb := range list.Sandboxes {
			if sb.SandboxID == short.SandboxID {
				return false
			}
		}
		return true
	})
	var got sandboxView
	c.do("GET", "/api/v1/sandbox/"+extended.SandboxID, nil, 200, &got)
	if got.Status != "active" {
		t.Errorf("the sandbox whose timeout was extended is %q, want active", got.Status)
	}
	eventually(t, "its container removed", 30*time.Second, func() bool {
		for _, name := range containers(t, cluster) {
			if strings.Contains(name, short.SandboxID) {
				return false
			}
		}
		return true
	})

	// The event stream tells why.
	req, err := http.NewRequest("GET", n.api+"/api/v1/events?after=0&follow=false&sandbox_id="+short.SandboxID, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var types []string
	var reason string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var ev struct{ Type, Reason string }
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				t.Fatalf("event data %q: %v", data, err)
			}
			types = append(types, ev.Type)
			if ev.Type == "timed_out" {
				reason = ev.Reason
			}
		}
	}
	if joined := strings.Join(types, " "); !strings.Contains(joined, "timed_out") || !strings.HasSuffix(joined, "removed") {
		t.Errorf("events %q, want timed_out then removed", joined)
	}
	if reason != "lifetime expired" {
		t.Errorf("timed_out reason %q, want \"lifetime expired\"", reason)
	}
}
