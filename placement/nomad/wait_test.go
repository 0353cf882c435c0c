package nomad

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"

	"github.com/cloud-sandbox/cloud-sandbox/placement"
)

// The events below are the shapes a real Nomad 1.6.5 client reported for
// each failure (see placement/DESIGN.md).
func TestAllocFailedCarriesNomadsReason(t *testing.T) {
	const image = "python:3.11-slim"
	cases := []struct {
		name      string
		desc      string
		events    []*api.TaskEvent
		wantImage bool
		want      []string
	}{
		{name: "failed validation",
			events: []*api.TaskEvent{
				{Type: "Received", DisplayMessage: "Task received by client"},
				{Type: "Failed Validation", FailsTask: true, ValidationError: `1 error occurred: No argument or block type is named "oom_score_adj"`},
			},
			want: []string{"Failed Validation", "oom_score_adj"}},
		{name: "pull of the sandbox image",
			events: []*api.TaskEvent{
				{Type: "Driver Failure", FailsTask: true, DriverError: "Failed to pull `" + image + "`: connection refused"},
			},
			wantImage: true},
		{name: "a failure naming another image is not the sandbox's image",
			events: []*api.TaskEvent{
				{Type: "Driver Failure", FailsTask: true, DriverError: "Failed to pull `registry.local/pause:3.1`: no such image"},
			},
			want: []string{"Driver Failure", "pause:3.1"}},
		{name: "agent exits",
			events: []*api.TaskEvent{
				{Type: "Started"},
				{Type: "Terminated", ExitCode: 2, DisplayMessage: "Exit Code: 2"},
			},
			want: []string{"Terminated: Exit Code: 2"}},
		{name: "network setup, no task event",
			desc: `failed to setup alloc: pre-run hook "network" failed: failed to configure networking for alloc`,
			want: []string{"pre-run hook \"network\" failed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := allocFailed("a1", "failed", tc.desc, image, map[string]*api.TaskState{taskName: {Events: tc.events}})
			var inf *placement.ImageNotFoundError
			if got := errors.As(err, &inf); got != tc.wantImage {
				t.Fatalf("ImageNotFoundError = %v, want %v: %v", got, tc.wantImage, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestClientsFitAndVersion(t *testing.T) {
	c := clients{nodes: []nodeRoom{{freeMHz: 5192, freeMemMB: 24000}, {freeMHz: 1000, freeMemMB: 100}}}
	if got := c.fits(649, 512); got != 8 {
		t.Errorf("fits(649 MHz, 512 MB) = %d, want 8 (the second node holds none)", got)
	}
	for _, tc := range []struct {
		v    string
		want bool
	}{{"1.6.5", false}, {"1.8.0", true}, {"1.10.2-dev", true}, {"", false}} {
		if got := parseVersion(tc.v).atLeast(1, 8); got != tc.want {
			t.Errorf("%q at least 1.8 = %v, want %v", tc.v, got, tc.want)
		}
	}
}
