"""Typed exceptions raised by the SDK.

Every error derives from :class:`SandboxError` and carries the server's message,
the HTTP status and the server's machine-readable ``code`` when there was a
response. Callers branch on the class::

    try:
        sandbox.read_file("/workspace/missing.txt")
    except NotFoundError as e:
        print("no such file:", e.message)

:class:`TimeoutError` and :class:`ConnectionError` also derive from the
built-in exceptions of the same name, so ``except TimeoutError`` catches them
whether or not it was imported from this package.
"""

from __future__ import annotations

import builtins
from typing import Optional


class SandboxError(Exception):
    """Base class of every error raised by the SDK.

    Attributes:
        message: the human-readable message (the server's ``error`` field when there was one).
        status: the HTTP status code, or None when no response was received.
        code: the server's machine-readable code (``not_found``, ``rate_limited``, ...), or None.
        method: the HTTP method of the failed request, when known.
        path: the request path of the failed request, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        method: Optional[str] = None,
        path: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.method = method
        self.path = path

    def __str__(self) -> str:
        detail = []
        if self.status is not None:
            detail.append(f"HTTP {self.status}")
        if self.code:
            detail.append(f"code={self.code}")
        if self.method and self.path:
            detail.append(f"{self.method} {self.path}")
        if not detail:
            return self.message
        return f"{self.message} ({', '.join(detail)})"


class AuthenticationError(SandboxError):
    """The server refused the credentials (HTTP 401), even after renewing the token."""


class PermissionDeniedError(SandboxError):
    """Authenticated but not allowed (HTTP 403), e.g. a write outside /workspace and /tmp."""


class NotFoundError(SandboxError):
    """Unknown id, path, or another user's resource (HTTP 404)."""


class SandboxNotFoundError(NotFoundError):
    """The sandbox does not exist, or is another user's (HTTP 404 naming a sandbox)."""


class FileNotFoundError(NotFoundError, builtins.FileNotFoundError):  # noqa: A001 - deliberate
    """A path inside the sandbox does not exist (HTTP 404 from a file operation)."""


def refine_not_found(path: str, message: str) -> type:
    """Tells a missing sandbox from a missing file by what the server named."""
    if message.startswith("sandbox "):
        return SandboxNotFoundError
    if path.split("?", 1)[0].startswith("/api/v1/files"):
        return FileNotFoundError
    return NotFoundError


class ConflictError(SandboxError):
    """Invalid lifecycle transition (HTTP 409), e.g. executing in a paused sandbox."""


class ValidationError(SandboxError):
    """The request was refused as invalid (HTTP 400, 413 or 422)."""


class RateLimitError(SandboxError):
    """Too many requests (HTTP 429) after the retries ran out.

    Attributes:
        retry_after: seconds the server asked to wait, or None.
    """

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServerError(SandboxError):
    """The server failed (HTTP 5xx) or answered with something that is not valid JSON."""


class ServiceUnavailableError(ServerError):
    """HTTP 503 after the retries ran out: no leader yet, pool exhausted, sandbox not ready.

    Attributes:
        retry_after: seconds the server asked to wait, or None.
    """

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class TimeoutError(SandboxError, builtins.TimeoutError):  # noqa: A001 - deliberate, see module doc
    """The server did not answer within the client-side timeout."""


class ConnectionError(SandboxError, builtins.ConnectionError):  # noqa: A001 - deliberate
    """The server could not be reached, after the retries ran out."""


def error_for_status(status: int) -> type:
    """Returns the exception class for an HTTP error status."""
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status in (400, 413, 422):
        return ValidationError
    if status == 429:
        return RateLimitError
    if status == 503:
        return ServiceUnavailableError
    if status >= 500:
        return ServerError
    return SandboxError
