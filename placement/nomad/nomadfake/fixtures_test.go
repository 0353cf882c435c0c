package nomadfake

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// A copy of shared/fixtures/nomad-1.6.5 (recorded from a real Nomad 1.6.5
// agent), kept in the repo so the test does not depend on what lies beside it.
const fixtureDir = "testdata/nomad-1.6.5"

type fixture struct {
	Request struct {
		Method, Path string
		Body         json.RawMessage
	}
	Response struct {
		Status  int
		Headers map[string]string
		Body    json.RawMessage
	}
}

func loadFixture(t *testing.T, name string) fixture {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(fixtureDir, name+"-*.json"))
	if len(matches) != 1 {
		t.Fatalf("fixture %s: want exactly one file %s/%s-*.json, found %v", name, fixtureDir, name, matches)
	}
	raw, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return f
}

// step replays one recorded request. before runs first (state the recorder
// created out of band); during runs while a blocking request waits; fields
// are the JSON fields compared by value; presence the fields whose presence
// or absence must match.
type step struct {
	name     string
	before   func(r *replay)
	during   func(r *replay)
	fields   []string
	presence []string
	ids      bool // compare the list's ID / JobID set
}

type replay struct {
	t    *testing.T
	s    *Server
	ids  map[string]string // fixture id -> fake id
	last map[string]any    // last JSON object answered
}

