"""``sandbox.files``: the sandbox's file system, streamed both ways.

Names follow E2B's SDK where that costs nothing (``read``, ``write``, ``list``,
``exists``, ``get_info``, ``remove``, ``rename``, ``make_dir``, ``watch_dir``).
Nothing here holds a whole file in memory unless asked to: ``read(format="stream")``
yields the file as it arrives, and ``write`` sends a file object or an iterator
of bytes as it reads it.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import (TYPE_CHECKING, IO, Any, Callable, Dict, Iterable, Iterator, List, Literal, Optional,
                    Union, overload)

from . import errors
from .models import parse_time

if TYPE_CHECKING:
    from ._transport import StreamResponse
    from .sandbox import Sandbox

logger = logging.getLogger("cloud_sandbox")

FILES_PATH = "/api/v1/files"

# Bytes per chunk when reading a stream.
CHUNK = 256 << 10

WriteData = Union[str, bytes, bytearray, memoryview, IO[bytes], Iterable[bytes]]


@dataclass
class EntryInfo:
    """One file system entry, as :meth:`Files.get_info` and :meth:`Files.list` describe it."""

    name: str
    path: str
    type: str
    """``file``, ``dir``, ``symlink`` or ``other``."""
    size: int = 0
    mode: str = ""
    """Permission bits in octal, e.g. ``"0644"``."""
    modified_time: Optional[datetime] = None
    symlink_target: Optional[str] = None
    """What a symlink points to, as written; None for anything else."""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_dir(self) -> bool:
        return self.type == "dir"

    @property
    def is_file(self) -> bool:
        return self.type == "file"

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "EntryInfo":
        size = d.get("size")
        return cls(name=str(d.get("name") or ""), path=str(d.get("path") or ""), type=str(d.get("type") or ""),
                   size=int(size) if isinstance(size, (int, float)) else 0, mode=str(d.get("mode") or ""),
                   modified_time=parse_time(d.get("modified_at")),
                   symlink_target=d.get("symlink_target") or None, raw=dict(d))


class EntryList(List[EntryInfo]):
    """A listing: a list of :class:`EntryInfo` that also says whether it was cut short."""

    truncated: bool = False
    """True when the server stopped at its entry limit: more entries exist."""


@dataclass
class WriteInfo:
    """What :meth:`Files.write` wrote."""

    path: str
    size: int


@dataclass
class FilesystemEvent:
    """One change seen by :meth:`Files.watch_dir`.

    ``type`` is ``create``, ``write``, ``remove``, ``rename`` or ``chmod``; for a rename
    ``path`` is the new path and ``old_path`` the previous one.
    """

    type: str
    path: str
    old_path: Optional[str] = None
    is_dir: bool = False

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class FileStream(io.RawIOBase):
    """A file being downloaded: read it like a binary file, or iterate over its chunks.

    Close it (or use ``with``) when done; the connection is released then.
    """

    def __init__(self, resp: "StreamResponse", path: str) -> None:
        super().__init__()
        self._resp = resp
        self._path = path
        length = resp.headers.get("Content-Length")
        self.size: Optional[int] = int(length) if length and length.isdigit() else None
        """The file's size in bytes when the server said it (it does for regular files)."""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            return self._resp.raw.readinto(b)
        except socket.timeout as e:
            self._resp.abort()
            raise errors.TimeoutError(f"read {self._path}: timed out", method="GET", path=FILES_PATH + "/content") from e
        except (OSError, http.client.HTTPException) as e:
            # IncompleteRead: the server cut the stream (its source broke); the file is not whole.
            self._resp.abort()
            raise errors.ConnectionError(f"read {self._path}: connection lost: {e!r}", method="GET",
                                         path=FILES_PATH + "/content") from e

    def __iter__(self) -> Iterator[bytes]:  # type: ignore[override]
        while True:
            chunk = self.read(CHUNK)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        if not self.closed:
            self._resp.close()
        super().close()


