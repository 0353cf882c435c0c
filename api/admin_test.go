package api

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/cloud-sandbox/cloud-sandbox/cluster"
)

// TestWithoutPool: a restore keeps every sandbox that had an owner (or
// was on its way to one), drops the warm pool (unowned, idle or pending),
// and leaves a document the FSM still restores.
func TestWithoutPool(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		kept    []string
		dropped int
	}{
		{"the warm pool dropped, the rest kept",
			`{"version":1,"applied_index":9,"pool":{},"sandboxes":[
{"id":"a","state":"idle","pool":true},{"id":"b","state":"active","owner":"alice"},
{"id":"c","state":"pending","owner":"carol"},{"id":"d","state":"paused","owner":"bob"},{"id":"e","state":"idle","pool":true},
{"id":"f","state":"pending","pool":true},{"id":"g","state":"terminating"}],
"sessions":[],"requests":[],"tokens":[]}`,
			[]string{"b", "c", "d", "g"}, 3},
		{"nothing idle: the document as it was",
			`{"version":1,"applied_index":3,"pool":{},"sandboxes":[{"id":"b","state":"active","owner":"alice"}],"sessions":[],"requests":[],"tokens":[]}`,
			[]string{"b"}, 0},
		{"no sandboxes at all",
			`{"version":1,"applied_index":1,"pool":{},"sandboxes":null,"sessions":[],"requests":[],"tokens":[]}`,
			nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, dropped, err := withoutPool([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			if dropped != tt.dropped {
				t.Errorf("dropped %d, want %d", dropped, tt.dropped)
			}
			var doc struct {
				Version      int    `json:"version"`
				AppliedIndex uint64 `json:"applied_index"`
				Sandboxes    []struct {
					ID string `json:"id"`
				} `json:"sandboxes"`
			}
			if err := json.Unmarshal(out, &doc); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, s := range doc.Sandboxes {
				ids = append(ids, s.ID)
			}
			if !slices.Equal(ids, tt.kept) || doc.Version != 1 || doc.AppliedIndex == 0 {
				t.Errorf("kept %v (version %d, index %d), want %v", ids, doc.Version, doc.AppliedIndex, tt.kept)
			}
			if err := cluster.ValidateSnapshot(out); err != nil {
				t.Errorf("the FSM no longer restores the document: %v", err)
			}
		})
	}
	if _, _, err := withoutPool([]byte(`{"sandboxes":{"a":1}}`)); err == nil {
		t.Error("sandboxes that are not a list were accepted")
	}
}
