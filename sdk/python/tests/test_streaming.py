"""Streaming: callbacks see output while the command runs, then the final result arrives."""

from __future__ import annotations

import unittest
from typing import List

from support import FakeServerTest


class StreamingTest(FakeServerTest):
    def test_callbacks_receive_chunks_before_the_result(self) -> None:
        sb = self.client().acquire()
        out: List[str] = []
        err: List[str] = []

        def on_stdout(chunk: str) -> None:
            out.append(chunk)
            self.server.stream_gate.set()  # the fake sends the result only after this

        result = sb.run_command(["echo", "streamed"], on_stdout=on_stdout, on_stderr=err.append)
        self.assertTrue(self.server.stream_gate_was_open, "result was sent before any callback ran")
        self.assertEqual(out, ["streamed\n"])
        self.assertEqual(err, ["warning: fake\n"])
        self.assertEqual((result.stdout, result.exit_code), ("streamed\n", 0))
        req = self.server.calls("POST", "/api/v1/execute/stream")[0]
        self.assertEqual(req.headers["Accept"], "application/x-ndjson")

    def test_connection_is_reused_after_a_stream(self) -> None:
        sb = self.client().acquire()
        self.server.stream_gate.set()
        sb.run_code("print('a')", on_stdout=lambda s: None)
        self.assertEqual(sb.run_command("echo after").stdout, "after\n")

    def test_callback_error_propagates(self) -> None:
        sb = self.client().acquire()

        def boom(chunk: str) -> None:
            raise ValueError("callback failed")

        with self.assertRaisesRegex(ValueError, "callback failed"):
            sb.run_command("echo x", on_stdout=boom)
        self.server.stream_gate.set()
        self.assertEqual(sb.run_command("echo ok").stdout, "ok\n")


if __name__ == "__main__":
    unittest.main()