class WatchHandle:
    """A running :meth:`Files.watch_dir`; call :meth:`stop` to end it."""

    def __init__(self, resp: "StreamResponse", thread_name: str,
                 on_event: Callable[[FilesystemEvent], None],
                 on_exit: Optional[Callable[[Optional[BaseException]], None]]) -> None:
        self._resp = resp
        self._on_event = on_event
        self._on_exit = on_exit
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failure: Optional[BaseException] = None
        try:
            for line in self._resp.iter_lines():
                doc = json.loads(line)
                kind = doc.get("type")
                if kind == "error":
                    failure = errors.ServerError(f"watch ended: {doc.get('data') or 'error'}")
                    return
                if kind in ("ready", "overflow") or not isinstance(kind, str):
                    if kind == "overflow":
                        logger.warning("watch: %s", doc.get("data"))
                    continue
                self._on_event(FilesystemEvent(type=kind, path=str(doc.get("path") or ""),
                                               old_path=doc.get("old_path") or None, is_dir=bool(doc.get("is_dir"))))
        except BaseException as e:  # noqa: BLE001 - reported to on_exit, never lost in a thread
            if not self._stopped.is_set():
                failure = e
        finally:
            self._resp.abort()
            if self._on_exit is not None:
                self._on_exit(failure)

    def stop(self, timeout: float = 10.0) -> None:
        """Ends the watch: the server stops watching as soon as the connection closes."""
        self._stopped.set()
        # The reader thread drops the connection when its read returns.
        self._resp.shutdown()
        if threading.current_thread() is not self._thread:  # stop() called from on_event
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "WatchHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Files:
    """The file operations of one sandbox (``sandbox.files``)."""

    def __init__(self, sandbox: "Sandbox") -> None:
        self._sandbox = sandbox

    def _q(self, path: str, **extra: Any) -> Dict[str, Any]:
        q: Dict[str, Any] = {"sandbox_id": self._sandbox.sandbox_id, "path": path}
        q.update(extra)
        return q

    # --- reading ----------------------------------------------------------------------

    @overload
    def read(self, path: str, format: Literal["text"] = ..., *, encoding: str = ...) -> str: ...

    @overload
    def read(self, path: str, format: Literal["bytes"], *, encoding: str = ...) -> bytes: ...

    @overload
    def read(self, path: str, format: Literal["stream"], *, encoding: str = ...) -> FileStream: ...

    def read(self, path: str, format: str = "text", *, encoding: str = "utf-8") -> Union[str, bytes, FileStream]:
        """Reads a file as text, as bytes, or as a stream (``format="stream"``) that holds
        one chunk at a time: iterate over it or ``read(n)`` from it, and close it."""
        if format not in ("text", "bytes", "stream"):
            raise ValueError(f"format must be 'text', 'bytes' or 'stream', not {format!r}")
        client = self._sandbox.client
        if format == "stream":
            resp = client._stream("GET", FILES_PATH + "/content", query=self._q(path), accept="application/octet-stream")
            return FileStream(resp, path)
        body = client._request("GET", FILES_PATH + "/content", query=self._q(path),
                               accept="application/octet-stream").body
        return body if format == "bytes" else body.decode(encoding)

    # --- writing ----------------------------------------------------------------------

    def write(self, path: str, data: WriteData) -> WriteInfo:
        """Writes a file (parents created) from text, bytes, a binary file object, or an
        iterable of bytes chunks (a generator), streaming what it reads: a file object or
        iterator of any size is never held in memory.

        The file appears whole or not at all: a failed write (the disk filled: 413) leaves
        what was there before. A seekable file is resent on a retry; an iterator or pipe
        cannot be, so a failure while sending it raises at once.
        """
        body: Any
        if isinstance(data, str):
            body = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            body = bytes(data)
        elif isinstance(data, io.TextIOBase):
            raise TypeError("write needs a binary file object (open it with 'rb')")
        elif hasattr(data, "read"):
            body = data if _seekable(data) else _chunks(data)  # type: ignore[arg-type]
        elif isinstance(data, Iterable):
            body = (bytes(c) for c in data if c)
        else:
            raise TypeError(f"write data must be str, bytes, a binary file object or an iterable of bytes, "
                            f"not {type(data).__name__}")
        doc = self._sandbox.client._json("PUT", FILES_PATH + "/content", query=self._q(path), body=body,
                                         content_type="application/octet-stream")
        size = doc.get("size")
        return WriteInfo(path=str(doc.get("path") or path), size=int(size) if isinstance(size, (int, float)) else -1)

    # --- metadata ---------------------------------------------------------------------

    def list(self, path: str = "/workspace", depth: int = 1, *, limit: Optional[int] = None) -> EntryList:
        """Lists a directory's entries and, with ``depth`` > 1, theirs, breadth first.

        Symlinks are listed, not followed. The server returns at most ``limit`` entries
        (default 10,000); ``truncated`` on the result says when more exist.
        """
        doc = self._sandbox.client._json("GET", FILES_PATH, query=self._q(path, depth=depth, limit=limit))
        out = EntryList(EntryInfo.from_json(d) for d in doc.get("files") or [] if isinstance(d, dict))
        out.truncated = bool(doc.get("truncated"))
        return out

    def exists(self, path: str) -> bool:
        """True when something (a file, directory or symlink, even a dangling one) is at ``path``."""
        return bool(self._sandbox.client._json("GET", FILES_PATH + "/exists", query=self._q(path)).get("exists"))

    def get_info(self, path: str) -> EntryInfo:
        """Describes one entry without following it: a symlink is a symlink, with its target.

        Raises NotFoundError when nothing is there.
        """
        return EntryInfo.from_json(self._sandbox.client._json("GET", FILES_PATH + "/stat", query=self._q(path)))

    def remove(self, path: str, *, recursive: bool = True) -> None:
        """Removes a file, or a directory with everything in it (as E2B's ``remove`` does)."""
        self._sandbox.client._json("DELETE", FILES_PATH, query=self._q(path, recursive=recursive))

    def rename(self, old_path: str, new_path: str) -> EntryInfo:
        """Moves an entry within the sandbox's writable directories and describes it at its new path.

        A destination outside them, or reached through a symlink that leads out, is refused
        (PermissionDeniedError); moving between ``/workspace`` and ``/tmp`` (two file systems)
        is a ConflictError.
        """
        self._sandbox.client._json("POST", FILES_PATH + "/rename", json_body={
            "sandbox_id": self._sandbox.sandbox_id, "from": old_path, "to": new_path})
        return self.get_info(new_path)

    def make_dir(self, path: str) -> bool:
        """Creates a directory and its parents; False when it already existed."""
        if self.exists(path):
            if not self.get_info(path).is_dir:
                raise errors.ConflictError(f"make_dir {path}: a file is in the way", status=409)
            return False
        self._sandbox.client._json("POST", FILES_PATH + "/mkdir",
                                   json_body={"sandbox_id": self._sandbox.sandbox_id, "path": path}, resend_safe=True)
        return True

    # --- watching ---------------------------------------------------------------------

    def watch_dir(self, path: str, on_event: Callable[[FilesystemEvent], None], *, recursive: bool = False,
                  on_exit: Optional[Callable[[Optional[BaseException]], None]] = None,
                  timeout: Optional[float] = None) -> WatchHandle:
        """Watches a directory and calls ``on_event`` (in a background thread) for every change.

        Returns once the watch is in place, so changes made after it are all reported, in
        order. ``stop()`` on the handle ends it; ``on_exit`` is called with None when it ends
        normally or with the exception that ended it. ``timeout`` bounds how long the stream
        may stay silent (the server writes a heartbeat every 15 s); default: none.
        """
        client = self._sandbox.client
        resp = client._stream("GET", FILES_PATH + "/watch", query=self._q(path, recursive=recursive),
                              accept="application/x-ndjson", timeout=timeout or client.timeout)
        try:
            first = next(resp.iter_lines(), b"")
            doc = json.loads(first) if first else {}
            if doc.get("type") != "ready":
                raise errors.ServerError(f"watch {path}: the stream did not start (first line {first[:200]!r})")
            if timeout is None:
                # A watch may rightly be silent for hours.
                resp.set_timeout(None)
        except BaseException:
            resp.abort()
            raise
        return WatchHandle(resp, f"cloud-sandbox-watch-{path}", on_event, on_exit)


def _seekable(f: Any) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while True:
        chunk = f.read(CHUNK)
        if not chunk:
            return
        if isinstance(chunk, str):
            raise TypeError("write needs a binary file object (open it with 'rb')")
        yield chunk
