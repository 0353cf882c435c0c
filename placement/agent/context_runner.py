# Stateful Python code context of the sandbox agent (see contexts.go). Run as
# "python3 -c <this>" with the agent's socket on fd 3. It keeps one namespace
# alive across cells: each request is a cell, compiled with ast, whose last
# statement is evaluated when it is an expression (as IPython does).
#
# Wire: every message is a 4-byte big-endian length and a JSON object.
#   agent -> runner  {"code": str, "max_output": int}
#   runner -> agent  {"t": "ready", "pid": int}
#                    {"t": "out"|"err", "d": str}          output as it comes
#                    {"t": "done", "results": [...], "error": {...}|null, "n": int}
#
# Output: fd 1 and 2 are pipes of this process, read by one thread each and
# forwarded; sys.stdout/sys.stderr write straight to them, so print() and the
# output of subprocesses arrive in the order they were written. At the end of
# a cell a secret marker is written to both pipes: once the readers have seen
# it, everything the cell wrote before has been forwarded.
import ast, base64, builtins, codecs, json, linecache, os, signal, struct, sys, threading, traceback, types

_SOCK_FD = 3
_CHUNK = 32 << 10
_MARK = os.urandom(16).hex().encode()
_REPRS = [  # (method, MIME type, binary?)
    ("_repr_html_", "text/html", False),
    ("_repr_markdown_", "text/markdown", False),
    ("_repr_svg_", "image/svg+xml", False),
    ("_repr_png_", "image/png", True),
    ("_repr_jpeg_", "image/jpeg", True),
    ("_repr_latex_", "text/latex", False),
    ("_repr_json_", "application/json", None),
]

_send_lock = threading.Lock()
os.set_inheritable(_SOCK_FD, False)  # a cell's os.fork()/os.system() must not hold it
_sock = os.fdopen(_SOCK_FD, "r+b", buffering=0)
_running = False  # a cell is executing: SIGINT interrupts it


def _send(msg):
    b = json.dumps(msg, ensure_ascii=False).encode("utf-8", "replace")
    with _send_lock:
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


class _Pump(threading.Thread):
    """Forwards what is written to one fd; notices the end-of-cell marker."""

    def __init__(self, fd, kind):
        super().__init__(daemon=True)
        self.r, w = os.pipe()
        os.dup2(w, fd)
        os.close(w)
        self.kind = kind
        self.seen = threading.Event()
        self.budget = 0  # bytes the current cell may still forward from this fd

    def run(self):
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        tail = b""
        while True:
            try:
                data = os.read(self.r, _CHUNK)
            except InterruptedError:
                continue
            if not data:
                return
            data = tail + data
            tail = b""
            i = data.find(_MARK)
            if i >= 0:
                self._forward(dec.decode(data[:i], final=True))
                data = data[i + len(_MARK):]
                self.seen.set()
                if data:
                    self._forward(dec.decode(data))
                continue
            # Hold back what could be the start of a marker cut by the read.
            keep = len(_MARK) - 1
            for k in range(min(keep, len(data)), 0, -1):
                if _MARK.startswith(data[-k:]):
                    tail, data = data[-k:], data[:-k]
                    break
            self._forward(dec.decode(data))

    def _forward(self, text):
        if not text:
            return
        # The agent enforces the cap; this only spares it the traffic.
        if self.budget <= 0:
            _send({"t": self.kind, "d": "", "cut": True})
            return
        b = text.encode("utf-8", "replace")
        cut = len(b) > self.budget
        if cut:
            text = b[:self.budget].decode("utf-8", "ignore")
        self.budget -= len(b)
        _send({"t": self.kind, "d": text, "cut": cut})


def _on_sigint(signum, frame):
    if _running:
        raise KeyboardInterrupt
    # Between cells a late interrupt has nothing to stop.


def _bundle(value, max_text):
    data = {}
    try:
        text = repr(value)
    except BaseException as e:
        text = "<repr failed: %s: %s>" % (type(e).__name__, e)
    data["text/plain"] = text[:max_text]
    for meth, mime, binary in _REPRS:
        fn = getattr(value, meth, None)
        if fn is None or isinstance(value, type) or not callable(fn):
            continue
        try:
            out = fn()
        except BaseException:
            continue
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
        if len(out) <= max_text:
            data[mime] = out
    return data


def _error(e):
    tb = e.__traceback__
    if tb is not None:
        tb = tb.tb_next  # drop _run's own frame: the user sees their cell only
    lines = traceback.format_exception(type(e), e, tb)
    try:
        value = str(e)
    except BaseException:
        value = "<str failed>"
    return {"name": type(e).__name__, "value": value, "traceback": "".join(lines)}


def _run(ns, code, n, max_output):
    global _running
    name = "<cell-%d>" % n
    linecache.cache[name] = (len(code), None, code.splitlines(True), name)
    results, err = [], None
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
                    results.append({"data": _bundle(value, max_output), "is_main_result": True})
        finally:
            _running = False
    except BaseException as e:
        err = _error(e)
    return results, err


def _end_of_cell(pumps):
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except BaseException:
            pass
    for p in pumps:
        p.seen.clear()
        try:
            os.write(1 if p.kind == "out" else 2, _MARK)
        except OSError:
            continue  # the cell closed the fd; nothing more can come from it
        p.seen.wait(2.0)


_diag = [2]  # where the runner's own failures go: the agent's log, not a cell's stderr


def main():
    _diag[0] = os.dup(2)
    pumps = [_Pump(1, "out"), _Pump(2, "err")]
    for p in pumps:
        p.start()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, "r", closefd=False)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    signal.signal(signal.SIGINT, _on_sigint)
    main_mod = types.ModuleType("__main__")
    main_mod.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main_mod
    sys.argv = [""]
    if "" not in sys.path:
        sys.path.insert(0, "")  # the cwd, as in an interactive interpreter
    ns = main_mod.__dict__
    _send({"t": "ready", "pid": os.getpid()})
    n = 0
    while True:
        req = _recv()
        if req is None:
            return  # the agent closed the socket: the context is deleted
        n += 1
        max_output = int(req.get("max_output") or (4 << 20))
        for p in pumps:
            p.budget = max_output
        try:
            results, err = _run(ns, req.get("code", ""), n, max_output)
            _end_of_cell(pumps)
        except BaseException as e:  # an interrupt that landed in our own code
            results, err = [], _error(e)
        _send({"t": "done", "results": results, "error": err, "n": n})


try:
    main()
except BaseException:
    os.write(_diag[0], traceback.format_exc().encode())
    raise
