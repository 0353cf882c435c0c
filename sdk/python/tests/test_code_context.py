"""Code context models and stream parsing, without a server."""

from __future__ import annotations

import json
import unittest

import support  # noqa: F401 - puts the package on sys.path

import cloud_sandbox as cs
from cloud_sandbox.code_context import Context, Execution, _read_stream


ANSWER = {
    "stdout": "hi\n", "stderr": "", "stdout_truncated": False, "stderr_truncated": False,
    "results": [{"data": {"text/plain": "T()", "text/html": "<b>t</b>", "image/png": "iVBORw0KGgo=",
                          "application/json": "{\"a\": 1}"}, "is_main_result": True}],
    "error": None, "execution_count": 3, "duration_ms": 2, "timed_out": False, "restarted": False,
}


class ExecutionTest(unittest.TestCase):
    def test_fields_follow_e2b_names(self) -> None:
        e = Execution.from_json(ANSWER)
        self.assertEqual(e.text, "T()")
        self.assertEqual(e.logs.stdout, ["hi\n"])
        self.assertEqual(e.logs.stderr, [])
        self.assertEqual(e.execution_count, 3)
        r = e.results[0]
        self.assertEqual((r.html, r.png, r.json, r.svg), ("<b>t</b>", "iVBORw0KGgo=", {"a": 1}, None))
        self.assertEqual(r.formats(), ["text", "html", "png", "json"])
        self.assertIsNone(e.error)

    def test_error_and_no_value(self) -> None:
        e = Execution.from_json({"results": [], "error": {"name": "KeyError", "value": "'k'", "traceback": "Traceback…"},
                                 "timed_out": True})
        self.assertIsNone(e.text)
        assert e.error is not None
        self.assertEqual((e.error.name, e.error.value, e.error.traceback), ("KeyError", "'k'", "Traceback…"))
        self.assertTrue(e.timed_out)

    def test_stream_calls_back_and_keeps_chunks(self) -> None:
        lines = [json.dumps(x).encode() for x in (
            {"type": "stdout", "data": "a"}, {"type": "stderr", "data": "w"}, {"type": "stdout", "data": "b"},
            dict(ANSWER, type="result"))]
        out, err = [], []
        e = _read_stream(lines, out.append, err.append, "/p")
        self.assertEqual((out, err), (["a", "b"], ["w"]))
        self.assertEqual(e.logs.stdout, ["a", "b"])
        self.assertEqual(e.stdout, "ab")

    def test_stream_error_event_raises(self) -> None:
        with self.assertRaises(cs.SandboxError):
            _read_stream([b'{"type":"error","data":"agent gone"}'], None, None, "/p")

    def test_context_from_json(self) -> None:
        c = Context.from_json({"id": "0123456789abcdef-01234567", "language": "bash", "cwd": "/tmp",
                               "sandbox_id": "0123456789abcdef", "created_at": "2026-11-30T23:00:00.5Z"})
        self.assertEqual((c.id, c.language, c.cwd, c.sandbox_id), ("0123456789abcdef-01234567", "bash", "/tmp",
                                                                   "0123456789abcdef"))
        self.assertIsNotNone(c.created_at)


if __name__ == "__main__":
    unittest.main()
