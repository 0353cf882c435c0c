"""Unit tests of sandbox.files against a tiny local server (no sandboxd needed)."""

from __future__ import annotations

import http.server
import queue
import socketserver
import threading
import time
import unittest

import support  # noqa: F401 - puts the package on sys.path

import cloud_sandbox as cs
from cloud_sandbox import Client, Sandbox
from cloud_sandbox.models import SandboxInfo


class _HoldingWatch(http.server.BaseHTTPRequestHandler):
    """Answers a watch with ready and one event, then keeps the stream open and silent."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in (b'{"type":"ready"}\n', b'{"type":"rename","path":"/w/b","old_path":"/w/a"}\n'):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        time.sleep(20)

    def log_message(self, *args: object) -> None:
        pass


class WatchHandleTest(unittest.TestCase):
    def setUp(self) -> None:
        self.srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _HoldingWatch)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.addCleanup(self.srv.server_close)
        self.addCleanup(self.srv.shutdown)
        client = Client(f"http://127.0.0.1:{self.srv.server_address[1]}", token="t")
        self.addCleanup(client.close)
        self.sb = Sandbox(client, SandboxInfo(sandbox_id="0123456789abcdef", status=""))

    def test_stop_ends_a_silent_stream_at_once(self) -> None:
        events: "queue.Queue" = queue.Queue()
        exits: "queue.Queue" = queue.Queue()
        handle = self.sb.files.watch_dir("/w", events.put, on_exit=exits.put)
        ev = events.get(timeout=5)
        self.assertEqual((ev.type, ev.path, ev.old_path, ev.name), ("rename", "/w/b", "/w/a", "b"))
        start = time.monotonic()
        handle.stop()
        self.assertLess(time.monotonic() - start, 2, "stop() waited on the blocked reader")
        self.assertIsNone(exits.get(timeout=5))
        self.assertFalse(handle.running)


class _CutDownload(http.server.BaseHTTPRequestHandler):
    """Starts a chunked file and breaks the connection halfway, as sandboxd does when the agent's stream breaks."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"5\r\nhello\r\n")
        self.wfile.flush()
        self.connection.shutdown(2)

    def log_message(self, *args: object) -> None:
        pass


class FileStreamTest(unittest.TestCase):
    def test_a_cut_download_raises_instead_of_looking_whole(self) -> None:
        srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _CutDownload)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        client = Client(f"http://127.0.0.1:{srv.server_address[1]}", token="t")
        self.addCleanup(client.close)
        sb = Sandbox(client, SandboxInfo(sandbox_id="0123456789abcdef", status=""))
        got = b""
        with self.assertRaises(cs.ConnectionError):
            with sb.files.read("/workspace/f", format="stream") as stream:
                for chunk in stream:
                    got += chunk
        self.assertIn(got, (b"", b"hello"))  # whatever came before the cut, never a clean end


if __name__ == "__main__":
    unittest.main()
