"""Client settings: explicit arguments first, then the environment, then defaults."""

from __future__ import annotations

import os
from typing import Optional

DEFAULT_BASE_URL = "http://localhost:8080"
DEFAULT_TIMEOUT = 60.0
# Acquire and session create wait on the server for a sandbox to start; give
# them longer than ordinary requests so a slow start is not cut short.
PLACEMENT_TIMEOUT = 300.0

ENV_URL = "CLOUD_SANDBOX_URL"
ENV_USER = "CLOUD_SANDBOX_USER"
ENV_API_KEY = "CLOUD_SANDBOX_API_KEY"
ENV_TOKEN = "CLOUD_SANDBOX_TOKEN"
ENV_REFRESH_TOKEN = "CLOUD_SANDBOX_REFRESH_TOKEN"
ENV_TIMEOUT = "CLOUD_SANDBOX_TIMEOUT"


def setting(value: Optional[str], env: str) -> Optional[str]:
    """Returns ``value`` if given, else the non-empty environment variable ``env``, else None."""
    if value:
        return value
    return os.environ.get(env) or None


def base_url(value: Optional[str]) -> str:
    """The server URL: argument, CLOUD_SANDBOX_URL, or http://localhost:8080."""
    return setting(value, ENV_URL) or DEFAULT_BASE_URL


def timeout(value: Optional[float]) -> float:
    """The request timeout in seconds: argument, CLOUD_SANDBOX_TIMEOUT, or 60."""
    if value is not None:
        return float(value)
    raw = os.environ.get(ENV_TIMEOUT)
    if raw:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{ENV_TIMEOUT}={raw!r} is not a number of seconds") from None
    return DEFAULT_TIMEOUT
