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
from .code_context import Context, Execution, ExecutionError, Logs, Result
from .errors import (
    AuthenticationError,
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
from .models import ExecutionResult, FileInfo, PoolStats, SandboxInfo, SessionInfo
from .sandbox import Sandbox
from .sessions import Sessions

# A library logs nowhere unless the application configures logging.
logging.getLogger("cloud_sandbox").addHandler(logging.NullHandler())

__all__ = [
    "__version__",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "ConnectionError",
    "Context",
    "Execution",
    "ExecutionError",
    "ExecutionResult",
    "FileInfo",
    "Logs",
    "NotFoundError",
    "PermissionDeniedError",
    "PoolStats",
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
]
