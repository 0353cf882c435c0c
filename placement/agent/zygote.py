_INIT = dict(globals())  # __main__ as "python3 -c" hands it to user code
# Python fork server of the sandbox agent (see zygote.go). Run as
# "python3 -c <this>" with the agent's socketpair on fd 3. It never runs user
# code itself: each request forks a child that becomes "python3 -c CODE".
import os, sys
_path = sys.path[:]
sys.path[:] = [p for p in _path if p]  # a file in the cwd never shadows ours
import _socket, _signal, atexit, select
sys.path[:] = _path
del _path

_SOCK_FD = 3
_MAX_MSG = 256 << 10


def _site_state():
    """What "import site" read at start-up; a change makes this server stale."""
    site = sys.modules.get("site")
    if site is None:
        return ()
    dirs = list(site.getsitepackages()) + [site.getusersitepackages()]
    state = []
    for d in dirs:
        try:
            st = os.stat(d)
            state.append((d, st.st_ino, st.st_mtime_ns))
        except OSError:
            state.append((d, None, None))
    return tuple(state)


def _stdio(old, fd, write, name, unbuffered):
    """A stream built the way the interpreter builds sys.std* at start-up."""
    buffering = 0 if (unbuffered and write) else -1
    buf = open(fd, "wb" if write else "rb", buffering, closefd=False)
    raw = buf.raw if buffering else buf
    raw.name = name
    line = (not unbuffered) and raw.isatty()
    s = type(old)(buf, old.encoding, old.errors, "\n", line, unbuffered)
    s.mode = "w" if write else "r"
    return s


def _exit_code(e):
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(str(code) + "\n")
    except BaseException:
        pass
    return 1


def _finish(rc, interrupted):
    """Py_FinalizeEx as far as user code can see it, then exit."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            pass
    atexit._run_exitfuncs()
    try:
        if sys.stdout is not None and not sys.stdout.closed:
            sys.stdout.flush()
    except BaseException:
        rc = 120
    try:
        if sys.stderr is not None and not sys.stderr.closed:
            sys.stderr.flush()
    except BaseException:
        pass
    if interrupted:
        # An uncaught KeyboardInterrupt ends python3 by SIGINT.
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
        os.kill(os.getpid(), _signal.SIGINT)
        rc = 130
    os._exit(rc)


def _close_from_3():
    # Python 3.11 closerange() loops to the fd limit; /proc lists the few open.
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        return
    for fd in fds:
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass  # listdir's own descriptor


def _set_environ(env):
    """Make os.environ (and the C environ) exactly env, in env's order."""
    new = {}
    for kv in env:
        k, _, v = kv.partition(b"=")
        new[os.fsdecode(k)] = os.fsdecode(v)
    if list(new) == list(os.environ):
        for k, v in new.items():
            if os.environ[k] != v:
                os.environ[k] = v
        return
    os.environ.clear()
    for k, v in new.items():
        os.environ[k] = v


def _child(fds, cwd, argv0, code, env):
    try:
        os.setpgid(0, 0)
        _signal.set_wakeup_fd(-1)
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
        _close_from_3()
        os.chdir(cwd)
        _set_environ(env)
        code = os.fsdecode(code)
        unbuffered = sys.__stdout__.write_through
        sys.stdin = sys.__stdin__ = _stdio(sys.__stdin__, 0, False, "<stdin>", unbuffered)
        sys.stdout = sys.__stdout__ = _stdio(sys.__stdout__, 1, True, "<stdout>", unbuffered)
        sys.stderr = sys.__stderr__ = _stdio(sys.__stderr__, 2, True, "<stderr>", unbuffered)
        sys.argv = ["-c"]
        sys.orig_argv = [os.fsdecode(argv0), "-c", code]
        # Path finders cached for the server's cwd must not hide new files.
        sys.path_importer_cache.clear()
        main = type(sys)("__main__")
        main.__dict__.update(_INIT)
        main.__annotations__ = {}
        sys.modules["__main__"] = main
    except BaseException as e:
        try:
            os.write(2, ("python zygote: %s\n" % e).encode())
        finally:
            os._exit(126)
    rc, interrupted = 0, False
    try:
        exec(compile(code, "<string>", "exec"), main.__dict__)
    except SystemExit as e:
        rc = _exit_code(e)
    except BaseException as e:
        # Drop this frame so the traceback is the one python3 -c prints.
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        e.__traceback__ = tb
        sys.last_type, sys.last_value, sys.last_traceback = type(e), e, tb
        try:
            sys.excepthook(type(e), e, tb)
        except BaseException:
            pass
        rc, interrupted = 1, isinstance(e, KeyboardInterrupt)
        del e, tb
    _finish(rc, interrupted)


def _serve():
    sock = _socket.socket(fileno=_SOCK_FD)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    _signal.set_wakeup_fd(wake_w)
    _signal.signal(_signal.SIGCHLD, lambda signum, frame: None)
    site_state = _site_state()
    children = {}  # pid -> request id
    retiring = False
    fd_space = _socket.CMSG_SPACE(3 * 4)
    sock.send(b"R %d" % os.getpid())
    while True:
        if retiring and not children:
            return
        ready, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in ready:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        while children:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if info is None:
                break
            pid = info.si_pid
            try:
                os.killpg(pid, 9)  # what it left behind; the group id is still ours
            except OSError:
                pass
            _, status = os.waitpid(pid, 0)
            rid = children.pop(pid, None)
            if rid is not None:
                sock.send(b"X %s %d" % (rid, status))
        if sock not in ready:
            continue
        msg, anc, _, _ = sock.recvmsg(_MAX_MSG, fd_space)
        if not msg:
            return  # the agent is gone
        fds = []
        for level, kind, data in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += [int.from_bytes(data[i:i + 4], sys.byteorder) for i in range(0, len(data) - len(data) % 4, 4)]
        fields = msg.split(b"\0")
        rid, cwd, argv0, code, env = fields[0], fields[1], fields[2], fields[3], fields[4:]
        try:
            if len(fds) != 3:
                reply = b"E %s bad request" % rid
            elif retiring or _site_state() != site_state:
                reply, retiring = b"S %s" % rid, True
            elif not os.access(cwd, os.X_OK):
                reply = b"E %s cwd" % rid
            else:
                try:
                    pid = os.fork()
                except OSError as e:
                    reply = b"E %s fork: %s" % (rid, str(e).encode())
                else:
                    if pid == 0:
                        sock.close()
                        _child(fds, cwd, argv0, code, env)
                    try:
                        os.setpgid(pid, pid)  # before the agent may kill -pid
                    except OSError:
                        pass
                    children[pid] = rid
                    reply = b"P %s %d" % (rid, pid)
        finally:
            for fd in fds:
                os.close(fd)
        sock.send(reply)


_serve()
