package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The sandbox's memory cgroup holds the user's memory and the tmpfs pages
// of its disks (the driver sizes the limit as their sum, see
// placement/DESIGN.md "Abuse"). Two things keep the agent alive and the
// user's processes within the memory they asked for:
//
//   - every exec is marked oom_score_adj 1000 (raising needs no privilege,
//     and its descendants inherit it), so when the kernel must kill in the
//     cgroup it kills user processes, never the agent (which stays at what
//     the container gave it: lowering would need CAP_SYS_RESOURCE);
//   - the memory guard polls the cgroup's anonymous memory and kills the
//     largest user process once it exceeds the limit less the tmpfs sizes,
//     which is the memory the user asked for when the driver sized the
//     cgroup so and says so (SANDBOX_MEMORY_GUARD=on). The cgroup limit
//     stays the hard bound; the guard adds the user's own bound beneath it.

// userOOMScoreAdj is the most killable score: the kernel's OOM killer picks
// a process at 1000 before any other that is not also at 1000.
const userOOMScoreAdj = 1000

// guardInterval is how often the guard reads the cgroup's memory use: a
// process can outgrow the user's limit by what it allocates in this time,
// never the cgroup's limit.
const guardInterval = 100 * time.Millisecond

// agentSoftMemoryLimit is the heap size above which the agent's Go runtime
// collects garbage eagerly; a soft limit, never a failure.
const agentSoftMemoryLimit = 32 << 20

// agentThreads is how many OS threads the agent creates before the first
// exec. Threads count toward the pids limit: during a fork bomb the Go
// runtime could not start one (it retries for ~0.2 s, then aborts), and the
// agent died; threads it made earlier stay parked for reuse.
const agentThreads = 16

// guardMinBudget is the smallest user budget the guard enforces: below it
// the container was not sized with room for its tmpfs after all, and the
// cgroup limit alone applies.
const guardMinBudget = 16 << 20

// markUserProcess makes pid the OOM killer's first choice. It runs right
// after the start: a process forked in the microseconds between keeps the
// agent's score, and only the cgroup limit (the kernel, by size) bounds it.
func markUserProcess(log *slog.Logger, pid int) {
	err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte(strconv.Itoa(userOOMScoreAdj)), 0)
	if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ESRCH) {
		log.Debug("agent: raise oom_score_adj", "pid", pid, "err", err)
	}
}

// guardOnce starts one memory guard per agent process: it watches the
// process's own cgroup, whichever Server started the exec.
var guardOnce sync.Once

// startMemoryGuard starts the guard if the cgroup has a limit that leaves
// room for a user budget; otherwise it logs why not and does nothing.
func startMemoryGuard(log *slog.Logger) {
	guardOnce.Do(func() {
		reserveThreads(agentThreads)
		// The agent's garbage counts toward the user's memory: collect it
		// before the heap doubles (an output flood at the 64 MiB cap held
		// ~570 MB at peak without this), unless GOMEMLIMIT says otherwise.
		if os.Getenv("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(agentSoftMemoryLimit)
		}
		g, err := newMemoryGuard(log)
		if err != nil {
			log.Info("agent: no memory guard; the cgroup limit alone applies", "reason", err)
			return
		}
		log.Info("agent: memory guard", "budget_bytes", g.budget, "cgroup_limit_bytes", g.limit, "tmpfs_bytes", g.limit-g.budget)
		go g.run()
	})
}

// memoryGuard enforces budget on the cgroup's anonymous memory.
type memoryGuard struct {
	log    *slog.Logger
	stat   string // memory.stat of the cgroup
	key    string // its anonymous-memory line: total_rss (v1) or anon (v2)
	limit  int64
	budget int64
	// tmpfsInAnon: the anonymous count includes file data in tmpfs (gVisor
	// keeps tmpfs in its own anonymous memory), so it is subtracted.
	tmpfsInAnon bool
}

// GuardEnv is set to "on" by a driver that sizes the cgroup as the user's
// memory plus its tmpfs: only then is the limit less the tmpfs the user's
// memory, and only then does the guard run.
const GuardEnv = "SANDBOX_MEMORY_GUARD"

