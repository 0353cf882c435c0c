package agent

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseLandlockMode(t *testing.T) {
	tests := []struct {
		in      string
		want    LandlockMode
		wantErr bool
	}{
		{"auto", LandlockAuto, false},
		{"on", LandlockOn, false},
		{"off", LandlockOff, false},
		{" ON ", LandlockOn, false},
		{"", "", true},
		{"yes", "", true},
		{"true", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLandlockMode(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseLandlockMode(%q) = %q, %v; want %q, error %t", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestHandledWrites: every write-type access the ABI knows is handled (so
// refused outside the allow-list), and reads, execution and ioctl never are.
func TestHandledWrites(t *testing.T) {
	never := uint64(unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR |
		unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV)
	tests := []struct {
		abi          int
		wantRefer    bool
		wantTruncate bool
	}{
		{1, false, false},
		{2, true, false},
		{3, true, true},
		{7, true, true},
	}
	for _, tt := range tests {
		got := llHandledWrites(tt.abi)
		if got&llWritesV1 != llWritesV1 {
			t.Errorf("ABI %d: handled %#x misses ABI 1 writes %#x", tt.abi, got, uint64(llWritesV1))
		}
		if has := got&unix.LANDLOCK_ACCESS_FS_REFER != 0; has != tt.wantRefer {
			t.Errorf("ABI %d: refer handled %t, want %t", tt.abi, has, tt.wantRefer)
		}
		if has := got&unix.LANDLOCK_ACCESS_FS_TRUNCATE != 0; has != tt.wantTruncate {
			t.Errorf("ABI %d: truncate handled %t, want %t", tt.abi, has, tt.wantTruncate)
		}
		if got&never != 0 {
			t.Errorf("ABI %d: handled %#x includes a read, execute or ioctl access", tt.abi, got)
		}
	}
}

func TestDefaultWritePaths(t *testing.T) {
	got := DefaultWritePaths("/workspace")
	if want := []string{"/workspace", "/tmp", "/dev/shm"}; !slices.Equal(got, want) {
		t.Fatalf("DefaultWritePaths = %v, want %v", got, want)
	}
}

func TestUnixSocketDir(t *testing.T) {
	tests := []struct{ listen, want string }{
		{"unix:///run/sandbox/agent.sock", "/run/sandbox"},
		{"unix://relative.sock", ""},
		{"tcp://0.0.0.0:7777", ""},
	}
	for _, tt := range tests {
		if got := unixSocketDir(tt.listen); got != tt.want {
			t.Errorf("unixSocketDir(%q) = %q, want %q", tt.listen, got, tt.want)
		}
	}
}

func TestIsHandoffEnv(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{envListenFD, true},
		{envLandlockABI, true},
		{"SANDBOX_AGENT_SECRET", false},
		{"PATH", false},
	}
	for _, tt := range tests {
		if got := IsHandoffEnv(tt.name); got != tt.want {
			t.Errorf("IsHandoffEnv(%q) = %t, want %t", tt.name, got, tt.want)
		}
	}
}
