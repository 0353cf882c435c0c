package agent

import (
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// A spawner starts a process in its own process group and reports, on done,
// how it ended. Before done fires the spawner has already SIGKILLed the rest
// of the group (what the process left running in the background) while the
// exited leader was still a zombie, so the group id cannot have been reused.
type spawner interface {
	start(path string, argv []string, attr *syscall.ProcAttr) (pid int, done <-chan syscall.WaitStatus, err error)
	close()
}

// waitid constants and siginfo layout (linux). The pad after si_code exists
// on 64-bit targets only, where the union is pointer-aligned.
const (
	pAll     = 0
	pPID     = 1
	wNoHang  = 0x1
	wExited  = 0x4
	wNoWait  = 0x1000000
	prSetCSR = 36 // PR_SET_CHILD_SUBREAPER
)

type siginfo struct {
	signo, errno, code int32
	_                  [unsafe.Sizeof(uintptr(0)) - 4]byte
	pid                int32
	_                  [128]byte
}

// waitExited waits, without reaping, until a child has exited: pid > 0 waits
// for that child, pid == 0 polls any child (WNOHANG) and returns 0 if none.
func waitExited(pid int, options int) (int, error) {
	var info siginfo
	idType := pAll
	if pid > 0 {
		idType = pPID
	}
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, uintptr(idType), uintptr(pid),
			uintptr(unsafe.Pointer(&info)), uintptr(wExited|wNoWait|options), 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(info.pid), nil
	}
}

// reap kills what is left of pid's process group, then collects pid's status.
func reap(pid int) syscall.WaitStatus {
	_ = syscall.Kill(-pid, syscall.SIGKILL) // ESRCH: the group is already empty
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			return ws
		}
	}
}

// pidSpawner waits for each process it started and for nothing else: the
// right choice when the agent shares its process with other code that starts
// children (tests, embedding).
type pidSpawner struct{}

func (pidSpawner) start(path string, argv []string, attr *syscall.ProcAttr) (int, <-chan syscall.WaitStatus, error) {
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	done := make(chan syscall.WaitStatus, 1)
	go func() {
		if _, err := waitExited(pid, 0); err != nil {
			slog.Warn("agent: waitid", "pid", pid, "err", err)
		}
		done <- reap(pid)
	}()
	return pid, done, nil
}

func (pidSpawner) close() {}

// reapAllSpawner is the init process's reaper: one loop waits for every
// child, hands the status of the processes exec started to their waiters and
// discards the rest (orphans reparented to us), so zombies never pile up and
// no exit status is stolen. Fork and registration happen under the same lock
// the loop takes, so a child cannot be reaped before it is known.
type reapAllSpawner struct {
	mu      sync.Mutex
	waiting map[int]chan syscall.WaitStatus
	sigs    chan os.Signal
	stop    chan struct{}
	wg      sync.WaitGroup
	log     *slog.Logger
}

func newReapAllSpawner(log *slog.Logger) *reapAllSpawner {
	r := &reapAllSpawner{
		waiting: make(map[int]chan syscall.WaitStatus),
		sigs:    make(chan os.Signal, 1),
		stop:    make(chan struct{}),
		log:     log,
	}
	signal.Notify(r.sigs, syscall.SIGCHLD)
	r.wg.Add(1)
	go r.loop()
	return r
}

func (r *reapAllSpawner) start(path string, argv []string, attr *syscall.ProcAttr) (int, <-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	done := make(chan syscall.WaitStatus, 1)
	r.waiting[pid] = done
	return pid, done, nil
}

func (r *reapAllSpawner) loop() {
	defer r.wg.Done()
	// The ticker is a safety net only: SIGCHLD is what drives the loop.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.sigs:
		case <-tick.C:
		case <-r.stop:
			return
		}
		r.reapAll()
	}
}

func (r *reapAllSpawner) reapAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		pid, err := waitExited(0, wNoHang)
		if err != nil {
			if !errors.Is(err, syscall.ECHILD) {
				r.log.Warn("agent: waitid", "err", err)
			}
			return
		}
		if pid == 0 {
			return
		}
		done, tracked := r.waiting[pid]
		if !tracked {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, 0, nil)
			r.log.Debug("agent: reaped orphan", "pid", pid, "status", int(ws))
			continue
		}
		delete(r.waiting, pid)
		done <- reap(pid)
	}
}

func (r *reapAllSpawner) close() {
	signal.Stop(r.sigs)
	close(r.stop)
	r.wg.Wait()
}

// SetChildSubreaper makes orphaned descendants of this process reparent to
// it instead of to the system's init, so the agent can reap them even when it
// is not PID 1.
func SetChildSubreaper() error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetCSR, 1, 0); e != 0 {
		return e
	}
	return nil
}
