"""Retries: bounded, honouring Retry-After, and never applying a mutating call twice."""

from __future__ import annotations

import socket
import unittest

from fake_server import Fault
from support import FakeServerTest

from cloud_sandbox import (Client, ConnectionError, RateLimitError, RetryPolicy, Sandbox,
                           ServiceUnavailableError, TimeoutError)
from cloud_sandbox._transport import parse_retry_after

ACQUIRE = "/api/v1/sandbox/acquire"


class RetryTest(FakeServerTest):
    def test_503_twice_then_success_reuses_the_idempotency_key(self) -> None:
        self.server.fail("POST", ACQUIRE, Fault(503), Fault(503))
        with Sandbox.create(client=self.client()) as sb:
            self.assertEqual(len(sb.sandbox_id), 16)
        calls = self.server.calls("POST", ACQUIRE)
        self.assertEqual([c.status for c in calls], [503, 503, 200])
        keys = {c.headers.get("Idempotency-Key") for c in calls}
        self.assertEqual(len(keys), 1)
        self.assertNotIn(None, keys)
        self.assertEqual(len(self.server.sandboxes), 1)
        self.assertEqual(len(self.sleeps), 2)

    def test_lost_acquire_response_does_not_leak_a_second_sandbox(self) -> None:
        # The server acquires, then the connection drops before the answer arrives.
        self.server.fail("POST", ACQUIRE, Fault(apply_then_drop=True))
        c = self.client()
        sb = c.acquire()
        self.assertEqual(list(self.server.sandboxes), [sb.sandbox_id])
        self.assertEqual([r.status for r in self.server.calls("POST", ACQUIRE)], [-1, 200])

    def test_lost_session_create_response_does_not_create_two_sessions(self) -> None:
        self.server.fail("POST", "/api/v1/sessions", Fault(apply_then_drop=True))
        session = self.client().sessions.create(cpu_count=2)
        self.assertEqual(list(self.server.sessions), [session.session_id])

    def test_lost_execute_response_is_not_resent(self) -> None:
        c = self.client()
        sb = c.acquire()
        self.server.fail("POST", "/api/v1/execute", Fault(apply_then_drop=True))
        with self.assertRaisesRegex(ConnectionError, "not resent"):
            sb.run_command("echo once")
        self.assertEqual(self.server.executions, 1)

    def test_429_waits_for_retry_after(self) -> None:
        self.server.fail("GET", "/api/v1/sandbox/stats", Fault(429, headers={"Retry-After": "2"}))
        self.client().stats()
        self.assertEqual(self.sleeps, [2.0])

    def test_retry_after_is_capped(self) -> None:
        self.server.fail("GET", "/api/v1/sandbox/stats", Fault(503, headers={"Retry-After": "3600"}))
        self.client().stats()
        self.assertEqual(self.sleeps, [30.0])

    def test_429_until_attempts_run_out_raises_rate_limit_error(self) -> None:
        faults = [Fault(429, body=b'{"error":"slow down","code":"rate_limited"}', headers={"Retry-After": "1"})] * 5
        self.server.fail("GET", "/api/v1/sandbox/stats", *faults)
        with self.assertRaises(RateLimitError) as cm:
            self.client().stats()
        e = cm.exception
        self.assertEqual((e.status, e.code, e.message, e.retry_after), (429, "rate_limited", "slow down", 1.0))
        self.assertEqual(self.sleeps, [1.0] * 4)
        self.assertEqual(len(self.server.calls("GET", "/api/v1/sandbox/stats")), 5)

    def test_503_until_attempts_run_out_backs_off_exponentially(self) -> None:
        self.server.fail("GET", "/api/v1/sandbox/stats", *[Fault(503)] * 5)
        with self.assertRaises(ServiceUnavailableError):
            self.client(retry=RetryPolicy(sleep=self.sleeps.append, initial_backoff=1, max_backoff=3)).stats()
        # Jitter keeps each wait within [base/2, base] for bases 1, 2, 3 (capped), 3.
        for got, base in zip(self.sleeps, [1, 2, 3, 3]):
            self.assertTrue(base / 2 <= got <= base, (got, base))
        self.assertEqual(len(self.sleeps), 4)

    def test_unreachable_server_raises_connection_error_after_bounded_retries(self) -> None:
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        c = Client(f"http://127.0.0.1:{port}", user_id="alice", retry=RetryPolicy(sleep=self.sleeps.append))
        with self.assertRaisesRegex(ConnectionError, "after 5 attempts"):
            c.stats()
        self.assertEqual(len(self.sleeps), 4)

    def test_slow_server_raises_timeout_error(self) -> None:
        c = self.client(timeout=0.5)
        c.stats()
        self.server.fail("GET", "/api/v1/sandbox/stats", Fault(200, body=b"{}", delay=3))
        with self.assertRaises(TimeoutError) as cm:
            c.stats()
        self.assertIn("no response within 0.5s", str(cm.exception))
        self.assertIsInstance(cm.exception, __builtins__["TimeoutError"] if isinstance(__builtins__, dict)
                              else __builtins__.TimeoutError)
        self.assertEqual(self.sleeps, [])  # a timeout is final, not retried


class RetryAfterTest(unittest.TestCase):
    def test_parse(self) -> None:
        cases = [
            ("seconds", "5", 5.0),
            ("fraction", "0.5", 0.5),
            ("negative clamps", "-3", 0.0),
            ("http date", "Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
            ("missing", None, None),
            ("garbage", "soon", None),
        ]
        now = 1445412480.0  # 2015-10-21 07:28:00 UTC
        for name, value, want in cases:
            with self.subTest(name):
                self.assertEqual(parse_retry_after(value, now=now), want)


if __name__ == "__main__":
    unittest.main()
