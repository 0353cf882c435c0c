"""Typed results returned by the SDK.

Each type is a dataclass built from the server's JSON with ``from_json``, which
ignores fields it does not know (a newer server may add some) and keeps the
original object in ``raw``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Dict, List, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client
    from .sandbox import Sandbox

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$"
)


def parse_time(value: Any) -> Optional[datetime]:
    """Parses an RFC 3339 time (Go emits up to nanoseconds) into an aware datetime.

    Returns None for an empty, missing or unparseable value; a zero Go time
    (year 1) is treated as missing.
    """
    if not isinstance(value, str) or not value:
        return None
    m = _RFC3339.match(value)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if year <= 1:
        return None
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    zone = m.group(8)
    if zone in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        return None


def _s(d: Dict[str, Any], key: str) -> str:
    v = d.get(key)
    return v if isinstance(v, str) else ("" if v is None else str(v))


def _i(d: Dict[str, Any], key: str) -> int:
    v = d.get(key)
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return int(v)
    if isinstance(v, str):
        try:
            return int(float(v))
        except ValueError:
            return 0
    return 0


def _f(d: Dict[str, Any], key: str) -> float:
    v = d.get(key)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return 0.0


def _b(d: Dict[str, Any], key: str) -> bool:
    return d.get(key) is True


@dataclass
class ExecutionResult:
    """The outcome of :meth:`Sandbox.run_code` or :meth:`Sandbox.run_command`.

    A non-zero exit code is a result, not an error: check ``exit_code`` (or ``ok``).
    """

    stdout: str
    stderr: str
    exit_code: int
    duration_ms: int = 0
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the process exited with 0 and did not time out."""
        return self.exit_code == 0 and not self.timed_out

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "ExecutionResult":
        """Builds a result from the execute response object."""
        return cls(
            stdout=_s(d, "stdout"),
            stderr=_s(d, "stderr"),
            exit_code=_i(d, "exit_code"),
            duration_ms=_i(d, "duration_ms"),
            timed_out=_b(d, "timed_out"),
            stdout_truncated=_b(d, "stdout_truncated"),
            stderr_truncated=_b(d, "stderr_truncated"),
            raw=dict(d),
        )


@dataclass
class FileInfo:
    """One entry of :meth:`Sandbox.list_files`."""

    name: str
    path: str
    size: int
    type: str
    """``file``, ``dir``, ``symlink`` or ``other``."""
    mode: str = ""
    """Permission bits in octal, e.g. ``"0644"``."""
    modified_at: Optional[datetime] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_dir(self) -> bool:
        """True for a directory."""
        return self.type == "dir"

    @property
    def is_file(self) -> bool:
        """True for a regular file."""
        return self.type == "file"

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "FileInfo":
        """Builds a FileInfo from one element of the server's ``files`` list."""
        return cls(
            name=_s(d, "name"),
            path=_s(d, "path"),
            size=_i(d, "size"),
            type=_s(d, "type"),
            mode=_s(d, "mode"),
            modified_at=parse_time(d.get("modified_at")),
            raw=dict(d),
        )


@dataclass
class SandboxInfo:
    """A sandbox as the server describes it (``GET /api/v1/sandbox/{id}``)."""

    sandbox_id: str
    status: str
    container_id: str = ""
    ip: str = ""
    image: str = ""
    user_id: str = ""
    session_id: str = ""
    cpu_count: float = 0.0
    memory_mb: int = 0
    created_at: Optional[datetime] = None
    disk_mb: int = 0
    #: The hard end of the sandbox's life (None: no end).
    expires_at: Optional[datetime] = None
    #: Seconds unused before it is released (0: never).
    idle_timeout: int = 0
    metadata: Dict[str, str] = field(default_factory=dict)
    #: Names of the variables every process gets (values are never shown).
    env_keys: List[str] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "SandboxInfo":
        """Builds a SandboxInfo from the server's sandbox object."""
        md = d.get("metadata")
        keys = d.get("env_keys")
        return cls(
            sandbox_id=_s(d, "sandbox_id"),
            status=_s(d, "status"),
            container_id=_s(d, "container_id"),
            ip=_s(d, "ip"),
            image=_s(d, "image"),
            user_id=_s(d, "user_id"),
            session_id=_s(d, "session_id"),
            cpu_count=_f(d, "cpu_count"),
            memory_mb=_i(d, "memory_mb"),
            created_at=parse_time(d.get("created_at")),
            disk_mb=_i(d, "disk_mb"),
            expires_at=parse_time(d.get("expires_at")),
            idle_timeout=_i(d, "idle_timeout"),
            metadata={str(k): str(v) for k, v in md.items()} if isinstance(md, dict) else {},
            env_keys=[str(k) for k in keys] if isinstance(keys, list) else [],
            raw=dict(d),
        )


