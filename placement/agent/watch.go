package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watching a directory: inotify, used directly (a dozen lines of x/sys
// rather than a dependency, and the agent stays static). One inotify
// instance per stream, so a stream's end (the client went away, the
// directory was removed) closes everything it holds, and streams never see
// each other's events.

// Watch bounds. Each watched directory costs the kernel ~1 KiB of unswappable
// memory charged to the sandbox's uid (fs.inotify.max_user_watches bounds
// the total); these keep one sandbox's streams well inside that.
const (
	// DefaultMaxWatchStreams is how many watch streams one agent serves at
	// once; beyond, 429.
	DefaultMaxWatchStreams = 16
	// DefaultMaxWatchDirs is how many directories one recursive stream
	// watches; a tree with more is refused (422), and directories created
	// past the bound are reported with an error event and not watched.
	DefaultMaxWatchDirs = 4096
)

// watchMask is what a stream asks the kernel for.
const watchMask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_DELETE |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
	unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW | unix.IN_EXCL_UNLINK

// watcher is one inotify instance and the directories it watches.
type watcher struct {
	f         *os.File // the inotify descriptor, read through Go's poller
	fd        int
	recursive bool
	maxDirs   int
	dirs      map[int]string // watch descriptor → directory path
	root      int            // the root's watch descriptor
	// scanned holds entries reported by the scan of a new directory
	// (watchNew). An entry made after its directory's watch was added but
	// before the scan is seen twice, by the scan and by the kernel: the
	// kernel's create is dropped when it comes.
	scanned map[string]struct{}
}

// maxScanned bounds scanned; past it the set is dropped, at worst
// reporting a create twice.
const maxScanned = 4096

func newWatcher(root string, recursive bool, maxDirs int) (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	w := &watcher{f: os.NewFile(uintptr(fd), "inotify"), fd: fd, recursive: recursive, maxDirs: maxDirs,
		dirs: map[int]string{}, scanned: map[string]struct{}{}}
	wd, err := w.add(root)
	if err != nil {
		w.close()
		return nil, err
	}
	w.root = wd
	if recursive {
		if err := w.addTree(root); err != nil {
			w.close()
			return nil, err
		}
	}
	return w, nil
}

func (w *watcher) close() { _ = w.f.Close() }

func (w *watcher) add(dir string) (int, error) {
	if len(w.dirs) >= w.maxDirs {
		return 0, errUnprocessable("watch %s: more than %d directories to watch", dir, w.maxDirs)
	}
	wd, err := unix.InotifyAddWatch(w.fd, dir, watchMask)
	if err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return 0, errUnprocessable("watch %s: the kernel's inotify watch limit for this sandbox is reached", dir)
		}
		return 0, &os.PathError{Op: "watch", Path: dir, Err: err}
	}
	w.dirs[wd] = dir
	return wd, nil
}

// addTree watches every directory below dir (not following symlinks).
func (w *watcher) addTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			return err
		}
		if p == dir || !d.IsDir() {
			return nil
		}
		_, err = w.add(p)
		return err
	})
}

// read blocks for the next batch of events and turns it into WatchEvents.
// done reports that the root itself is gone: the stream ends after them.
func (w *watcher) read(buf []byte) (events []WatchEvent, done bool, err error) {
	n, err := w.f.Read(buf)
	if err != nil {
		return nil, false, err
	}
	// A rename inside the watched tree is a MOVED_FROM and a MOVED_TO with
	// one cookie, queued together: pair them into one rename event. Either
	// half alone means the entry left (remove) or arrived (create).
	pending := map[uint32]int{} // cookie → index of the MOVED_FROM event
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(raw.Len)]
		off += unix.SizeofInotifyEvent + int(raw.Len)
		name := string(nameBytes[:clen(nameBytes)])
		mask := raw.Mask
		if mask&unix.IN_Q_OVERFLOW != 0 {
			events = append(events, WatchEvent{Type: WatchOverflow, Data: "the kernel's event queue overflowed: some changes were not reported"})
			continue
		}
		dir, ok := w.dirs[int(raw.Wd)]
		if !ok {
			continue // a watch removed since: its last events are of no use
		}
		if mask&unix.IN_IGNORED != 0 {
			delete(w.dirs, int(raw.Wd))
			if int(raw.Wd) == w.root {
				done = true
			}
			continue
		}
		if mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
			if int(raw.Wd) == w.root {
				events = append(events, WatchEvent{Type: WatchError, Path: dir, Data: "the watched directory was removed or moved"})
				done = true
			}
			continue // a subdirectory's removal was reported by its parent
		}
		p := filepath.Join(dir, name)
		isDir := mask&unix.IN_ISDIR != 0
		ev := WatchEvent{Path: p, IsDir: isDir}
		if _, ok := w.scanned[p]; ok {
			delete(w.scanned, p)
			if mask&unix.IN_CREATE != 0 {
				continue // reported by the scan already
			}
		}
		switch {
		case mask&unix.IN_CREATE != 0:
			ev.Type = WatchCreate
		case mask&unix.IN_MODIFY != 0:
			ev.Type = WatchWrite
			// One write(2) is one event: a large copy would flood the
			// stream. Consecutive writes to one file say nothing more.
			if last := len(events) - 1; last >= 0 && events[last].Type == WatchWrite && events[last].Path == p {
				continue
			}
		case mask&unix.IN_ATTRIB != 0:
			ev.Type = WatchChmod
		case mask&unix.IN_DELETE != 0:
			ev.Type = WatchRemove
		case mask&unix.IN_MOVED_FROM != 0:
			ev.Type = WatchRemove // until its MOVED_TO turns it into a rename
			pending[raw.Cookie] = len(events)
		case mask&unix.IN_MOVED_TO != 0:
			if i, ok := pending[raw.Cookie]; ok {
				delete(pending, raw.Cookie)
				events[i] = WatchEvent{Type: WatchRename, Path: p, OldPath: events[i].Path, IsDir: isDir}
				w.renamed(events[i].OldPath, p)
				continue
			}
			ev.Type = WatchCreate
		default:
			continue
		}
		events = append(events, ev)
		if w.recursive && isDir && ev.Type == WatchCreate {
			events = append(events, w.watchNew(p)...)
		}
	}
	return events, done, nil
}

// watchNew watches a directory created (or moved in) under a recursive
// watch, with what it already holds: entries made before its watch existed
// would otherwise be missed.
func (w *watcher) watchNew(dir string) []WatchEvent {
	if _, err := w.add(dir); err != nil {
		return []WatchEvent{{Type: WatchError, Path: dir, Data: toError(err).Message}}
	}
	var out []WatchEvent
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if len(w.scanned) >= maxScanned {
			clear(w.scanned)
		}
		w.scanned[p] = struct{}{}
		out = append(out, WatchEvent{Type: WatchCreate, Path: p, IsDir: e.IsDir()})
		if e.IsDir() {
			out = append(out, w.watchNew(p)...)
		}
	}
	return out
}

// renamed keeps the paths of watched directories right after a rename
// inside the tree (their watch descriptors follow the inode).
func (w *watcher) renamed(from, to string) {
	for wd, d := range w.dirs {
		switch {
		case d == from:
			w.dirs[wd] = to
		case len(d) > len(from) && d[:len(from)+1] == from+"/":
			w.dirs[wd] = to + d[len(from):]
		}
	}
}

func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}
