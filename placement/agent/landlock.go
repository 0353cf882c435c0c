package agent

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The Landlock system calls, written out here rather than taken from a
// library: three syscalls and two structs are less to trust than a
// dependency, and the agent must stay static (CGO_ENABLED=0).

// Write-type file system accesses Landlock can handle, by the ABI version
// that introduced them. Reads and execution are never handled: the sandbox
// may read and run anything its uid can.
const (
	// llWritesV1 are ABI 1's write accesses.
	llWritesV1 = unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
		unix.LANDLOCK_ACCESS_FS_REMOVE_DIR |
		unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR |
		unix.LANDLOCK_ACCESS_FS_MAKE_DIR |
		unix.LANDLOCK_ACCESS_FS_MAKE_REG |
		unix.LANDLOCK_ACCESS_FS_MAKE_SOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_FIFO |
		unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	// llFileAccesses are the accesses a rule on a non-directory may grant.
	llFileAccesses = unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_FILE |
		unix.LANDLOCK_ACCESS_FS_EXECUTE |
		unix.LANDLOCK_ACCESS_FS_TRUNCATE |
		unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
)

// llHandledWrites is every write access the kernel's ABI can refuse. Refer
// (ABI 2) governs moving and linking between directories; without it ABI 1
// refuses every such move (EXDEV). Truncate (ABI 3) stops truncate(2) and
// O_TRUNC outside the allowed paths. ioctl_dev (ABI 5) is left out: it is no
// write, guards nothing on disk, and would only risk breaking terminals.
func llHandledWrites(abi int) uint64 {
	a := uint64(llWritesV1)
	if abi >= 2 {
		a |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		a |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	return a
}

// llRule allows access beneath path (or to path, when it is a file).
type llRule struct {
	path   string
	access uint64
}

// landlockABI is the Landlock ABI version the kernel offers. An error means
// none: not built in (ENOSYS), disabled at boot (EOPNOTSUPP), or refused by
// a seccomp filter (EPERM, ENOSYS).
func landlockABI() (int, error) {
	v, _, e := syscall.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		return 0, fmt.Errorf("landlock_create_ruleset(version): %w", e)
	}
	return int(v), nil
}

// errRuleTarget is a rule whose path cannot be opened; the caller decides
// whether a missing path matters.
type errRuleTarget struct {
	path string
	err  error
}

func (e *errRuleTarget) Error() string { return fmt.Sprintf("landlock rule %s: %v", e.path, e.err) }
func (e *errRuleTarget) Unwrap() error { return e.err }

// llRestrict builds a ruleset that handles the accesses in handled and
// grants each rule's, then restricts every thread of this process (and so
// every process it starts from now on) to it. A rule whose path does not
// exist is skipped and reported in missing. It must run in a binary built
// with CGO_ENABLED=0: with cgo, syscall.AllThreadsSyscall cannot reach the
// C threads and returns ENOTSUP.
func llRestrict(handled uint64, rules []llRule) (missing []string, err error) {
	attr := unix.LandlockRulesetAttr{Access_fs: handled}
	fd, _, e := syscall.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if e != 0 {
		return nil, fmt.Errorf("landlock_create_ruleset: %w", e)
	}
	ruleset := int(fd)
	defer syscall.Close(ruleset)
	syscall.CloseOnExec(ruleset)

	for _, r := range rules {
		if err := llAddRule(ruleset, r.path, r.access&handled); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				missing = append(missing, r.path)
				continue
			}
			return missing, err
		}
	}
	// no_new_privs is what lets an unprivileged process restrict itself;
	// Docker's no-new-privileges sets it already, a plain start does not.
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return missing, fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS) on all threads: %w", e)
	}
	// Each thread gets the ruleset; every thread created later and every
	// child inherits its creator's domain. The kernel refuses to undo it.
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(ruleset), 0, 0); e != 0 {
		return missing, fmt.Errorf("landlock_restrict_self on all threads: %w", e)
	}
	return missing, nil
}

// llAddRule grants access beneath path. A file (not a directory) can only
// carry file accesses, so the rest are dropped for it.
func llAddRule(ruleset int, path string, access uint64) error {
	fd, err := syscall.Open(path, unix.O_PATH|syscall.O_CLOEXEC, 0)
	if err != nil {
		return &errRuleTarget{path: path, err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return &errRuleTarget{path: path, err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		access &= llFileAccesses
	}
	if access == 0 {
		return nil
	}
	attr := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(fd)}
	if _, _, e := syscall.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH,
		uintptr(unsafe.Pointer(&attr)), 0, 0, 0); e != 0 {
		return fmt.Errorf("landlock_add_rule %s: %w", path, e)
	}
	return nil
}
