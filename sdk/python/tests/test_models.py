"""JSON to typed results: tolerant of missing and extra fields, Go's time format."""

from __future__ import annotations

import unittest
from datetime import datetime, timedelta, timezone

import support  # noqa: F401 - puts the package on sys.path

from cloud_sandbox.models import ExecutionResult, FileInfo, SessionInfo, parse_time


class ParseTimeTest(unittest.TestCase):
    def test_rfc3339(self) -> None:
        utc = timezone.utc
        cases = [
            ("utc", "2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=utc)),
            ("nanoseconds", "2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=utc)),
            ("short fraction", "2024-05-01T12:00:00.5Z", datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=utc)),
            ("offset", "2024-05-01T14:00:00+02:00",
             datetime(2024, 5, 1, 14, tzinfo=timezone(timedelta(hours=2)))),
            ("go zero time", "0001-01-01T00:00:00Z", None),
            ("empty", "", None),
            ("not a time", "yesterday", None),
            ("not a string", 12, None),
        ]
        for name, value, want in cases:
            with self.subTest(name):
                self.assertEqual(parse_time(value), want)


class FromJsonTest(unittest.TestCase):
    def test_execution_result_defaults_and_extras(self) -> None:
        r = ExecutionResult.from_json({"stdout": "hi\n", "exit_code": 2, "new_field": 1})
        self.assertEqual((r.stdout, r.stderr, r.exit_code, r.timed_out, r.ok), ("hi\n", "", 2, False, False))
        self.assertEqual(r.raw["new_field"], 1)

    def test_file_info(self) -> None:
        f = FileInfo.from_json({"name": "d", "path": "/workspace/d", "size": 0, "type": "dir", "mode": "0755",
                                "modified_at": "2024-05-01T12:00:00Z"})
        self.assertTrue(f.is_dir)
        self.assertFalse(f.is_file)
        self.assertEqual(f.modified_at, datetime(2024, 5, 1, 12, tzinfo=timezone.utc))

    def test_unbound_session_explains_itself(self) -> None:
        s = SessionInfo.from_json({"session_id": "abc", "status": "active"})
        with self.assertRaisesRegex(ValueError, "not bound to a Client"):
            s.pause()


if __name__ == "__main__":
    unittest.main()
