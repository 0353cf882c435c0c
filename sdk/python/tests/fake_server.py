"""An in-process fake of the sandboxd REST API for the SDK's unit tests.

It keeps the contract of api/DESIGN.md (paths, JSON field names, error shape,
Idempotency-Key replay, 404 for another user's ids) with in-memory state, and
can be told to misbehave on a route: answer with a status, stall, send a
malformed body, or apply the request and drop the connection before answering.
Every request is recorded so tests can check exactly what the client sent.
"""

from __future__ import annotations

import base64
import io
import json
import posixpath
import secrets
import shlex
import tarfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

# The consistency header sandboxd sends on every API answer (api/DESIGN.md, "Consistency").
INDEX_HEADER = "X-Cloud-Sandbox-Index"

# Ceiling for any wait inside the fake, so a broken client can never hang a test run.
GUARD_SECONDS = 10.0


@dataclass
class Fault:
    """One scripted misbehaviour for the next request on a route."""

    status: int = 503
    body: Optional[bytes] = None
    headers: Dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # Apply the request for real, then close the connection without answering.
    apply_then_drop: bool = False


@dataclass
class Recorded:
    """A request as the fake received it."""

    method: str
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]
    body: bytes
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


def _b64(data: Dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_jwt(claims: Dict[str, Any]) -> str:
    """An HS256-shaped token; the fake checks it by lookup, not by signature."""
    return f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}.{secrets.token_hex(8)}"


class FakeServer:
    """The fake API on 127.0.0.1 with a random port. Use ``url`` and ``close()``."""

    def __init__(self, token_lifetime: int = 3600) -> None:
        self.token_lifetime = token_lifetime
        self.lock = threading.Lock()
        self.requests: List[Recorded] = []
        self.faults: Dict[Tuple[str, str], List[Fault]] = {}
        self.access: Dict[str, str] = {}  # access token -> user
        self.refresh: Dict[str, str] = {}  # refresh token -> user
        self.expired: Dict[str, str] = {}  # access token past its exp -> user
        self.sandboxes: Dict[str, Dict[str, Any]] = {}
        self.sessions: Dict[str, Dict[str, Any]] = {}
        self.files: Dict[str, Dict[str, bytes]] = {}  # sandbox id -> path -> content
        self.idempotent: Dict[Tuple[str, str, str], Tuple[int, Dict[str, Any]]] = {}
        self.executions = 0
        # The Raft index the fake reports: one more for every write it answers.
        self.index = 0
        # Streaming handshake: the fake holds the result back until the test's
        # callback has seen the first chunk (or GUARD_SECONDS pass).
        self.stream_gate = threading.Event()
        self.stream_gate_was_open: Optional[bool] = None
        self.stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="fake-sandboxd", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- test controls ------------------------------------------------------------

    def fail(self, method: str, path: str, *faults: Fault) -> None:
        """Queues faults for the next requests on (method, path)."""
        with self.lock:
            self.faults.setdefault((method, path), []).extend(faults)

    def revoke_access_tokens(self) -> None:
        """Forgets every access token, so the next request gets 401."""
        with self.lock:
            self.access.clear()

    def expire_access_tokens(self) -> None:
        """Ages every access token past its exp: the next request gets 401 "token expired", as from sandboxd."""
        with self.lock:
            self.expired.update(self.access)
            self.access.clear()

    def revoke_refresh_tokens(self) -> None:
        """Forgets every refresh token, so a refresh gets 401."""
        with self.lock:
            self.refresh.clear()

    def calls(self, method: str, path: str) -> List[Recorded]:
        """The recorded requests on (method, path)."""
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def route_log(self) -> List[str]:
        """'METHOD path status' for every request, in order."""
        with self.lock:
            return [f"{r.method} {r.path} {r.status}" for r in self.requests]

    # --- state helpers (called with the lock held) -------------------------------

    def issue(self, user: str) -> Dict[str, Any]:
        now = int(time.time())
        access = make_jwt({"sub": user, "typ": "access", "iat": now, "exp": now + self.token_lifetime,
                           "jti": secrets.token_hex(4)})
        refresh = make_jwt({"sub": user, "typ": "refresh", "iat": now, "exp": now + 7 * 86400,
                            "jti": secrets.token_hex(4)})
        self.access[access] = user
        self.refresh[refresh] = user
        return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                "expires_in": str(self.token_lifetime)}

    def new_sandbox(self, user: str, session_id: str = "") -> Dict[str, Any]:
        sid = secrets.token_hex(8)
        sb = {"sandbox_id": sid, "container_id": secrets.token_hex(32), "status": "active", "ip": "",
              "image": "python:3.11-slim", "user_id": user, "session_id": session_id, "cpu_count": 1,
              "memory_mb": 512, "created_at": "2024-05-01T12:00:00.123456789Z"}
        self.sandboxes[sid] = sb
        self.files[sid] = {}
        return sb


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        # A client that gave up (timeout tests) breaks the pipe; that is expected here.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def _err(status: int, message: str, code: str) -> Tuple[int, Dict[str, Any]]:
    return status, {"error": message, "code": code}


