package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// LandlockMode says whether the agent confines writes with Landlock.
type LandlockMode string

// Landlock modes: off never restricts; auto restricts when the kernel offers
// Landlock and otherwise logs a warning and runs uncontained; on refuses to
// start uncontained.
const (
	LandlockOff  LandlockMode = "off"
	LandlockAuto LandlockMode = "auto"
	LandlockOn   LandlockMode = "on"
)

// ParseLandlockMode reads a -landlock flag value.
func ParseLandlockMode(s string) (LandlockMode, error) {
	switch m := LandlockMode(strings.ToLower(strings.TrimSpace(s))); m {
	case LandlockOff, LandlockAuto, LandlockOn:
		return m, nil
	}
	return "", fmt.Errorf("landlock mode %q: want auto, on or off", s)
}

// WriteContainment confines where the agent and every process it starts can
// write: beneath WritePaths, plus writes to existing files (devices, proc
// tunables) under /dev and /proc. Reads are not restricted. It exists because
// a sandbox can have host directories mounted that no size limit covers (under
// Nomad, /alloc and /local) and that Docker cannot hide. The zero value is off.
type WriteContainment struct {
	Mode LandlockMode
	// WritePaths get every write access beneath them (create, write,
	// truncate, remove, rename, link). Empty: DefaultWritePaths(workdir).
	WritePaths []string
}

// DefaultWritePaths is where a sandbox writes: its workspace and the
// size-limited tmpfs mounts /tmp and /dev/shm.
func DefaultWritePaths(workdir string) []string {
	return []string{workdir, "/tmp", "/dev/shm"}
}

// existingFileWritePaths hold pseudo-files (devices such as /dev/null and
// /dev/tty, proc tunables such as /proc/self/oom_score_adj) that may be
// opened for writing; nothing can be created there, and nothing written
// there reaches a disk.
var existingFileWritePaths = []string{"/dev", "/proc"}

// containedABI is the Landlock ABI this process runs under, 0 when it is not
// contained. A Landlock domain belongs to the process, so this is global.
var containedABI atomic.Int32

// ContainedABI reports the Landlock ABI version the agent process and its
// children are confined under, or 0 when writes are not contained.
func ContainedABI() int { return int(containedABI.Load()) }

// apply restricts this process, once and for good. socketDir, when set, is
// the directory of the agent's unix socket: the agent may remove its socket
// there on exit (a file its uid could remove anyway; nothing is written).
// Once restricted it executes itself again (see landlock_reexec.go) handing
// over l; the new image calls apply with the inherited ABI, which it only
// records. It returns an error only when the containment asked for cannot
// be had.
func (c WriteContainment) apply(log *slog.Logger, workdir, socketDir string, l net.Listener, inherited int) error {
	if inherited > 0 {
		containedABI.Store(int32(inherited))
		log.Info("agent: write containment on", "landlock_abi", inherited, "inherited", true)
		return nil
	}
	if c.Mode == "" || c.Mode == LandlockOff {
		log.Warn("agent: write containment off: processes can write wherever their uid may", "landlock", LandlockOff)
		return nil
	}
	abi, err := landlockABI()
	if err != nil {
		if c.Mode == LandlockOn {
			return fmt.Errorf("agent: write containment: -landlock=on but this kernel offers no Landlock: %w", err)
		}
		log.Warn("agent: write containment unavailable: processes can write wherever their uid may", "landlock", c.Mode, "err", err)
		return nil
	}
	paths := c.WritePaths
	if len(paths) == 0 {
		paths = DefaultWritePaths(workdir)
	}
	handled := llHandledWrites(abi)
	rules := make([]llRule, 0, len(paths)+len(existingFileWritePaths)+1)
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("agent: write containment: write path %q is not absolute", p)
		}
		rules = append(rules, llRule{path: filepath.Clean(p), access: handled})
	}
	for _, p := range existingFileWritePaths {
		rules = append(rules, llRule{path: p, access: unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE})
	}
	if socketDir != "" {
		rules = append(rules, llRule{path: socketDir, access: unix.LANDLOCK_ACCESS_FS_REMOVE_FILE})
	}
	missing, err := llRestrict(handled, rules)
	if err != nil {
		// With cgo linked the runtime cannot reach every thread; the agent
		// is built without cgo, so this is a build mistake, not a kernel gap.
		if errors.Is(err, syscall.ENOTSUP) && c.Mode == LandlockAuto {
			log.Warn("agent: write containment unavailable: binary built with cgo", "err", err)
			return nil
		}
		return fmt.Errorf("agent: write containment: %w", err)
	}
	if len(missing) > 0 {
		log.Warn("agent: write containment: paths missing, nothing can be written there", "paths", missing)
	}
	if abi < 2 {
		log.Warn("agent: write containment: Landlock ABI 1 refuses every rename or link across directories (EXDEV)", "landlock_abi", abi)
	}
	log.Info("agent: write containment on; executing again to leave one domain", "landlock_abi", abi, "write_paths", paths, "existing_file_write_paths", existingFileWritePaths)
	err = reexecContained(l, abi)
	// Still here: every thread is restricted, each in its own domain.
	containedABI.Store(int32(abi))
	log.Warn("agent: write containment on, but processes started from different threads cannot ptrace or inspect each other", "err", err)
	return nil
}

// unixSocketDir is the directory of a unix:// listen address, "" otherwise.
func unixSocketDir(listen string) string {
	sock, ok := strings.CutPrefix(listen, "unix://")
	if !ok || !filepath.IsAbs(sock) {
		return ""
	}
	return filepath.Dir(sock)
}