// The fixtures' requests, replayed in the recorder's order against the fake:
// status, X-Nomad-* headers and Content-Type, error texts, and the fields the
// driver reads must match. 20* (alloc exec websocket) and 21* (event
// stream) are not replayed: the driver's data path is the agent's own port
// and it waits with blocking queries (placement/DESIGN.md).
func TestFixturesReplay(t *testing.T) {
	s := New(Options{NodeMemoryMB: 16384})
	defer s.Close()
	r := &replay{t: t, s: s, ids: map[string]string{}}
	jobAlloc := func(job string) func(*replay) string {
		return func(r *replay) string { return r.s.Allocs(job)[0] }
	}
	steps := []step{
		{name: "01", fields: []string{"KnownLeader", "LastContact", "NextToken", "Warnings"}, presence: []string{"EvalID", "EvalCreateIndex", "JobModifyIndex", "Index"}},
		{name: "02", fields: []string{"ID", "Type", "Datacenters", "Meta", "Stop"}, presence: []string{"JobModifyIndex", "CreateIndex"}},
		{name: "03", fields: []string{"ClientStatus", "DesiredStatus"}, ids: true},
		{name: "04", during: func(r *replay) { _ = r.s.Run(jobAlloc("sandbox-abc123")(r)) }, fields: []string{"ClientStatus", "DesiredStatus", "ClientDescription"}},
		{name: "06", fields: []string{"ClientStatus", "DesiredStatus", "ClientDescription", "NodeID", "TaskGroup"}, presence: []string{"TaskStates", "NetworkStatus", "AllocatedResources"}},
		{name: "07", fields: []string{"ID", "HTTPAddr", "Status", "NodePool"}},
		{name: "08", fields: []string{"Status", "JobID", "TriggeredBy"}, presence: []string{"FailedTGAllocs", "BlockedEval"}},
		{name: "09", presence: []string{"EvalID"}},
		{name: "05", fields: []string{"ClientStatus", "DesiredStatus"}, presence: []string{"TaskStates", "ClientDescription", "NetworkStatus"}},
		{name: "10", during: func(r *replay) { _ = r.s.Fail(jobAlloc("sandbox-fail01")(r), 1) }, fields: []string{"ClientStatus", "DesiredStatus"}, presence: []string{"TaskStates"}},
		{name: "11", presence: []string{"EvalID"}},
		{name: "12", fields: []string{"Status", "JobID"}, presence: []string{"FailedTGAllocs", "BlockedEval"}},
		{name: "13", fields: []string{"Status", "JobID"}, presence: []string{"FailedTGAllocs"}},
		{name: "14", fields: []string{"ID", "Status", "Stop"}},
		{name: "15", ids: true},
		{name: "16", fields: []string{"JobID", "Summary"}},
		{name: "17", presence: []string{"EvalID", "VolumeEvalID"}},
		{name: "18", fields: []string{"Status", "Stop"}},
		{name: "19a"}, {name: "19b"}, {name: "19c"}, {name: "19d"}, {name: "19e"},
		{name: "19f", presence: []string{"EvalID"}},
		{name: "19g", fields: []string{"Datacenters"}},
		{name: "22", before: func(r *replay) { _ = r.s.Run(jobAlloc("sandbox-nodc01")(r)) }, fields: []string{"Status"}, ids: true},
		{name: "23", ids: true},
		{name: "23b", ids: true},
		{name: "23c", fields: []string{"Meta"}, ids: true},
		{name: "23d"},
		{name: "24", presence: []string{"EvalID"}},
		{name: "25"},
		{name: "26", fields: []string{"ClientStatus", "DesiredStatus"}},
		{name: "27", fields: []string{"ClientStatus", "DesiredStatus"}, ids: true},
		{name: "28", before: func(r *replay) { r.do(http.MethodDelete, "/v1/job/sandbox-nodc01?purge=true", nil) }, fields: []string{"Status"}, ids: true},
		{name: "29"},
		{name: "30"}, {name: "31", ids: true}, {name: "32"},
		{name: "33"},
	}
	// Ids the recorder saw, bound to the fake's as the flow creates them.
	bind := map[string]func(r *replay){
		"03": func(r *replay) { r.ids["f20ddfe4-8f75-9245-00c2-22528ec0dd93"] = r.s.Allocs("sandbox-abc123")[0] },
		"05": func(r *replay) { r.ids["f159820b-6312-7236-9769-26ce187eaf51"] = r.s.Allocs("sandbox-fail01")[0] },
		"01": func(r *replay) { r.ids["f461ea70-1e2b-9441-2bc5-5975d555680f"] = r.s.NodeID() },
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r.t = t
			f := loadFixture(t, st.name)
			if b, ok := bind[st.name]; ok {
				b(r)
			}
			if st.before != nil {
				st.before(r)
			}
			path := r.mapPath(f.Request.Path)
			body := f.Request.Body
			if len(body) > 0 && body[0] == '"' { // raw text sent (19d)
				var s string
				_ = json.Unmarshal(body, &s)
				body = json.RawMessage(s)
			}
			if string(body) == "null" {
				body = nil
			}
			if st.during != nil {
				go func() { time.Sleep(50 * time.Millisecond); st.during(r) }()
			}
			resp, got := r.do(f.Request.Method, path, body)
			r.compare(st, f, resp, got)
			if st.name == "01" || st.name == "11" {
				var m map[string]any
				_ = json.Unmarshal(got, &m)
				want := map[string]string{"01": "8e222eaf-1ea7-224e-e2c6-90074df492bb", "11": "ff91411a-e498-0791-8939-a77eef56907b"}[st.name]
				r.ids[want], _ = m["EvalID"].(string)
			}
			if st.name == "12" {
				var m map[string]any
				_ = json.Unmarshal(got, &m)
				r.ids["dcad6c47-bc8b-c7a0-1403-6ed7a557bf73"], _ = m["BlockedEval"].(string)
			}
		})
	}
}

var indexParam = regexp.MustCompile(`index=\d+`)

// mapPath swaps recorded ids for the fake's and a recorded index for the
// fake's current one (the index a client would have just read).
func (r *replay) mapPath(p string) string {
	for from, to := range r.ids {
		p = strings.ReplaceAll(p, from, to)
	}
	if indexParam.MatchString(p) {
		table := tableAllocs
		if strings.HasPrefix(p, "/v1/jobs") {
			table = tableJobs
		}
		r.s.mu.Lock()
		idx := r.s.tables[table]
		r.s.mu.Unlock()
		p = indexParam.ReplaceAllString(p, "index="+itoa(idx))
		p = strings.Replace(p, "wait=2s", "wait=300ms", 1)
	}
	return p
}