def run_fake(req: Dict[str, Any], env: Dict[str, str]) -> Dict[str, Any]:
    """A tiny stand-in for a shell: echo, printenv, sleep, pwd, cat (stdin), print('...')."""
    timeout = req.get("timeout", 30)
    if "code" in req:
        code = req["code"]
        if code.startswith("print(") and code.endswith(")"):
            out = code[len("print("):-1].strip("'\"") + "\n"
            return {"exit_code": 0, "stdout": out, "stderr": "", "duration_ms": 12, "timed_out": False}
        return {"exit_code": 1, "stdout": "", "stderr": "fake: cannot run this code\n", "duration_ms": 3,
                "timed_out": False}
    cmd = req["command"]
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    prog, args = argv[0], argv[1:]
    res = {"exit_code": 0, "stdout": "", "stderr": "", "duration_ms": 5, "timed_out": False,
           "stdout_truncated": False, "stderr_truncated": False}
    if prog == "echo":
        res["stdout"] = " ".join(args) + "\n"
    elif prog == "printenv":
        res["stdout"] = env.get(args[0], "") + "\n"
    elif prog == "pwd":
        res["stdout"] = req.get("cwd", "/workspace") + "\n"
    elif prog == "cat":
        res["stdout"] = req.get("stdin", "")
    elif prog == "sleep" and float(args[0]) > timeout:
        res.update(exit_code=-1, timed_out=True, duration_ms=int(timeout * 1000))
    elif prog == "false":
        res["exit_code"] = 1
    return res


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    fake: FakeServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output clean

    # --- plumbing ------------------------------------------------------------------

    def _dispatch(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = Recorded(self.command, parts.path, query, {k: v for k, v in self.headers.items()}, body)
        fake = self.fake
        with fake.lock:
            fake.requests.append(rec)
            queue = fake.faults.get((self.command, parts.path))
            fault = queue.pop(0) if queue else None
        if fault is not None:
            if fault.delay:
                fake.stopping.wait(fault.delay)
            if fault.apply_then_drop:
                self._route(rec, respond=False)
                rec.status = -1
                self.close_connection = True
                self.connection.shutdown(2)
                return
            data = fault.body if fault.body is not None else json.dumps(
                {"error": f"injected {fault.status}", "code": "unavailable"}).encode()
            rec.status = fault.status
            self._send(fault.status, data, "application/json", fault.headers)
            return
        self._route(rec, respond=True)

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    def _send(self, status: int, data: bytes, ctype: str, headers: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        headers = dict(headers or {})
        # Read without the lock: routes answer while holding it.
        headers.setdefault(INDEX_HEADER, str(self.fake.index))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, rec: Recorded, status: int, doc: Any, respond: bool) -> None:
        rec.status = status
        if respond:
            self._send(status, json.dumps(doc).encode(), "application/json")

    def _user(self, rec: Recorded) -> Optional[str]:
        auth = rec.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        with self.fake.lock:
            return self.fake.access.get(auth[len("Bearer "):])

    # --- routes --------------------------------------------------------------------

    def _route(self, rec: Recorded, respond: bool) -> None:
        fake, path, m = self.fake, rec.path, rec.method
        if m == "GET" and path == "/health":
            return self._json(rec, 200, {"service": "gateway", "status": "ok"}, respond)
        if m == "POST" and path == "/api/v1/auth/token":
            doc = rec.json()
            with fake.lock:
                return self._json(rec, 200, fake.issue(doc.get("user_id") or "keyuser"), respond)
        if m == "POST" and path == "/api/v1/auth/refresh":
            token = rec.json().get("refresh_token", "")
            with fake.lock:
                user = fake.refresh.pop(token, None)  # rotation: the old one is gone
                if user is None:
                    return self._json(rec, *_err(401, "invalid refresh token", "unauthorized"), respond)
                return self._json(rec, 200, fake.issue(user), respond)
        user = self._user(rec)
        if user is None:
            with fake.lock:
                expired = rec.headers.get("Authorization", "")[len("Bearer "):] in fake.expired
            if expired:
                return self._json(rec, *_err(401, "token expired", "unauthorized"), respond)
            return self._json(rec, *_err(401, "missing or invalid token", "unauthorized"), respond)
        key = rec.headers.get("Idempotency-Key")
        if key:
            with fake.lock:
                cached = fake.idempotent.get((user, path, key))
            if cached:
                return self._json(rec, cached[0], cached[1], respond)
        status, doc = self._handle(rec, user)
        if m != "GET" and status < 400:
            with fake.lock:
                fake.index += 1
        if key and status < 400:
            with fake.lock:
                fake.idempotent[(user, path, key)] = (status, doc)
        if isinstance(doc, bytes):
            rec.status = status
            if respond:
                self._send(status, doc, "application/octet-stream")
            return None
        if doc is None:
            return None  # streamed already
        return self._json(rec, status, doc, respond)

    def _sandbox(self, user: str, sid: str) -> Optional[Dict[str, Any]]:
        sb = self.fake.sandboxes.get(sid)
        return sb if sb is not None and sb["user_id"] == user else None

    def _handle(self, rec: Recorded, user: str) -> Tuple[int, Any]:
        fake, path, m = self.fake, rec.path, rec.method
        with fake.lock:
            if m == "POST" and path == "/api/v1/sandbox/acquire":
                return 200, dict(fake.new_sandbox(user))
            if m == "POST" and path == "/api/v1/sandbox/release":
                sb = self._sandbox(user, rec.json().get("sandbox_id", ""))
                if sb is None:
                    return _err(404, "sandbox not found", "not_found")
                sb["status"] = "terminating"
                return 200, {"sandbox_id": sb["sandbox_id"], "status": "terminating"}
            if m == "GET" and path == "/api/v1/sandbox/stats":
                active = sum(1 for s in fake.sandboxes.values() if s["status"] == "active")
                return 200, {"total": len(fake.sandboxes), "idle": 2, "active": active, "pending": 0,
                             "paused": 0, "terminating": 0, "failed": 0, "min_size": 2, "max_size": 10,
                             "image": "python:3.11-slim"}
            if m == "POST" and path.startswith("/api/v1/sandbox/") and path.endswith(("/connect", "/resume", "/pause")):
                parts = path.split("/")
                sb = self._sandbox(user, parts[-2])
                if sb is None:
                    return _err(404, f"sandbox {parts[-2]} not found", "not_found")
                sb["status"] = "paused" if parts[-1] == "pause" else "active"
                return 200, dict(sb)
            if m == "GET" and path.startswith("/api/v1/sandbox/"):
                sb = self._sandbox(user, path.rsplit("/", 1)[1])
                return (200, dict(sb)) if sb else _err(404, "sandbox not found", "not_found")
            if path.startswith("/api/v1/sessions"):
                return self._sessions(rec, user)
            if path in ("/api/v1/execute", "/api/v1/execute/stream"):
                req = rec.json()
                sb = self._sandbox(user, req.get("sandbox_id", ""))
                if sb is None:
                    return _err(404, "sandbox not found", "not_found")
                if sb["status"] != "active":
                    return _err(409, f"sandbox is {sb['status']}", "conflict")
                fake.executions += 1
                result = run_fake(req, req.get("env") or {})
        if path == "/api/v1/execute":
            return 200, result
        if path == "/api/v1/execute/stream":
            self._stream(rec, result)
            return 200, None
        if path.startswith("/api/v1/files"):
            return self._files(rec, user)
        return _err(404, f"no route {m} {path}", "not_found")

    def _sessions(self, rec: Recorded, user: str) -> Tuple[int, Any]:
        fake, m = self.fake, rec.method
        parts = rec.path.split("/")[4:]  # after /api/v1/sessions
        if m == "POST" and not parts:
            doc = rec.json() if rec.body else {}
            sid = secrets.token_hex(8)
            sb = fake.new_sandbox(user, sid)
            s = {"session_id": sid, "user_id": user, "image": doc.get("image", "python:3.11-slim"),
                 "cpu_count": doc.get("cpu_count", 1), "memory_mb": doc.get("memory_mb", 512),
                 "network": doc.get("network", False), "status": "active", "sandbox_id": sb["sandbox_id"],
                 "sandbox_status": "active", "created_at": "2024-05-01T12:00:00Z",
                 "updated_at": "2024-05-01T12:00:00Z", "last_active_at": "2024-05-01T12:00:00Z",
                 "idle_timeout": doc.get("idle_timeout", 0), "max_lifetime": doc.get("max_lifetime", 0)}
            fake.sessions[sid] = s
            return 201, dict(s)
        if m == "GET" and not parts:
            return 200, {"sessions": [dict(s) for s in fake.sessions.values()
                                      if s["user_id"] == user and s["status"] != "deleted"]}
        s = fake.sessions.get(parts[0]) if parts else None
        if s is None or s["user_id"] != user:
            return _err(404, "session not found", "not_found")
        sb = fake.sandboxes[s["sandbox_id"]]
        action = parts[1] if len(parts) > 1 else ""
        if m == "GET" and not action:
            return 200, dict(s)
        if s["status"] == "deleted":
            return _err(409, "session is deleted", "conflict")
        if m == "POST" and action == "pause":
            s["status"] = s["sandbox_status"] = sb["status"] = "paused"
        elif m == "POST" and action == "resume":
            s["status"] = s["sandbox_status"] = sb["status"] = "active"
        elif m == "DELETE" and not action:
            s["status"] = "deleted"
            s["sandbox_status"] = sb["status"] = "terminating"
        else:
            return _err(404, "no such route", "not_found")
        return 200, dict(s)

    def _stream(self, rec: Recorded, result: Dict[str, Any]) -> None:
        fake = self.fake
        rec.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header(INDEX_HEADER, str(fake.index))
        self.end_headers()

        def chunk(event: Dict[str, Any]) -> None:
            data = (json.dumps(event) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        chunk({"type": "stdout", "data": result["stdout"]})
        chunk({"type": "stderr", "data": "warning: fake\n"})
        fake.stream_gate_was_open = fake.stream_gate.wait(GUARD_SECONDS)
        chunk({"type": "result", **result})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _files(self, rec: Recorded, user: str) -> Tuple[int, Any]:
        fake, m, path = self.fake, rec.method, rec.path
        if m in ("PUT", "POST") and rec.headers.get("Content-Type") == "application/json":
            doc = rec.json()
            sid, fpath = doc.get("sandbox_id", ""), doc.get("path", "")
        else:
            sid, fpath = rec.query.get("sandbox_id", ""), rec.query.get("path", "")
        with fake.lock:
            if self._sandbox(user, sid) is None:
                return _err(404, "sandbox not found", "not_found")
            store = fake.files[sid]
            if not fpath.startswith("/") or ".." in fpath.split("/"):
                return _err(400, "path must be absolute without '..'", "bad_request")
            fpath = posixpath.normpath(fpath)
            if m == "PUT" and path == "/api/v1/files":
                raw = doc["content"].encode() if doc.get("encoding", "utf-8") == "utf-8" else \
                    base64.b64decode(doc["content"])
                store[fpath] = raw
                return 200, {"path": fpath, "size": len(raw)}
            if m == "PUT" and path == "/api/v1/files/content":
                store[fpath] = rec.body
                return 200, {"path": fpath, "size": len(rec.body)}
            if m == "GET" and path == "/api/v1/files/content":
                if fpath not in store:
                    return _err(404, f"no such file: {fpath}", "not_found")
                return 200, store[fpath]
            if m == "GET" and path == "/api/v1/files":
                entries, prefix = {}, fpath.rstrip("/") + "/"
                for p, data in store.items():
                    if not p.startswith(prefix):
                        continue
                    first = p[len(prefix):].split("/", 1)
                    is_dir = len(first) > 1
                    entries[first[0]] = {"name": first[0], "path": prefix + first[0],
                                         "size": 0 if is_dir else len(data), "type": "dir" if is_dir else "file",
                                         "mode": "0755" if is_dir else "0644",
                                         "modified_at": "2024-05-01T12:00:00.5+02:00"}
                return 200, {"path": fpath, "files": sorted(entries.values(), key=lambda e: e["name"])}
            if m == "DELETE" and path == "/api/v1/files":
                doomed = [p for p in store if p == fpath or p.startswith(fpath + "/")]
                if not doomed:
                    return _err(404, f"no such file: {fpath}", "not_found")
                if doomed != [fpath] and rec.query.get("recursive") != "true":
                    return _err(409, "directory not empty", "conflict")
                for p in doomed:
                    del store[p]
                return 200, {"path": fpath, "deleted": True}
            if m == "POST" and path == "/api/v1/files/mkdir":
                return 200, {"path": fpath}
            if m == "PUT" and path == "/api/v1/files/archive":
                count = 0
                with tarfile.open(fileobj=io.BytesIO(rec.body), mode="r:*") as tf:
                    for member in tf:
                        if member.name.startswith("/") or ".." in member.name.split("/"):
                            return _err(400, f"entry {member.name} escapes {fpath}", "bad_request")
                        if member.isfile():
                            f = tf.extractfile(member)
                            store[posixpath.join(fpath, member.name)] = f.read() if f else b""
                            count += 1
                return 200, {"path": fpath, "files": count}
            if m == "GET" and path == "/api/v1/files/archive":
                buf = io.BytesIO()
                with tarfile.open(fileobj=buf, mode="w") as tf:
                    for p, data in sorted(store.items()):
                        if p.startswith(fpath.rstrip("/") + "/"):
                            info = tarfile.TarInfo(p[len(fpath.rstrip("/")) + 1:])
                            info.size = len(data)
                            info.mode = 0o644
                            tf.addfile(info, io.BytesIO(data))
                return 200, buf.getvalue()
        return _err(404, f"no route {m} {path}", "not_found")
