"""Background processes: ``sandbox.commands`` (names follow E2B's SDK).

A background process belongs to the sandbox's agent, not to this client: it
keeps running when the client goes away, and any client reconnects to its
output from a byte offset. The server keeps the last 1 MiB of each process's
output; a reconnect from further back is told what was lost.

Example::

    with Sandbox.create() as sandbox:
        server = sandbox.commands.run("python3 -m http.server 8000", background=True)
        print(sandbox.run_command("curl -s localhost:8000").stdout)
        server.kill()
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional

from . import errors
from ._exec import Command, OutputCallback
from .models import ExecutionResult

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import Sandbox

logger = logging.getLogger("cloud_sandbox")

PROCESSES_PATH = "/api/v1/processes"

# How long one read of an output stream may wait: the server sends a
# keepalive every 15 s while a process is quiet, so silence beyond this
# means the connection is dead and is reopened from the last offset.
STREAM_READ_TIMEOUT = 60.0
# Reconnects of one output stream in a row before giving up.
MAX_RECONNECTS = 5
# One stdin request carries at most this much (the server's bound).
STDIN_CHUNK = 64 * 1024


@dataclass
class ProcessInfo:
    """A background process as the server describes it."""

    pid: int
    tag: str = ""
    argv: List[str] = field(default_factory=list)
    cwd: str = ""
    pty: bool = False
    stdin: bool = False
    running: bool = True
    exit_code: Optional[int] = None
    signal: str = ""
    started_at: str = ""
    ended_at: str = ""
    output_start: int = 0
    output_end: int = 0
    #: False where a pause stops the sandbox (Nomad) and so ends its processes.
    survives_pause: bool = True
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def cmd(self) -> str:
        """The command line (E2B's ``cmd``)."""
        return " ".join(self.argv)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ProcessInfo":
        """Builds the info from a process object of the API."""
        code = d.get("exit_code")
        return cls(
            pid=int(d.get("pid") or 0), tag=str(d.get("tag") or ""),
            argv=[str(a) for a in d.get("argv") or []], cwd=str(d.get("cwd") or ""),
            pty=bool(d.get("pty")), stdin=bool(d.get("stdin")), running=bool(d.get("running")),
            exit_code=int(code) if isinstance(code, (int, float)) else None,
            signal=str(d.get("signal") or ""), started_at=str(d.get("started_at") or ""),
            ended_at=str(d.get("ended_at") or ""), output_start=int(d.get("output_start") or 0),
            output_end=int(d.get("output_end") or 0), survives_pause=d.get("survives_pause") is not False,
            raw=dict(d),
        )


@dataclass
class CommandResult:
    """How a background process ended, with the output this handle saw."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    signal: str = ""
    #: Bytes of output lost because they fell out of the server's ring before they were read.
    lost_bytes: int = 0

    @property
    def ok(self) -> bool:
        """True when the process exited with 0."""
        return self.exit_code == 0

    @property
    def error(self) -> Optional[str]:
        """E2B's ``error``: a description when the process did not exit with 0."""
        if self.exit_code == 0:
            return None
        return f"killed by {self.signal}" if self.signal else f"exit status {self.exit_code}"


class CommandHandle:
    """A running background process: its output arrives on a thread of its own.

    ``on_stdout``/``on_stderr`` (or ``on_data`` for a pty) are called from that
    thread as output arrives. The handle reconnects by itself, from the last
    offset it saw, when the connection drops.
    """

    def __init__(self, commands: "Commands", info: ProcessInfo, *, offset: int = 0,
                 on_stdout: Optional[OutputCallback] = None, on_stderr: Optional[OutputCallback] = None,
                 on_data: Optional[OutputCallback] = None) -> None:
        self._commands = commands
        self.info = info
        self._offset = offset
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._on_data = on_data
        self._stdout: List[str] = []
        self._stderr: List[str] = []
        self._lost = 0
        self._result: Optional[CommandResult] = None
        self._error: Optional[BaseException] = None
        self._done = threading.Event()
        self._stop = threading.Event()
        self._stream: Any = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name=f"cloud-sandbox-process-{info.pid}", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int:
        """The process id inside the sandbox."""
        return self.info.pid

    @property
    def offset(self) -> int:
        """The byte offset after the last output this handle received; connect from it to resume."""
        return self._offset

    @property
    def stdout(self) -> str:
        """The stdout received so far."""
        with self._lock:
            return "".join(self._stdout)

    @property
    def stderr(self) -> str:
        """The stderr received so far."""
        with self._lock:
            return "".join(self._stderr)

    def wait(self, timeout: Optional[float] = None) -> CommandResult:
        """Waits for the process to end (at most ``timeout`` seconds) and returns how it ended.

        Raises :class:`cloud_sandbox.TimeoutError` if it is still running then.
        """
        if not self._done.wait(timeout):
            raise errors.TimeoutError(f"process {self.pid} still running after {timeout:g}s",
                                      method="GET", path=self._commands._path(self.pid, "/output"))
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def kill(self, signal: str = "SIGKILL") -> bool:
        """Sends ``signal`` (default SIGKILL) to the process group; False if it had already ended."""
        return self._commands.kill(self.pid, signal)

    def send_stdin(self, data: str, *, close: bool = False) -> None:
        """Writes ``data`` to the process's stdin (start it with ``stdin=True``); ``close`` sends EOF after it."""
        self._commands.send_stdin(self.pid, data, close=close)

    def close_stdin(self) -> None:
        """Closes the process's stdin (EOF)."""
        self._commands.send_stdin(self.pid, "", close=True)

    def disconnect(self) -> None:
        """Stops reading output; the process keeps running (``commands.connect`` resumes)."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.abort()

    # --- the reader thread -------------------------------------------------

    def _read(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    if self._follow_once():
                        return
                    failures = 0
                except (errors.ConnectionError, errors.TimeoutError, errors.ServiceUnavailableError) as e:
                    failures += 1
                    if failures > MAX_RECONNECTS or self._stop.is_set():
                        raise
                    logger.info("process %d output stream broke (%s); reconnecting from offset %d",
                                self.pid, e, self._offset)
                    # The client's retry policy paces reconnects as it paces retries.
                    retry = self._commands._client._transport.retry
                    retry.sleep(retry.backoff(failures))
        except BaseException as e:  # handed to wait()
            if not self._stop.is_set():
                self._error = e
        finally:
            self._done.set()

    def _follow_once(self) -> bool:
        """Reads the stream from the current offset; True once the exit event came."""
        path = self._commands._path(self.pid, "/output")
        with self._commands._client._stream(
                "GET", path, query={"sandbox_id": self._commands._sandbox_id, "offset": self._offset},
                timeout=STREAM_READ_TIMEOUT, accept="application/x-ndjson") as resp:
            self._stream = resp
            try:
                for line in resp.iter_lines():
                    if self._handle(json.loads(line.decode("utf-8")), path):
                        return True
            finally:
                self._stream = None
        if self._stop.is_set():
            return True
        raise errors.ConnectionError("the output stream ended before the process did", method="GET", path=path)

    def _handle(self, ev: Any, path: str) -> bool:
        if not isinstance(ev, dict):
            return False
        kind = ev.get("type")
        data = ev.get("data") if isinstance(ev.get("data"), str) else ""
        end = ev.get("end")
        if kind in ("stdout", "stderr", "pty"):
            with self._lock:
                (self._stderr if kind == "stderr" else self._stdout).append(data)
            callback = {"stdout": self._on_stdout, "stderr": self._on_stderr, "pty": self._on_data}[kind]
            if kind == "pty" and callback is None:
                callback = self._on_stdout
            if callback is not None:
                callback(data)
        elif kind == "gap":
            if isinstance(end, int):
                self._lost += end - int(ev.get("offset") or 0)
        elif kind == "exit":
            self.info = ProcessInfo.from_json(ev.get("process") or {})
            self._result = CommandResult(exit_code=self.info.exit_code if self.info.exit_code is not None else -1,
                                         stdout=self.stdout, stderr=self.stderr, signal=self.info.signal,
                                         lost_bytes=self._lost)
        elif kind == "error":
            raise errors.ServiceUnavailableError(str(data or "output stream failed"), method="GET", path=path)
        if isinstance(end, int) and end > self._offset:
            self._offset = end
        return kind == "exit"

    def __repr__(self) -> str:
        return f"CommandHandle(pid={self.pid}, tag={self.info.tag!r})"


class Commands:
    """``sandbox.commands``: run commands in the foreground or the background, list and reach processes."""

    def __init__(self, sandbox: "Sandbox") -> None:
        self._sandbox = sandbox

    @property
    def _client(self) -> Any:
        return self._sandbox.client

    @property
    def _sandbox_id(self) -> str:
        return self._sandbox.sandbox_id

    def _path(self, pid: int, suffix: str = "") -> str:
        return f"{PROCESSES_PATH}/{int(pid)}{suffix}"

    def run(self, cmd: Command, *, background: bool = False, envs: Optional[Mapping[str, str]] = None,
            cwd: Optional[str] = None, timeout: Optional[float] = None, tag: Optional[str] = None,
            stdin: bool = False, on_stdout: Optional[OutputCallback] = None,
            on_stderr: Optional[OutputCallback] = None) -> Any:
        """Runs ``cmd`` (a string for ``/bin/sh -c``, or an argv list).

        In the foreground (the default) it waits and returns an
        :class:`ExecutionResult`; ``timeout`` defaults to 30 s and is at most the
        server's exec cap (300 s). With ``background=True`` it returns a
        :class:`CommandHandle` at once; the process lives as long as the sandbox
        unless ``timeout`` (seconds) says otherwise, and ``stdin=True`` gives it
        an input pipe for :meth:`CommandHandle.send_stdin`.
        """
        if not background:
            return self._sandbox.run_command(cmd, timeout=timeout if timeout is not None else 30, env=envs,
                                             cwd=cwd, on_stdout=on_stdout, on_stderr=on_stderr)
        info = self._start(cmd, envs=envs, cwd=cwd, timeout=timeout, tag=tag, stdin=stdin)
        return CommandHandle(self, info, on_stdout=on_stdout, on_stderr=on_stderr)

    def _start(self, cmd: Optional[Command], *, envs: Optional[Mapping[str, str]] = None,
               cwd: Optional[str] = None, timeout: Optional[float] = None, tag: Optional[str] = None,
               stdin: bool = False, pty: Optional[Mapping[str, int]] = None) -> ProcessInfo:
        body: Dict[str, Any] = {"sandbox_id": self._sandbox_id}
        if cmd is not None:
            if isinstance(cmd, str):
                body["command"] = cmd
            else:
                argv = list(cmd)
                if not argv or not all(isinstance(a, str) for a in argv):
                    raise ValueError("cmd must be a string or a non-empty list of strings")
                body["command"] = argv
        if envs:
            body["env"] = {str(k): str(v) for k, v in envs.items()}
        if cwd is not None:
            body["cwd"] = cwd
        if timeout is not None:
            body["timeout"] = int(timeout)
        if tag is not None:
            body["tag"] = tag
        if stdin:
            body["stdin"] = True
        if pty is not None:
            body["pty"] = dict(pty)
        # Not resent after a broken connection: it may have started a process.
        return ProcessInfo.from_json(self._client._json("POST", PROCESSES_PATH, json_body=body))

    def list(self) -> List[ProcessInfo]:
        """Lists the sandbox's background processes, running and recently ended, oldest first."""
        doc = self._client._json("GET", PROCESSES_PATH, query={"sandbox_id": self._sandbox_id})
        return [ProcessInfo.from_json(p) for p in doc.get("processes") or [] if isinstance(p, dict)]

    def get(self, pid: int) -> ProcessInfo:
        """Describes one background process."""
        return ProcessInfo.from_json(self._client._json("GET", self._path(pid), query={"sandbox_id": self._sandbox_id}))

    def connect(self, pid: int, *, offset: int = 0, on_stdout: Optional[OutputCallback] = None,
                on_stderr: Optional[OutputCallback] = None, on_data: Optional[OutputCallback] = None) -> CommandHandle:
        """Attaches to a running (or ended) background process and replays its output from ``offset``."""
        return CommandHandle(self, self.get(pid), offset=offset, on_stdout=on_stdout, on_stderr=on_stderr,
                             on_data=on_data)

    def kill(self, pid: int, signal: str = "SIGKILL") -> bool:
        """Sends ``signal`` to the process's group; False if it had already ended or is unknown."""
        try:
            self._client._request("POST", self._path(pid, "/signal"),
                                  json_body={"sandbox_id": self._sandbox_id, "signal": signal})
        except (errors.ConflictError, errors.NotFoundError):
            return False
        return True

    def send_stdin(self, pid: int, data: str, *, close: bool = False) -> None:
        """Writes ``data`` to a process's stdin (in chunks the server accepts); ``close`` sends EOF after it."""
        chunks = [data[i:i + STDIN_CHUNK // 4] for i in range(0, len(data), STDIN_CHUNK // 4)] or [""]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            self._client._request("POST", self._path(pid, "/stdin"),
                                  json_body={"sandbox_id": self._sandbox_id, "data": chunk, "close": close and last})

    def wait(self, pid: int, timeout: float = 30) -> ProcessInfo:
        """Waits up to ``timeout`` seconds (at most 300) for a process to end; check ``running`` on the answer."""
        return ProcessInfo.from_json(self._client._json(
            "POST", self._path(pid, "/wait"), json_body={"sandbox_id": self._sandbox_id, "timeout": int(timeout)},
            timeout=max(self._client.timeout, timeout + 30)))
