# Stateful Python code context of the sandbox agent (see contexts.go). Run as
# "python3 -c <this>" with the agent's socket on fd 3. It keeps one namespace
# alive across cells: each request is a cell, compiled with ast, whose last
# statement is evaluated when it is an expression (as IPython does).
#
# Wire: every message is a 4-byte big-endian length and a JSON object.
#   agent -> runner  {"code": str, "max_output": int}
#   runner -> agent  {"t": "ready", "pid": int, "mark": str}
#                    {"t": "done", "results": [...], "error": {...}|null, "n": int,
#                     "marked": [fd, ...]}   the fds the end-of-cell mark went to
#
# Output: fd 1 and 2 are pipes the agent reads, like an exec's; sys.stdout
# and sys.stderr write straight to them, so print() and the output of
# subprocesses arrive in the order they were written, and what a cell wrote
# before the interpreter died is not lost. At the end of a cell a marker
# (random per interpreter) is written to both pipes: once the agent has read
# it, it has everything the cell wrote before.
import ast, base64, builtins, json, linecache, os, signal, struct, sys, traceback, types

_SOCK_FD = 3
_DIAG_FD = 4  # the agent's log: the runner's own failures, never a cell's output
_MARK = os.urandom(16).hex()
_REPRS = [  # (method, MIME type, binary?)
    ("_repr_html_", "text/html", False),
    ("_repr_markdown_", "text/markdown", False),
    ("_repr_svg_", "image/svg+xml", False),
    ("_repr_png_", "image/png", True),
    ("_repr_jpeg_", "image/jpeg", True),
    ("_repr_latex_", "text/latex", False),
    ("_repr_json_", "application/json", None),
]

# A cell's os.fork() or os.system() must not hold them.
os.set_inheritable(_SOCK_FD, False)
os.set_inheritable(_DIAG_FD, False)
_sock = os.fdopen(_SOCK_FD, "r+b", buffering=0)
_running = False  # a cell is executing: SIGINT interrupts it


def _send(msg):
    b = json.dumps(msg, ensure_ascii=False).encode("utf-8", "replace")
    _sock.write(struct.pack(">I", len(b)) + b)


def _recv():
    head = _read_exact(4)
    if head is None:
        return None
    body = _read_exact(struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


def _read_exact(n):
    buf = b""
    while len(buf) < n:
        b = _sock.read(n - len(buf))
        if not b:
            return None
        buf += b
    return buf


def _on_sigint(signum, frame):
    if _running:
        raise KeyboardInterrupt
    # Between cells a late interrupt has nothing to stop.


def _bundle(value, room):
    """The value's representations by MIME type, each kept only if it fits in room[0]."""
    data = {}
    try:
        text = repr(value)
    except BaseException as e:
        text = "<repr failed: %s: %s>" % (type(e).__name__, e)
    text = text[:max(min(room[0], _max_text[0]), 0)]  # the repr is always there, cut if it must be
    room[0] -= len(text)
    data["text/plain"] = text
    for meth, mime, binary in _REPRS:
        fn = getattr(value, meth, None)
        if fn is None or isinstance(value, type) or not callable(fn):
            continue
        try:
            out = fn()
            if out is None:
                continue
            if isinstance(out, tuple):  # (data, metadata) as IPython allows
                out = out[0]
            if binary is None:
                out = json.dumps(out)
            elif binary:
                if isinstance(out, str):
                    out = out.encode("ascii", "replace")  # already base64
                else:
                    out = base64.b64encode(bytes(out))
                out = out.decode("ascii")
            else:
                out = str(out)
        except Exception:
            continue  # a broken _repr_*_ costs that representation, not the cell
        if len(out) <= min(room[0], _max_text[0]):
            data[mime] = out
            room[0] -= len(out)
    return data


def _error(e, limit):
    tb = e.__traceback__
    if tb is not None:
        tb = tb.tb_next  # drop _run's own frame: the user sees their cell only
    try:
        text = "".join(traceback.format_exception(type(e), e, tb))
    except BaseException as fe:
        text = "<traceback failed: %s>" % type(fe).__name__
    try:
        value = str(e)
    except BaseException:
        value = "<str failed>"
    # Bounded like the output: an exception can carry any amount of text.
    return {"name": type(e).__name__, "value": value[:limit], "traceback": text[-limit:]}


_shown = []  # the results of the cell in flight: display()ed values, then the final one
# Bytes of representations the cell may still return: all its results
# together stay within 8 times its output cap, the bound the agent reads.
_room = [0]
_max_text = [0]  # the most one representation may take: the cell's output cap


def display(*objs):
    """Shows each object as a result of the cell, as IPython's display() does."""
    for obj in objs:
        _shown.append({"data": _bundle(obj, _room), "is_main_result": False})


def _run(ns, code, n, max_output):
    global _running
    name = "<cell-%d>" % n
    linecache.cache[name] = (len(code), None, code.splitlines(True), name)
    _shown.clear()
    _room[0] = 8 * max_output
    _max_text[0] = max_output
    results, err = _shown, None
    try:
        try:
            tree = ast.parse(code, name, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr) and not code.rstrip().endswith(";"):
                last = ast.Expression(tree.body.pop().value)
            body = compile(tree, name, "exec")
            tail = compile(last, name, "eval") if last is not None else None
            _running = True
            exec(body, ns)
            if tail is not None:
                value = eval(tail, ns)
                _running = False
                if value is not None:
                    ns["_"] = value
                    results.append({"data": _bundle(value, _room), "is_main_result": True})
        finally:
            _running = False
    except BaseException as e:
        err = _error(e, max_output)
    return results, err


def _end_of_cell():
    """Flushes the cell's output and marks its end on each fd; returns the fds marked."""
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except BaseException:
            pass
    marked = []
    for fd in (1, 2):
        try:
            os.write(fd, _MARK.encode())
            marked.append(fd)
        except OSError:
            pass  # the cell closed or replaced the fd; the agent does not wait for it
    return marked


def main():
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, "r", closefd=False)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    signal.signal(signal.SIGINT, _on_sigint)
    main_mod = types.ModuleType("__main__")
    main_mod.__dict__["__builtins__"] = builtins
    builtins.display = display  # E2B and notebook code call it without importing it
    sys.modules["__main__"] = main_mod
    sys.argv = [""]
    if "" not in sys.path:
        sys.path.insert(0, "")  # the cwd, as in an interactive interpreter
    ns = main_mod.__dict__
    _send({"t": "ready", "pid": os.getpid(), "mark": _MARK})
    n = 0
    while True:
        req = _recv()
        if req is None:
            return  # the agent closed the socket: the context is deleted
        n += 1
        max_output = int(req.get("max_output") or (4 << 20))
        marked = []
        try:
            results, err = _run(ns, req.get("code", ""), n, max_output)
            marked = _end_of_cell()
        except BaseException as e:  # an interrupt that landed in our own code
            results, err = [], _error(e, max_output)
            marked = _end_of_cell()
        _send({"t": "done", "results": results, "error": err, "n": n, "marked": marked})


try:
    main()
except BaseException:
    os.write(_DIAG_FD, traceback.format_exc().encode())
    raise
