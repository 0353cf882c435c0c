"""Sandbox life cycle, execution requests and file operations against the fake server."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import unittest

from support import FakeServerTest

import cloud_sandbox as cs
from cloud_sandbox import Sandbox
from cloud_sandbox._archive import unpack_stream

RELEASE = "/api/v1/sandbox/release"


class LifecycleTest(FakeServerTest):
    def test_quick_start_shape(self) -> None:
        with Sandbox.create(base_url=self.server.url, user_id="my-user-id") as sandbox:
            result = sandbox.run_code("print('Hello, World!')")
            self.assertEqual(result.stdout, "Hello, World!\n")
            self.assertIsInstance(result, cs.ExecutionResult)
            sandbox.run_command("ls -la /workspace")
            sandbox.write_file("/workspace/test.py", "x = 42")
            files = sandbox.list_files("/workspace")
        self.assertEqual([(f.name, f.size, f.type) for f in files], [("test.py", 6, "file")])
        self.assertEqual(self.server.calls("POST", RELEASE)[0].json(), {"sandbox_id": sandbox.sandbox_id})

    def test_with_block_that_raises_still_releases(self) -> None:
        with self.assertRaisesRegex(RuntimeError, "agent crashed"):
            with Sandbox.create(client=self.client()) as sb:
                raise RuntimeError("agent crashed")
        self.assertEqual(self.server.sandboxes[sb.sandbox_id]["status"], "terminating")
        release = self.server.calls("POST", RELEASE)
        self.assertEqual(len(release), 1)
        self.assertTrue(release[0].headers.get("Idempotency-Key"))

    def test_failed_release_does_not_hide_the_blocks_error(self) -> None:
        from fake_server import Fault

        self.server.fail("POST", RELEASE, *[Fault(500)] * 1)
        with self.assertRaisesRegex(KeyError, "original"):
            with Sandbox.create(client=self.client()):
                raise KeyError("original")

    def test_release_is_idempotent(self) -> None:
        sb = self.client().acquire()
        sb.release()
        sb.release()
        sb.close()
        self.assertEqual(len(self.server.calls("POST", RELEASE)), 1)

    def test_connect_binds_without_releasing(self) -> None:
        c = self.client()
        owner = c.acquire()
        with Sandbox.connect(owner.sandbox_id, client=c) as sb:
            self.assertEqual(sb.info().status, "active")
        self.assertEqual(self.server.calls("POST", RELEASE), [])

    def test_another_users_sandbox_is_not_found(self) -> None:
        alice = self.client().acquire()
        bob = self.client(user_id="bob")
        with self.assertRaises(cs.NotFoundError):
            bob.sandbox(alice.sandbox_id).run_code("print(1)")
        with self.assertRaises(cs.NotFoundError):
            bob.get_sandbox(alice.sandbox_id)


class ExecuteTest(FakeServerTest):
    def test_request_bodies(self) -> None:
        sb = self.client().acquire()
        sid = sb.sandbox_id
        cases = [
            ("string command", lambda: sb.run_command("echo a b"),
             {"sandbox_id": sid, "command": "echo a b", "timeout": 30}, "a b\n"),
            ("argv command", lambda: sb.run_command(["echo", "a b"]),
             {"sandbox_id": sid, "command": ["echo", "a b"], "timeout": 30}, "a b\n"),
            ("env", lambda: sb.run_command(["printenv", "FOO"], env={"FOO": "bar"}),
             {"sandbox_id": sid, "command": ["printenv", "FOO"], "timeout": 30, "env": {"FOO": "bar"}}, "bar\n"),
            ("cwd", lambda: sb.run_command("pwd", cwd="/tmp"),
             {"sandbox_id": sid, "command": "pwd", "timeout": 30, "cwd": "/tmp"}, "/tmp\n"),
            ("stdin", lambda: sb.run_command("cat", stdin="piped"),
             {"sandbox_id": sid, "command": "cat", "timeout": 30, "stdin": "piped"}, "piped"),
            ("code with language", lambda: sb.run_code("print('x')", language="python", timeout=5),
             {"sandbox_id": sid, "code": "print('x')", "language": "python", "timeout": 5}, "x\n"),
        ]
        for name, call, want_body, want_stdout in cases:
            with self.subTest(name):
                result = call()
                self.assertEqual(self.server.calls("POST", "/api/v1/execute")[-1].json(), want_body)
                self.assertEqual(result.stdout, want_stdout)

    def test_timed_out_and_nonzero_exit_are_results(self) -> None:
        sb = self.client().acquire()
        slow = sb.run_command("sleep 10", timeout=1)
        self.assertTrue(slow.timed_out)
        self.assertFalse(slow.ok)
        failed = sb.run_command("false")
        self.assertEqual((failed.exit_code, failed.timed_out), (1, False))

    def test_paused_session_sandbox_is_a_conflict(self) -> None:
        session = self.client().sessions.create()
        sb = session.sandbox()
        session.pause()
        with self.assertRaises(cs.ConflictError):
            sb.run_code("print(1)")

    def test_bad_command_is_refused_before_sending(self) -> None:
        sb = self.client().acquire()
        for bad in ([], [1, 2]):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                sb.run_command(bad)  # type: ignore[arg-type]


class FilesTest(FakeServerTest):
    def test_text_and_bytes_round_trip(self) -> None:
        sb = self.client().acquire()
        text = "héllo\nwörld ✓\n"
        blob = bytes(range(256)) * 4
        self.assertEqual(sb.write_file("/workspace/t.txt", text), len(text.encode()))
        self.assertEqual(sb.write_file("/workspace/b.bin", blob), len(blob))
        self.assertEqual(sb.read_file("/workspace/t.txt"), text)
        self.assertEqual(sb.read_file("/workspace/b.bin", binary=True), blob)
        raw = self.server.calls("PUT", "/api/v1/files/content")[0]
        self.assertEqual((raw.body, raw.headers["Content-Type"]), (blob, "application/octet-stream"))
        self.assertEqual(self.server.calls("PUT", "/api/v1/files")[0].json()["encoding"], "utf-8")

    def test_missing_file_is_not_found(self) -> None:
        sb = self.client().acquire()
        with self.assertRaisesRegex(cs.NotFoundError, "no such file: /workspace/nope"):
            sb.read_file("/workspace/nope")

    def test_bad_path_is_a_validation_error(self) -> None:
        sb = self.client().acquire()
        with self.assertRaises(cs.ValidationError):
            sb.write_file("relative.txt", "x")

    def test_list_delete_and_mkdir(self) -> None:
        sb = self.client().acquire()
        sb.make_dir("/workspace/d")
        sb.write_file("/workspace/d/a.txt", "a")
        sb.write_file("/workspace/top.txt", "top")
        listing = {f.name: f for f in sb.list_files("/workspace")}
        self.assertEqual(sorted(listing), ["d", "top.txt"])
        self.assertTrue(listing["d"].is_dir)
        self.assertEqual((listing["top.txt"].size, listing["top.txt"].mode), (3, "0644"))
        self.assertIsNotNone(listing["top.txt"].modified_at)
        with self.assertRaises(cs.ConflictError):
            sb.delete_file("/workspace/d")
        sb.delete_file("/workspace/d", recursive=True)
        sb.delete_file("/workspace/top.txt")
        self.assertEqual(sb.list_files("/workspace"), [])
        self.assertEqual(self.server.calls("DELETE", "/api/v1/files")[1].query.get("recursive"), "true")

    def test_upload_and_download_dir(self) -> None:
        sb = self.client().acquire()
        with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as dst:
            os.makedirs(os.path.join(src, "pkg", "sub"))
            files = {"main.py": b"print(1)\n", "pkg/__init__.py": b"", "pkg/sub/data.bin": bytes(range(256))}
            for rel, data in files.items():
                with open(os.path.join(src, rel), "wb") as f:
                    f.write(data)
            self.assertEqual(sb.upload_dir(src, "/workspace/proj"), 3)
            self.assertEqual(sb.read_file("/workspace/proj/pkg/sub/data.bin", binary=True), bytes(range(256)))
            self.assertEqual(sb.download_dir("/workspace/proj", dst), 3)
            for rel, data in files.items():
                with open(os.path.join(dst, rel), "rb") as f:
                    self.assertEqual(f.read(), data, rel)


class UnpackTest(unittest.TestCase):
    def _tar(self, *members: tarfile.TarInfo) -> io.BytesIO:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for m in members:
                tf.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
        buf.seek(0)
        return buf

    def test_entries_escaping_the_target_are_refused(self) -> None:
        def file(name: str) -> tarfile.TarInfo:
            info = tarfile.TarInfo(name)
            info.size = 1
            return info

        def link(name: str, target: str) -> tarfile.TarInfo:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            return info

        cases = [("dot-dot", file("../evil")), ("nested dot-dot", file("a/../../evil")),
                 ("absolute symlink", link("l", "/etc/passwd")), ("relative symlink out", link("l", "../../x"))]
        for name, member in cases:
            with self.subTest(name), tempfile.TemporaryDirectory() as d:
                target = os.path.join(d, "out")
                with self.assertRaisesRegex(ValueError, "escapes|outside"):
                    unpack_stream(self._tar(member), target)
                self.assertFalse(os.path.exists(os.path.join(d, "evil")))


class SessionsTest(FakeServerTest):
    def test_lifecycle(self) -> None:
        c = self.client()
        s = c.sessions.create(image="python:3.11-slim", cpu_count=2, memory_mb=2048)
        body = self.server.calls("POST", "/api/v1/sessions")[0]
        self.assertEqual(body.json(), {"image": "python:3.11-slim", "cpu_count": 2, "memory_mb": 2048})
        self.assertTrue(body.headers.get("Idempotency-Key"))
        self.assertEqual((s.status, s.sandbox_status, s.cpu_count, s.memory_mb), ("active", "active", 2.0, 2048))
        self.assertEqual([x.session_id for x in c.sessions.list()], [s.session_id])
        self.assertEqual(s.pause().status, "paused")
        self.assertEqual(c.sessions.resume(s).status, "active")
        self.assertEqual(s.refresh().status, "active")
        self.assertEqual(s.delete().status, "deleted")
        self.assertEqual(c.sessions.list(), [])
        with self.assertRaises(cs.ConflictError):
            s.resume()

    def test_session_sandbox_survives_its_with_block_unless_asked(self) -> None:
        c = self.client()
        s = c.sessions.create()
        with s.sandbox() as sb:
            self.assertEqual(sb.sandbox_id, s.sandbox_id)
            self.assertEqual(sb.run_command("echo hi").stdout, "hi\n")
        self.assertEqual(c.sessions.get(s.session_id).status, "active")
        self.assertEqual(self.server.calls("POST", RELEASE), [])
        with Sandbox.from_session(s, delete_on_exit=True):
            pass
        self.assertEqual(c.sessions.get(s.session_id).status, "deleted")

    def test_other_users_session_is_not_found(self) -> None:
        s = self.client().sessions.create()
        with self.assertRaises(cs.NotFoundError):
            self.client(user_id="bob").sessions.get(s.session_id)


if __name__ == "__main__":
    unittest.main()


class LifecycleUnitTest(FakeServerTest):
    """Against the in-process fake: connect checks the id, errors are typed."""

    def test_connect_to_unknown_sandbox_is_sandbox_not_found(self) -> None:
        with self.assertRaises(cs.SandboxNotFoundError):
            Sandbox.connect("0123456789abcdef", client=self.client())

    def test_connect_resumes_a_paused_sandbox(self) -> None:
        c = self.client()
        with c.acquire() as owner:
            self.assertEqual(owner.pause().status, "paused")
            with Sandbox.connect(owner.sandbox_id, client=c) as sb:
                self.assertEqual(sb.info().status, "active")


class EventParsingTest(unittest.TestCase):
    def test_parse_sse_groups_fields_and_skips_comments(self) -> None:
        from cloud_sandbox.events import parse_sse

        lines = [b"retry: 1000", b": stream open", b"id: 7-0", b"event: created",
                 b'data: {"id":"7-0","type":"created","sandbox_id":"a"}', b": keepalive",
                 b"event: gap", b'data: {"after":"1-0"}', b"id: 8-1", b"event: placed", b"data: {}"]
        got = list(parse_sse(lines))
        self.assertEqual([(e.get("id"), e.get("event")) for e in got],
                         [("7-0", "created"), (None, "gap"), ("8-1", "placed")])
