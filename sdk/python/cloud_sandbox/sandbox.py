"""The Sandbox: run code and commands and move files in one isolated container."""

from __future__ import annotations

import logging
import socket
import tarfile
import threading
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional, Tuple, Union, overload

from . import _archive, _exec, code_context, errors
from .files import Files
from ._exec import Command, OutputCallback
from .code_context import Context, ContextLike, Execution
from .client import Client
from .events import Event
from .commands import Commands
from .pty import Pty
from .models import ExecutionResult, FileInfo, PoolStats, SandboxInfo, SessionInfo


logger = logging.getLogger("cloud_sandbox")

EXECUTE_PATH = "/api/v1/execute"
STREAM_PATH = "/api/v1/execute/stream"
FILES_PATH = "/api/v1/files"


class Sandbox:
    """One sandbox. Use it as a context manager so it is given back even when the block raises.

    Example (the user guide's quick start)::

        from cloud_sandbox import Sandbox

        with Sandbox.create(base_url="http://localhost:8080", user_id="my-user-id") as sandbox:
            result = sandbox.run_code("print('Hello, World!')")
            print(result.stdout)  # Hello, World!

    A sandbox from :meth:`create` or :meth:`Client.acquire` is released when the
    ``with`` block exits; one bound to a session (:meth:`from_session`) or to an
    existing id (:meth:`connect`) is left alone unless asked otherwise.
    """

    def __init__(
        self,
        client: Client,
        info: SandboxInfo,
        *,
        release_on_exit: bool = False,
        owns_client: bool = False,
        session: Optional[SessionInfo] = None,
        delete_session_on_exit: bool = False,
    ) -> None:
        if not info.sandbox_id:
            raise ValueError("sandbox id is empty")
        self._client = client
        self._info = info
        self._release_on_exit = release_on_exit
        self._owns_client = owns_client
        self._session = session
        self._delete_session_on_exit = delete_session_on_exit
        self._closed = False
        self._close_lock = threading.Lock()
        self.files = Files(self)
        """Streamed file operations: read, write, list, exists, get_info, remove, rename, make_dir, watch_dir."""

    # --- construction ----------------------------------------------------------------

    @classmethod
    def create(
        cls,
        base_url: Optional[str] = None,
        user_id: Optional[str] = None,
        *,
        api_key: Optional[str] = None,
        token: Optional[str] = None,
        image: Optional[str] = None,
        template: Optional[str] = None,
        network: Optional[bool] = None,
        timeout: Optional[int] = None,
        idle_timeout: Optional[int] = None,
        cpu_count: Optional[float] = None,
        memory_mb: Optional[int] = None,
        disk_mb: Optional[int] = None,
        metadata: Optional[Mapping[str, str]] = None,
        envs: Optional[Mapping[str, str]] = None,
        request_timeout: Optional[float] = None,
        client: Optional[Client] = None,
    ) -> "Sandbox":
        """Gets a token and acquires a sandbox; closing the Sandbox releases it.

        ``timeout`` is the sandbox's lifetime in seconds, as E2B's SDK has it (the
        server's default when None; :meth:`set_timeout` changes it later);
        ``idle_timeout`` releases it after that many seconds unused. ``metadata``
        is kept with the sandbox (``Sandbox.list(metadata=...)`` finds it) and
        ``envs`` reaches every process started in it. ``request_timeout`` bounds
        each HTTP request.

        Pass ``client`` to share one :class:`Client` (its credentials are used);
        otherwise a client is made from the arguments and the environment
        (``CLOUD_SANDBOX_URL``, ``CLOUD_SANDBOX_USER``, ``CLOUD_SANDBOX_API_KEY``)
        and closed with the sandbox.
        """
        owns = client is None
        if client is None:
            client = Client(base_url, user_id, api_key=api_key, token=token, timeout=request_timeout)
        try:
            info = client._acquire(image=image, template=template, network=network, timeout=timeout,
                                   idle_timeout=idle_timeout, cpu_count=cpu_count, memory_mb=memory_mb,
                                   disk_mb=disk_mb, metadata=metadata, envs=envs)
        except BaseException:
            if owns:
                client.close()
            raise
        return cls(client, info, release_on_exit=True, owns_client=owns)

    @classmethod
    def connect(
        cls,
        sandbox_id: str,
        *,
        client: Optional[Client] = None,
        base_url: Optional[str] = None,
        user_id: Optional[str] = None,
        api_key: Optional[str] = None,
        token: Optional[str] = None,
    ) -> "Sandbox":
        """Binds to an existing sandbox by id, resuming it if it is paused; closing it releases nothing.

        Raises :class:`SandboxNotFoundError` for an unknown id or another user's.
        """
        owns = client is None
        if client is None:
            client = Client(base_url, user_id, api_key=api_key, token=token)
        try:
            info = client.connect(sandbox_id)
        except BaseException:
            if owns:
                client.close()
            raise
        return cls(client, info, owns_client=owns)

    @classmethod
    def list(
        cls,
        *,
        client: Optional[Client] = None,
        state: Optional[str] = None,
        image: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        created_after: Any = None,
        created_before: Any = None,
        limit: Optional[int] = None,
        base_url: Optional[str] = None,
        user_id: Optional[str] = None,
        api_key: Optional[str] = None,
        token: Optional[str] = None,
    ) -> "SandboxPaginator":
        """Lists the caller's sandboxes, filtered, a page of ``limit`` at a time.

        Iterate over the result for every match, or call ``next_items()`` while
        ``has_next`` for one page at a time (as E2B's paginator does).
        """
        if client is None:
            client = Client(base_url, user_id, api_key=api_key, token=token)
        query = {"state": state, "image": image, "metadata": metadata, "created_after": created_after,
                 "created_before": created_before, "limit": limit}
        return SandboxPaginator(client, query)

    @classmethod
    def from_session(
        cls,
        session: SessionInfo,
        *,
        client: Optional[Client] = None,
        delete_on_exit: bool = False,
        wait_timeout: float = 120.0,
    ) -> "Sandbox":
        """Binds to a session's sandbox, waiting up to ``wait_timeout`` s while it is still pending.

        Closing it deletes the session only when ``delete_on_exit`` is true.
        """
        client = client or session.client
        if client is None:
            raise ValueError("from_session needs a client: pass client= or a SessionInfo from client.sessions")
        if not session.sandbox_id or session.sandbox_status in ("", "pending"):
            session = client.sessions.wait_ready(session, timeout=wait_timeout)
        info = SandboxInfo(sandbox_id=session.sandbox_id, status=session.sandbox_status,
                           session_id=session.session_id, image=session.image,
                           cpu_count=session.cpu_count, memory_mb=session.memory_mb)
        return cls(client, info, session=session, delete_session_on_exit=delete_on_exit)

    # --- identity -----------------------------------------------------------------------

    @property
    def sandbox_id(self) -> str:
        """The sandbox's id (16 lowercase hex characters)."""
        return self._info.sandbox_id

    @property
    def client(self) -> Client:
        """The client this sandbox uses."""
        return self._client

    @property
    def session(self) -> Optional[SessionInfo]:
        """The session this sandbox belongs to, if it was bound with :meth:`from_session`."""
        return self._session

    @property
    def commands(self) -> "Commands":
        """Foreground and background commands: ``run``, ``list``, ``connect``, ``kill`` (see :mod:`.commands`)."""
        return Commands(self)

    @property
    def pty(self) -> "Pty":
        """Programs on a pseudo-terminal: ``create``, ``connect``, ``resize`` (see :mod:`.pty`)."""
        return Pty(self)

    def info(self) -> SandboxInfo:
        """Fetches the sandbox's current state from the server."""
        self._info = self._client.get_sandbox(self.sandbox_id)
        return self._info

    def get_info(self) -> SandboxInfo:
        """Fetches the sandbox's current state (E2B's name for :meth:`info`)."""
        return self.info()

    def set_timeout(self, timeout: int) -> SandboxInfo:
        """Ends the sandbox ``timeout`` seconds from now (extending or shortening its life)."""
        self._info = self._client.set_timeout(self.sandbox_id, timeout)
        return self._info

    def pause(self) -> SandboxInfo:
        """Pauses the sandbox; :meth:`resume` or :meth:`connect` brings it back."""
        self._info = self._client.pause(self.sandbox_id)
        return self._info

    def resume(self) -> SandboxInfo:
        """Resumes the sandbox and returns once it runs."""
        self._info = self._client.resume(self.sandbox_id)
        return self._info

    def events(self, *, since: Optional[str] = None, follow: bool = True) -> Iterator[Event]:
        """Iterates over this sandbox's lifecycle events (see :meth:`Client.events`)."""
        return self._client.events(since=since, sandbox_id=self.sandbox_id, follow=follow)

    def stats(self) -> PoolStats:
        """Returns the pool's counts by status (the same for every sandbox of the server)."""
        return self._client.stats()

    # --- execution ------------------------------------------------------------------------

    @overload
    def run_code(self, code: str, language: str = ..., timeout: float = ..., *,
                 env: Optional[Mapping[str, str]] = ..., cwd: Optional[str] = ..., stdin: Optional[str] = ...,
                 on_stdout: Optional[OutputCallback] = ..., on_stderr: Optional[OutputCallback] = ...,
                 context: None = ...) -> ExecutionResult: ...

    @overload
    def run_code(self, code: str, language: str = ..., timeout: float = ..., *,
                 env: Optional[Mapping[str, str]] = ..., cwd: Optional[str] = ..., stdin: Optional[str] = ...,
                 on_stdout: Optional[OutputCallback] = ..., on_stderr: Optional[OutputCallback] = ...,
                 context: ContextLike) -> Execution: ...

    def run_code(
        self,
        code: str,
        language: str = "python",
        timeout: float = 30,
        *,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stdin: Optional[str] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
        context: Optional[ContextLike] = None,
    ) -> Union[ExecutionResult, Execution]:
        """Runs a snippet (``python``, ``bash`` or ``sh``) and returns its result.

        ``timeout`` (seconds, 1-300) bounds the run: past it the process is killed
        and the result has ``timed_out=True``. With ``on_stdout``/``on_stderr`` the
        output is streamed to the callbacks as it is produced.

        With ``context`` (from :meth:`create_code_context`) the code runs in that
        context's interpreter, which keeps its state between calls, and the answer
        is an :class:`~cloud_sandbox.code_context.Execution` (``results``, ``logs``,
        ``error``, ``text``); a timeout interrupts the code (``KeyboardInterrupt``)
        and the context stays usable. The language, ``env`` and ``cwd`` are the
        context's (set when it is created): ``language`` is ignored, and passing
        ``env``, ``cwd`` or ``stdin`` is an error.
        """
        if context is not None:
            if env is not None or cwd is not None or stdin is not None:
                raise ValueError("env, cwd and stdin are set when the code context is created, not per run")
            return code_context.run(self._client, context, code, timeout, on_stdout, on_stderr)
        body = _exec.exec_body(self.sandbox_id, code=code, language=language, timeout=timeout,
                               env=env, cwd=cwd, stdin=stdin)
        return self._execute(body, timeout, on_stdout, on_stderr)

    # --- code contexts (code_context.py) ---------------------------------------------------

    def create_code_context(self, language: str = "python", *, cwd: Optional[str] = None,
                            envs: Optional[Mapping[str, str]] = None) -> Context:
        """Starts a code context: an interpreter (``python``, or ``bash``) whose variables,
        imports and functions persist across ``run_code(..., context=ctx)`` calls.
        At most 16 per sandbox."""
        return code_context.create(self._client, self.sandbox_id, language, cwd, envs)

    def list_code_contexts(self) -> List[Context]:
        """Lists this sandbox's code contexts, oldest first."""
        return code_context.list_contexts(self._client, self.sandbox_id)

    def restart_code_context(self, context: ContextLike) -> Context:
        """Gives the context a fresh interpreter: every name it defined is gone."""
        return code_context.restart(self._client, context)

    def remove_code_context(self, context: ContextLike) -> None:
        """Deletes the context and ends its interpreter."""
        code_context.remove(self._client, context)

    def run_command(
        self,
        command: Command,
        timeout: float = 30,
        *,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stdin: Optional[str] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> ExecutionResult:
        """Runs a command: a string goes through ``/bin/sh -c``, a list is an argv run directly.

        ``cwd`` defaults to ``/workspace``; ``env`` adds environment variables.
        A non-zero exit is a result (check ``exit_code``), not an exception.
        """
        body = _exec.exec_body(self.sandbox_id, command=command, timeout=timeout,
                               env=env, cwd=cwd, stdin=stdin)
        return self._execute(body, timeout, on_stdout, on_stderr)

    def _execute(self, body: Mapping[str, Any], timeout: Optional[float],
                 on_stdout: Optional[OutputCallback], on_stderr: Optional[OutputCallback]) -> ExecutionResult:
        http_timeout = max(self._client.timeout, float(timeout or 30) + _exec.RESPONSE_GRACE)
        if on_stdout is None and on_stderr is None:
            doc = self._client._json("POST", EXECUTE_PATH, json_body=body, timeout=http_timeout)
            return ExecutionResult.from_json(doc)
        with self._client._stream("POST", STREAM_PATH, json_body=body, timeout=http_timeout,
                                  accept="application/x-ndjson") as resp:
            return _exec.read_stream(resp.iter_lines(), on_stdout, on_stderr, STREAM_PATH)

    # --- files ------------------------------------------------------------------------------

    def write_file(self, path: str, content: Union[str, bytes]) -> int:
        """Writes a file (parent directories are created) and returns its size in bytes.

        Text is sent as UTF-8; bytes are sent raw, so any binary content round-trips.
        """
        if isinstance(content, str):
            doc = self._client._json("PUT", FILES_PATH, json_body={
                "sandbox_id": self.sandbox_id, "path": path, "content": content, "encoding": "utf-8"})
        elif isinstance(content, (bytes, bytearray, memoryview)):
            doc = self._client._json("PUT", FILES_PATH + "/content",
                                     query={"sandbox_id": self.sandbox_id, "path": path},
                                     body=bytes(content), content_type="application/octet-stream")
        else:
            raise TypeError(f"write_file content must be str or bytes, not {type(content).__name__}")
        size = doc.get("size")
        return int(size) if isinstance(size, (int, float)) else len(content)

    @overload
    def read_file(self, path: str, *, binary: Literal[False] = ..., encoding: str = ...) -> str: ...

    @overload
    def read_file(self, path: str, *, binary: Literal[True], encoding: str = ...) -> bytes: ...

    def read_file(self, path: str, *, binary: bool = False, encoding: str = "utf-8") -> Union[str, bytes]:
        """Reads a file: text decoded with ``encoding``, or raw bytes with ``binary=True``."""
        resp = self._client._request("GET", FILES_PATH + "/content",
                                     query={"sandbox_id": self.sandbox_id, "path": path},
                                     accept="application/octet-stream")
        return resp.body if binary else resp.body.decode(encoding)

    def list_files(self, path: str = "/workspace") -> List[FileInfo]:
        """Lists a directory's entries."""
        doc = self._client._json("GET", FILES_PATH, query={"sandbox_id": self.sandbox_id, "path": path})
        return [FileInfo.from_json(d) for d in doc.get("files") or [] if isinstance(d, dict)]

    def delete_file(self, path: str, recursive: bool = False) -> None:
        """Deletes a file, or a directory with ``recursive=True``."""
        self._client._json("DELETE", FILES_PATH, query={
            "sandbox_id": self.sandbox_id, "path": path, "recursive": True if recursive else None})

    def make_dir(self, path: str) -> None:
        """Creates a directory and its parents."""
        self._client._json("POST", FILES_PATH + "/mkdir", json_body={"sandbox_id": self.sandbox_id, "path": path},
                           resend_safe=True)

    def upload_dir(self, local_dir: str, remote_dir: str) -> int:
        """Copies the contents of a local directory into ``remote_dir``; returns the server's file count."""
        with _archive.pack_dir(local_dir) as archive:
            doc = self._client._json("PUT", FILES_PATH + "/archive",
                                     query={"sandbox_id": self.sandbox_id, "path": remote_dir},
                                     body=archive, content_type="application/x-tar")
        files = doc.get("files")
        return int(files) if isinstance(files, (int, float)) else 0

    def download_dir(self, remote_dir: str, local_dir: str) -> int:
        """Copies the contents of ``remote_dir`` into a local directory; returns the number of files."""
        with self._client._stream("GET", FILES_PATH + "/archive",
                                  query={"sandbox_id": self.sandbox_id, "path": remote_dir},
                                  accept="application/x-tar") as resp:
            try:
                return _archive.unpack_stream(resp.raw, local_dir)
            except socket.timeout as e:
                raise errors.TimeoutError(f"download_dir {remote_dir}: timed out reading the archive",
                                          method="GET", path=FILES_PATH + "/archive") from e
            except tarfile.TarError as e:
                raise errors.ServerError(f"download_dir {remote_dir}: unreadable archive: {e}",
                                         method="GET", path=FILES_PATH + "/archive") from e

    # --- lifecycle ------------------------------------------------------------------------

    def release(self) -> None:
        """Gives the sandbox back to the server now (it is destroyed). Safe to call twice."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._client.release(self.sandbox_id)
        except errors.NotFoundError:
            pass  # already gone

    def close(self) -> None:
        """Releases the sandbox if this object owns it (or deletes its session if asked) and closes its client."""
        try:
            if self._release_on_exit:
                self.release()
            elif self._delete_session_on_exit and self._session is not None:
                with self._close_lock:
                    done, self._closed = self._closed, True
                if not done:
                    try:
                        self._client.sessions.delete(self._session.session_id)
                    except errors.NotFoundError:
                        pass
        finally:
            if self._owns_client:
                self._client.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        # The block failed: give the sandbox back, but never hide the block's own error.
        try:
            self.close()
        except Exception:
            logger.warning("could not release sandbox %s after an error in the with block",
                           self.sandbox_id, exc_info=True)

    def __repr__(self) -> str:
        return f"Sandbox(sandbox_id={self.sandbox_id!r}, base_url={self._client.base_url!r})"


class SandboxPaginator:
    """Pages of :meth:`Sandbox.list`: iterate for every sandbox, or page by hand."""

    def __init__(self, client: Client, query: Dict[str, Any]) -> None:
        self._client = client
        self._query = query
        self._token: Optional[str] = None
        self._started = False

    @property
    def has_next(self) -> bool:
        """True until the last page was read."""
        return not self._started or self._token is not None

    def next_items(self) -> List[SandboxInfo]:
        """Returns the next page (empty once there is none)."""
        if not self.has_next:
            return []
        items, self._token = self._client.sandboxes_page(page_token=self._token, **self._query)
        self._started = True
        return items

    def __iter__(self) -> Iterator[SandboxInfo]:
        while self.has_next:
            yield from self.next_items()