func newMemoryGuard(log *slog.Logger) (*memoryGuard, error) {
	if v := os.Getenv(GuardEnv); v != "on" {
		return nil, fmt.Errorf("%s=%q, not on: the cgroup limit is the user's memory", GuardEnv, v)
	}
	g := &memoryGuard{log: log.With("component", "memory-guard")}
	// cgroup v2 first; v1 as Docker mounts it at /sys/fs/cgroup/memory.
	for _, c := range []struct{ max, stat, key string }{
		{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.stat", "anon"},
		{"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.stat", "total_rss"},
	} {
		b, err := os.ReadFile(c.max)
		if err != nil {
			continue
		}
		limit, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("memory limit %s: %q: no limit", c.max, strings.TrimSpace(string(b)))
		}
		g.stat, g.key, g.limit = c.stat, c.key, limit
		break
	}
	if g.stat == "" {
		// gVisor shows no cgroup files, but its /proc/meminfo is the
		// sandbox's own: MemTotal is the container's limit.
		total, err := meminfo("MemTotal:")
		if err != nil {
			return nil, fmt.Errorf("no memory cgroup visible, and %w", err)
		}
		g.stat, g.key, g.limit = "/proc/meminfo", "AnonPages:", total
		g.tmpfsInAnon = true
	}
	tmpfs, err := writableTmpfsBytes()
	if err != nil {
		return nil, err
	}
	g.budget = g.limit - tmpfs
	if g.budget < guardMinBudget || g.limit >= 1<<60 {
		return nil, fmt.Errorf("memory limit %d bytes leaves no room beside %d bytes of tmpfs", g.limit, tmpfs)
	}
	if _, err := g.anon(); err != nil {
		return nil, err
	}
	return g, nil
}

// writableTmpfsBytes is the size of every tmpfs this process may write:
// the memory the user can fill as files (/workspace, /tmp, /dev/shm).
func writableTmpfsBytes() (int64, error) {
	size, _, err := writableTmpfs()
	return size, err
}

// writableTmpfs is the size of every tmpfs this process may write and how
// much of it is used.
func writableTmpfs() (size, used int64, err error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, 0, fmt.Errorf("read mountinfo: %w", err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options ... - fstype source super-options
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 1 || g[0] != "tmpfs" {
			continue
		}
		// Docker binds /dev/null of the /dev tmpfs over /proc/keys: a
		// writable file, not a directory anyone can fill.
		dir := unescapeMount(f[4])
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || seen[f[2]] || syscall.Access(dir, 2 /* W_OK */) != nil {
			continue
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			continue
		}
		seen[f[2]] = true // one tmpfs mounted twice counts once
		size += int64(st.Blocks) * st.Bsize
		used += int64(st.Blocks-st.Bfree) * st.Bsize
	}
	return size, used, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 is a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// anon reads the cgroup's anonymous memory: what processes hold, not files.
func (g *memoryGuard) anon() (int64, error) {
	b, err := os.ReadFile(g.stat)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", g.stat, err)
	}
	anon, err := statValue(b, g.stat, g.key)
	if err != nil || !g.tmpfsInAnon {
		return anon, err
	}
	_, used, err := writableTmpfs()
	return max(0, anon-used), err
}

// statValue reads key's value in bytes from a memory.stat ("anon 123") or
// /proc/meminfo ("AnonPages:  120 kB") document.
func statValue(b []byte, name, key string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != key {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if len(f) == 3 && f[2] == "kB" {
			v <<= 10
		}
		return v, err
	}
	return 0, fmt.Errorf("%s has no %s", name, key)
}

// meminfo reads one /proc/meminfo value in bytes.
func meminfo(key string) (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("read meminfo: %w", err)
	}
	return statValue(b, "/proc/meminfo", key)
}

func (g *memoryGuard) run() {
	t := time.NewTicker(guardInterval)
	defer t.Stop()
	for range t.C {
		anon, err := g.anon()
		if err != nil {
			g.log.Warn("agent: memory guard stopped", "err", err)
			return
		}
		if anon <= g.budget {
			continue
		}
		pid, rss := largestUserProcess()
		if pid == 0 {
			continue // only the agent's own memory: the cgroup limit decides
		}
		g.log.Warn("agent: sandbox memory over the user's limit; killed the largest process",
			"pid", pid, "rss_bytes", rss, "anon_bytes", anon, "budget_bytes", g.budget)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// largestUserProcess is the process with the most resident memory among
// those marked for the OOM killer (every exec and its descendants), or 0.
func largestUserProcess() (pid int, rss int64) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0
	}
	self := os.Getpid()
	page := int64(os.Getpagesize())
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == self {
			continue
		}
		dir := "/proc/" + e.Name()
		adj, err := os.ReadFile(dir + "/oom_score_adj")
		if err != nil || strings.TrimSpace(string(adj)) != strconv.Itoa(userOOMScoreAdj) {
			continue
		}
		statm, err := os.ReadFile(dir + "/statm")
		if err != nil {
			continue
		}
		f := strings.Fields(string(statm))
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		if n*page > rss {
			pid, rss = p, n*page
		}
	}
	return pid, rss
}

// reserveThreads makes the runtime hold at least n OS threads: each locked
// goroutine keeps its thread while it waits, so the runtime must start
// another for the next; once unlocked, the threads stay idle for reuse.
func reserveThreads(n int) {
	var locked, release sync.WaitGroup
	release.Add(1)
	for range n {
		locked.Add(1)
		go func() {
			runtime.LockOSThread()
			locked.Done()
			release.Wait()
			runtime.UnlockOSThread()
		}()
	}
	locked.Wait()
	release.Done()
}
