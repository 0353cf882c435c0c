"""Cloud Sandbox Python SDK: isolated sandboxes for AI coding agents.

Quick start::

    from cloud_sandbox import Sandbox

    with Sandbox.create(base_url="http://localhost:8080", user_id="my-user-id") as sandbox:
        result = sandbox.run_code("print('Hello, World!')")
        print(result.stdout)  # Hello, World!
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

from ._transport import RetryPolicy
from .client import Client
from .events import Event
from .files import EntryInfo, EntryList, FileStream, FilesystemEvent, WatchHandle, WriteInfo
from .commands import CommandHandle, CommandResult, Commands, ProcessInfo
from .code_context import Context, Execution, ExecutionError, Logs, Result
from .errors import (
    AuthenticationError,
    FileNotFoundError,
    SandboxNotFoundError,
    ConflictError,
    ConnectionError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    SandboxError,
    ServerError,
    ServiceUnavailableError,
    TimeoutError,
    ValidationError,
)
from .pty import Pty, PtyHandle
from .models import ExecutionResult, FileInfo, PoolStats, SandboxInfo, SessionInfo
from .sandbox import Sandbox
from .sessions import Sessions

# A library logs nowhere unless the application configures logging.
logging.getLogger("cloud_sandbox").addHandler(logging.NullHandler())

__all__ = [
    "__version__",
    "AuthenticationError",
    "Event",
    "FileNotFoundError",
    "SandboxNotFoundError",
    "Client",
    "CommandHandle",
    "CommandResult",
    "Commands",
    "ConflictError",
    "ConnectionError",
    "EntryInfo",
    "EntryList",
    "FileStream",
    "FilesystemEvent",
    "Context",
    "Execution",
    "ExecutionError",
    "ExecutionResult",
    "FileInfo",
    "Logs",
    "NotFoundError",
    "PermissionDeniedError",
    "PoolStats",
    "ProcessInfo",
    "Pty",
    "PtyHandle",
    "RateLimitError",
    "Result",
    "RetryPolicy",
    "Sandbox",
    "SandboxError",
    "SandboxInfo",
    "ServerError",
    "ServiceUnavailableError",
    "SessionInfo",
    "Sessions",
    "TimeoutError",
    "ValidationError",
    "WatchHandle",
    "WriteInfo",
]
