"""Shared fixtures: a fake server per test and a client whose retry waits are recorded, not slept."""

from __future__ import annotations

import os
import sys
import unittest
from typing import Any, List

# Run from a checkout without installing: the package sits next to tests/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cloud_sandbox import Client, RetryPolicy  # noqa: E402
from fake_server import FakeServer  # noqa: E402


class FakeServerTest(unittest.TestCase):
    """Starts a FakeServer for each test; ``self.sleeps`` lists the retry waits the client asked for."""

    token_lifetime = 3600

    def setUp(self) -> None:
        self.server = FakeServer(token_lifetime=self.token_lifetime)
        self.addCleanup(self.server.close)
        self.sleeps: List[float] = []

    def client(self, **kwargs: Any) -> Client:
        kwargs.setdefault("user_id", "alice")
        kwargs.setdefault("timeout", 5.0)
        kwargs.setdefault("retry", RetryPolicy(sleep=self.sleeps.append))
        c = Client(self.server.url, **kwargs)
        self.addCleanup(c.close)
        return c