func itoa(n uint64) string { return strings.TrimSpace(strings.Replace(jsonString(n), `"`, "", -1)) }

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

func (r *replay) do(method, path string, body []byte) (*http.Response, []byte) {
	req, err := http.NewRequest(method, r.s.URL()+path, strings.NewReader(string(body)))
	if err != nil {
		r.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (r *replay) compare(st step, f fixture, resp *http.Response, got []byte) {
	t := r.t
	if resp.StatusCode != f.Response.Status {
		t.Fatalf("status %d, recorded %d; body %s", resp.StatusCode, f.Response.Status, got)
	}
	var want, have []string
	for k := range f.Response.Headers {
		if strings.HasPrefix(k, "X-Nomad-") {
			want = append(want, k)
		}
	}
	for k := range resp.Header {
		if strings.HasPrefix(k, "X-Nomad-") {
			have = append(have, k)
		}
	}
	sort.Strings(want)
	sort.Strings(have)
	if !reflect.DeepEqual(want, have) {
		t.Errorf("X-Nomad headers %v, recorded %v", have, want)
	}
	if ct := f.Response.Headers["Content-Type"]; ct != resp.Header.Get("Content-Type") {
		t.Errorf("Content-Type %q, recorded %q", resp.Header.Get("Content-Type"), ct)
	}
	if strings.HasPrefix(f.Response.Headers["Content-Type"], "text/plain") {
		var text string
		_ = json.Unmarshal(f.Response.Body, &text)
		if string(got) != text {
			t.Errorf("error text %q, recorded %q", got, text)
		}
		return
	}
	if f.Response.Status != http.StatusOK || len(f.Response.Body) == 0 || string(f.Response.Body) == `""` {
		return
	}
	var wantBody, haveBody any
	if err := json.Unmarshal(f.Response.Body, &wantBody); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &haveBody); err != nil {
		t.Fatalf("body is not JSON: %s", got)
	}
	wl, isList := wantBody.([]any)
	if isList {
		hl, _ := haveBody.([]any)
		if st.ids && !reflect.DeepEqual(listIDs(wl), r.mapIDs(listIDs(hl))) {
			t.Errorf("listed %v, recorded %v", r.mapIDs(listIDs(hl)), listIDs(wl))
		}
		for i := range wl {
			if i < len(hl) {
				r.compareObject(st, wl[i].(map[string]any), hl[i].(map[string]any))
			}
		}
		return
	}
	r.compareObject(st, wantBody.(map[string]any), haveBody.(map[string]any))
}

func (r *replay) compareObject(st step, want, have map[string]any) {
	for _, k := range st.fields {
		w, h := want[k], have[k]
		if k == "ID" || k == "NodeID" || k == "HTTPAddr" {
			if hs, ok := h.(string); ok {
				h = r.unmap(hs)
			}
			if k == "HTTPAddr" {
				continue // the fake's node listens elsewhere; presence is checked below
			}
		}
		if !reflect.DeepEqual(w, h) {
			r.t.Errorf("%s = %#v, recorded %#v", k, h, w)
		}
	}
	for _, k := range st.presence {
		_, w := want[k]
		_, h := have[k]
		if w != h {
			r.t.Errorf("field %s present %v, recorded %v", k, h, w)
		}
	}
}

func (r *replay) unmap(id string) string {
	for from, to := range r.ids {
		if to == id {
			return from
		}
	}
	return id
}

func (r *replay) mapIDs(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = r.unmap(id)
	}
	return out
}

func listIDs(l []any) []string {
	out := []string{}
	for _, e := range l {
		m := e.(map[string]any)
		id, _ := m["ID"].(string)
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}
