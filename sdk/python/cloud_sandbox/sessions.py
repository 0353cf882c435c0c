"""Session operations (``client.sessions``): long-lived sandboxes that can be paused."""

from __future__ import annotations

import time
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

from . import _config, errors
from .models import SessionInfo

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

SessionRef = Union[str, SessionInfo]


def _id(session: SessionRef) -> str:
    sid = session.session_id if isinstance(session, SessionInfo) else session
    if not sid:
        raise ValueError("session id is empty")
    return urllib.parse.quote(sid, safe="")


class Sessions:
    """Creates, lists, pauses, resumes and deletes sessions. Reach it as ``client.sessions``."""

    def __init__(self, client: "Client") -> None:
        self._client = client

    def _session(self, method: str, path: str, **kwargs: Any) -> SessionInfo:
        return SessionInfo.from_json(self._client._json(method, path, **kwargs), client=self._client)

    def create(
        self,
        *,
        image: Optional[str] = None,
        cpu_count: Optional[float] = None,
        memory_mb: Optional[int] = None,
        network: Optional[bool] = None,
        idle_timeout: Optional[int] = None,
        max_lifetime: Optional[int] = None,
    ) -> SessionInfo:
        """Creates a session and waits (on the server, bounded) for its sandbox to start.

        Unset arguments take the server's defaults (image ``SANDBOX_IMAGE``, 1 CPU,
        512 MiB, no network). ``idle_timeout`` and ``max_lifetime`` are seconds.
        Retries reuse one idempotency key, so a retry never creates a second session.
        """
        body: Dict[str, Any] = {}
        for key, value in (("image", image), ("cpu_count", cpu_count), ("memory_mb", memory_mb),
                           ("network", network), ("idle_timeout", idle_timeout),
                           ("max_lifetime", max_lifetime)):
            if value is not None:
                body[key] = value
        return self._session("POST", "/api/v1/sessions", json_body=body,
                             idempotency_key=uuid.uuid4().hex,
                             timeout=max(self._client.timeout, _config.PLACEMENT_TIMEOUT))

    def list(self) -> List[SessionInfo]:
        """Returns the caller's sessions that are not deleted (an admin sees everyone's)."""
        doc = self._client._json("GET", "/api/v1/sessions")
        return [SessionInfo.from_json(d, client=self._client)
                for d in doc.get("sessions") or [] if isinstance(d, dict)]

    def get(self, session: SessionRef) -> SessionInfo:
        """Returns one session; NotFoundError for an unknown id or another user's."""
        return self._session("GET", f"/api/v1/sessions/{_id(session)}")

    def pause(self, session: SessionRef) -> SessionInfo:
        """Pauses the session's sandbox (its processes freeze); ConflictError if it cannot be paused."""
        return self._session("POST", f"/api/v1/sessions/{_id(session)}/pause")

    def resume(self, session: SessionRef) -> SessionInfo:
        """Resumes a paused session; ConflictError for a deleted one."""
        return self._session("POST", f"/api/v1/sessions/{_id(session)}/resume")

    def delete(self, session: SessionRef) -> SessionInfo:
        """Deletes the session and its sandbox; returns the final state (``status == "deleted"``)."""
        return self._session("DELETE", f"/api/v1/sessions/{_id(session)}",
                             idempotency_key=uuid.uuid4().hex)

    def wait_ready(self, session: SessionRef, timeout: float = 120.0) -> SessionInfo:
        """Polls until the session's sandbox is active and returns the session.

        Raises ConflictError if the sandbox failed and TimeoutError after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        delay = 0.2
        current = session if isinstance(session, SessionInfo) else self.get(session)
        while True:
            if current.sandbox_status == "active" and current.sandbox_id:
                return current
            if current.sandbox_status in ("failed", "terminating", "terminated") or current.status == "deleted":
                raise errors.ConflictError(
                    f"session {current.session_id} has no usable sandbox "
                    f"(status {current.status!r}, sandbox_status {current.sandbox_status!r})")
            if time.monotonic() >= deadline:
                raise errors.TimeoutError(
                    f"session {current.session_id}: sandbox still {current.sandbox_status!r} after {timeout:g}s")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            current = self.get(current.session_id)
