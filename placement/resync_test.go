package placement

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// TestResyncFailsOnlyWhatWasPlacedBeforeItsList: a container listed while
// it was still being created (not running yet) whose placement is recorded
// while the list is in flight is not a dead sandbox; one recorded before
// the list is. The first case failed acknowledged sandboxes in the HA
// rolling-upgrade test ("sandbox is failed" 40 ms after its acquire).
func TestResyncFailsOnlyWhatWasPlacedBeforeItsList(t *testing.T) {
	cases := []struct {
		name string
		// placedDuringList records the placement from inside List.
		placedDuringList bool
		// listedContainer is the container id the list reports.
		listedContainer string
		wantFailed      bool
	}{
		{name: "placed while the list ran", placedDuringList: true, listedContainer: "c-x", wantFailed: false},
		{name: "placed before the list, container stopped", placedDuringList: false, listedContainer: "c-x", wantFailed: true},
		{name: "placed before the list, another container of its name stopped", placedDuringList: false, listedContainer: "c-old", wantFailed: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := fsm.New()
			apply := &directApplier{f: f}
			ctx := context.Background()
			must := func(c fsm.Command) {
				if _, err := apply.Apply(ctx, c); err != nil {
					t.Fatalf("apply %T: %v", c, err)
				}
			}
			must(&fsm.SetPool{Pool: testPool})
			must(&fsm.SandboxAcquire{Owner: "ann", NewID: "x"})
			placed := &fsm.SandboxPlaced{ID: "x", Placement: fsm.Placement{Driver: "mem", ContainerID: "c-x"}}
			d := newMemDriver()
			d.instances["x"] = &Instance{SandboxID: "x", Placement: fsm.Placement{Driver: "mem", ContainerID: tc.listedContainer},
				Running: false, Status: "created"}
			if tc.placedDuringList {
				d.onList = func() { must(placed) }
			} else {
				must(placed)
			}
			r := New(Config{Metrics: NewMetrics(prometheus.NewRegistry()), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, d, apply, f)
			r.beginTerm()
			r.resync(ctx)
			sb, err := f.Sandbox("x")
			if err != nil {
				t.Fatal(err)
			}
			if failed := sb.State == fsm.StateFailed; failed != tc.wantFailed {
				t.Errorf("sandbox %s (%s), want failed %v", sb.State, sb.FailReason, tc.wantFailed)
			}
		})
	}
}