@dataclass
class PoolStats:
    """Sandbox counts by status and the pool's bounds (``GET /api/v1/sandbox/stats``)."""

    total: int
    idle: int
    active: int
    pending: int = 0
    paused: int = 0
    terminating: int = 0
    failed: int = 0
    min_size: int = 0
    max_size: int = 0
    image: str = ""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "PoolStats":
        """Builds PoolStats from the stats response."""
        return cls(
            total=_i(d, "total"),
            idle=_i(d, "idle"),
            active=_i(d, "active"),
            pending=_i(d, "pending"),
            paused=_i(d, "paused"),
            terminating=_i(d, "terminating"),
            failed=_i(d, "failed"),
            min_size=_i(d, "min_size"),
            max_size=_i(d, "max_size"),
            image=_s(d, "image"),
            raw=dict(d),
        )


@dataclass
class SessionInfo:
    """A long-lived session and the sandbox that backs it.

    A SessionInfo returned by a :class:`Client` remembers that client, so
    ``session.sandbox()``, ``session.pause()``, ``session.resume()``,
    ``session.delete()`` and ``session.refresh()`` work on it directly.
    """

    session_id: str
    status: str
    user_id: str = ""
    image: str = ""
    cpu_count: float = 0.0
    memory_mb: int = 0
    network: bool = False
    sandbox_id: str = ""
    sandbox_status: str = ""
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None
    last_active_at: Optional[datetime] = None
    idle_timeout: int = 0
    """Seconds; 0 means the server default."""
    max_lifetime: int = 0
    """Seconds; 0 means the server default."""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    client: Optional["Client"] = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any], client: Optional["Client"] = None) -> "SessionInfo":
        """Builds a SessionInfo from the server's session object."""
        return cls(
            session_id=_s(d, "session_id"),
            status=_s(d, "status"),
            user_id=_s(d, "user_id"),
            image=_s(d, "image"),
            cpu_count=_f(d, "cpu_count"),
            memory_mb=_i(d, "memory_mb"),
            network=_b(d, "network"),
            sandbox_id=_s(d, "sandbox_id"),
            sandbox_status=_s(d, "sandbox_status"),
            created_at=parse_time(d.get("created_at")),
            updated_at=parse_time(d.get("updated_at")),
            last_active_at=parse_time(d.get("last_active_at")),
            idle_timeout=_i(d, "idle_timeout"),
            max_lifetime=_i(d, "max_lifetime"),
            raw=dict(d),
            client=client,
        )

    def _bound(self) -> "Client":
        if self.client is None:
            raise ValueError("this SessionInfo is not bound to a Client; use client.sessions instead")
        return self.client

    def sandbox(self, *, delete_on_exit: bool = False, wait_timeout: float = 120.0) -> "Sandbox":
        """Returns a :class:`Sandbox` bound to this session's sandbox.

        Waits (up to ``wait_timeout`` seconds) for the sandbox to become active.
        Leaving its ``with`` block deletes the session only if ``delete_on_exit``.
        """
        from .sandbox import Sandbox

        return Sandbox.from_session(self, delete_on_exit=delete_on_exit, wait_timeout=wait_timeout)

    def refresh(self) -> "SessionInfo":
        """Fetches the session again and returns the new state."""
        return self._bound().sessions.get(self.session_id)

    def pause(self) -> "SessionInfo":
        """Pauses the session and returns its new state."""
        return self._bound().sessions.pause(self.session_id)

    def resume(self) -> "SessionInfo":
        """Resumes the session and returns its new state."""
        return self._bound().sessions.resume(self.session_id)

    def delete(self) -> "SessionInfo":
        """Deletes the session (and its sandbox) and returns its final state."""
        return self._bound().sessions.delete(self.session_id)
