"""Error responses become typed exceptions carrying the server's message, status and code."""

from __future__ import annotations

import unittest

from fake_server import Fault
from support import FakeServerTest

import cloud_sandbox as cs

STATS = "/api/v1/sandbox/stats"


class ErrorMappingTest(FakeServerTest):
    def test_status_maps_to_exception_class(self) -> None:
        cases = [
            (400, "bad_request", cs.ValidationError),
            (401, "unauthorized", cs.AuthenticationError),
            (403, "forbidden", cs.PermissionDeniedError),
            (404, "not_found", cs.NotFoundError),
            (409, "conflict", cs.ConflictError),
            (413, "too_large", cs.ValidationError),
            (422, "unprocessable", cs.ValidationError),
            (500, "internal", cs.ServerError),
            (418, "teapot", cs.SandboxError),
        ]
        c = self.client(token="fixed", user_id=None)  # a fixed token: a 401 is final
        for status, code, cls in cases:
            with self.subTest(status=status):
                msg = f"message for {status}"
                self.server.fail("GET", STATS, Fault(status, body=f'{{"error":"{msg}","code":"{code}"}}'.encode()))
                with self.assertRaises(cls) as cm:
                    c.stats()
                e = cm.exception
                self.assertIs(type(e), cls)
                self.assertEqual((e.status, e.code, e.message), (status, code, msg))
                self.assertEqual(str(e), f"{msg} (HTTP {status}, code={code}, GET {STATS})")

    def test_unknown_sandbox_is_not_found_with_the_servers_message(self) -> None:
        with self.assertRaises(cs.NotFoundError) as cm:
            self.client().get_sandbox("0123456789abcdef")
        self.assertEqual(cm.exception.message, "sandbox not found")
        self.assertEqual(cm.exception.status, 404)

    def test_malformed_json_is_a_server_error_naming_the_request(self) -> None:
        self.server.fail("GET", STATS, Fault(200, body=b'{"total": 3,'))
        with self.assertRaises(cs.ServerError) as cm:
            self.client().stats()
        text = str(cm.exception)
        self.assertIn("malformed JSON in response to GET /api/v1/sandbox/stats (HTTP 200)", text)
        self.assertIn("""body starts with '{"total": 3,'""", text)

    def test_non_json_error_body_keeps_its_text(self) -> None:
        self.server.fail("GET", STATS, Fault(502, body=b"<html>Bad Gateway</html>"))
        with self.assertRaises(cs.ServerError) as cm:
            self.client().stats()
        self.assertEqual((cm.exception.status, cm.exception.message), (502, "<html>Bad Gateway</html>"))

    def test_errors_are_catchable_as_builtins_and_as_sandbox_error(self) -> None:
        import builtins

        self.assertTrue(issubclass(cs.TimeoutError, builtins.TimeoutError))
        self.assertTrue(issubclass(cs.ConnectionError, builtins.ConnectionError))
        for cls in (cs.TimeoutError, cs.ConnectionError, cs.RateLimitError, cs.ServiceUnavailableError):
            self.assertTrue(issubclass(cls, cs.SandboxError), cls)
        self.assertTrue(issubclass(cs.ServiceUnavailableError, cs.ServerError))


if __name__ == "__main__":
    unittest.main()
