"""CommandHandle against a scripted output stream: reconnects from the last
offset after a dropped connection, and counts output lost to the server's ring."""

from __future__ import annotations

import json
import threading
import time
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List

import support  # noqa: F401 - puts the package on sys.path

from cloud_sandbox import Client, RetryPolicy, Sandbox
from cloud_sandbox.models import SandboxInfo
from fake_server import make_jwt

PROCESS = {"pid": 7, "argv": ["sh", "-c", "x"], "running": True, "survives_pause": True}


class _Script:
    """Answers GET .../output with one scripted list of events per connection, in order."""

    def __init__(self, connections: List[List[Dict[str, Any]]]) -> None:
        self.connections = connections
        self.offsets: List[int] = []
        self.lock = threading.Lock()


def _server(script: _Script) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/api/v1/processes/7":
                body = json.dumps(PROCESS).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            with script.lock:
                script.offsets.append(int(q.get("offset", "0")))
                events = script.connections.pop(0)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Connection", "close")
            self.end_headers()
            for ev in events:
                self.wfile.write(json.dumps(ev).encode() + b"\n")
                self.wfile.flush()
            # No exit event in a list: the connection just ends, as a dropped one does.
            self.close_connection = True

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class CommandHandleTest(unittest.TestCase):
    def sandbox(self, script: _Script) -> Sandbox:
        srv = _server(script)
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        token = make_jwt({"sub": "alice", "exp": int(time.time()) + 3600, "typ": "access"})
        client = Client(f"http://127.0.0.1:{srv.server_address[1]}", token=token, timeout=5.0,
                        retry=RetryPolicy(sleep=lambda s: None))
        self.addCleanup(client.close)
        return Sandbox(client, SandboxInfo(sandbox_id="0123456789abcdef", status="active"))

    def test_reconnects_from_the_last_offset_and_counts_lost_output(self) -> None:
        ended = dict(PROCESS, running=False, exit_code=0)
        script = _Script([
            [{"type": "gap", "offset": 0, "end": 100},
             {"type": "stdout", "data": "abc", "offset": 100, "end": 103}],
            [{"type": "stderr", "data": "oops", "offset": 103, "end": 107},
             {"type": "exit", "offset": 107, "end": 107, "process": ended}],
        ])
        sb = self.sandbox(script)
        seen: List[str] = []
        handle = sb.commands.connect(7, on_stdout=seen.append, on_stderr=seen.append)
        result = handle.wait(timeout=10)
        self.assertEqual(script.offsets, [0, 103])  # the second connection resumed where the first broke
        self.assertEqual((result.stdout, result.stderr, result.exit_code, result.lost_bytes), ("abc", "oops", 0, 100))
        self.assertEqual(seen, ["abc", "oops"])
        self.assertEqual(handle.offset, 107)

    def test_gives_up_after_bounded_reconnects(self) -> None:
        script = _Script([[] for _ in range(10)])
        handle = self.sandbox(script).commands.connect(7)
        with self.assertRaises(Exception) as ctx:
            handle.wait(timeout=30)
        self.assertIn("ended before the process did", str(ctx.exception))
        self.assertEqual(len(script.offsets), 6)  # the first try and MAX_RECONNECTS more


if __name__ == "__main__":
    unittest.main()
